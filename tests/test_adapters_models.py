"""Every registered model trains a few steps and generates on every dataset adapter's fixture."""

import math

import pytest
import torch
from helpers import installed_models
from test_celebamaskhq import make_release
from test_cub import make_cub
from test_nets import PER_MODEL, TINY
from text_vae_fixture import make_text_vae

from mmbench.config import build_config
from mmbench.registry import DATASETS, MODELS


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """name -> a small train split of each adapter, read from files the test wrote in the published layouts."""
    from mmbench.data.celebamaskhq_prepare import prepare_celebamaskhq
    from mmbench.data.polymnist_build import build_polymnist

    root = tmp_path_factory.mktemp("adapters")
    poly = build_polymnist(root / "polymnist", 3, per_class=5, progress=False)
    translated = build_polymnist(root / "translated", 2, variant="translated", per_class=5, progress=False)
    celeba = prepare_celebamaskhq(make_release(root / "celeba-raw"), root / "celeba", 64, progress=False)
    cub = make_cub(root / "cub")
    text_vae = make_text_vae(root / "text-vae", (cub / "text_trainvalclasses.txt").read_text().splitlines())
    return {
        "polymnist": DATASETS.get("polymnist").load(poly, "train"),
        "polymnist padded to 32": DATASETS.get("polymnist").load(poly, "train", subset=["m0", "m2"], pad_to=32),
        "polymnist translated": DATASETS.get("polymnist").load(translated, "train"),
        "cub": DATASETS.get("cub").load(cub, "train"),
        "cub with a text VAE": DATASETS.get("cub").load(cub, "train", text_vae=str(text_vae)),
        "celebamaskhq": DATASETS.get("celebamaskhq").load(celeba, "train"),
        "synthetic": DATASETS.get("synthetic").load(
            None, "train", views=["image", "mask", "attributes", "text"], n=8, size=16
        ),
    }


ADAPTERS = [
    "polymnist",
    "polymnist padded to 32",
    "polymnist translated",
    "cub",
    "cub with a text VAE",
    "celebamaskhq",
    "synthetic",
]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("name", installed_models())
def test_every_model_trains_and_generates_on_every_adapter(adapters, adapter, name):
    data = adapters[adapter]
    torch.manual_seed(0)
    cls = MODELS.get(name)
    model = cls(data.modalities, build_config(cls.Config, {**TINY, **PER_MODEL.get(name, {})}))
    optimizer = model.make_optimizer()
    rows = torch.arange(min(4, len(data)))
    for step in range(2):
        model.begin_step(step, 2)
        optimizer.zero_grad()
        out = model.loss(data.batch(rows))
        assert math.isfinite(out.loss.item())
        out.loss.backward()
        optimizer.step()
    model.eval()
    x = data.batch(rows)["x"]
    names = data.modality_names
    samples = model.generate(2, generator=torch.Generator().manual_seed(0))
    cond = model.cond_generate(x, names[:1], names[1:], generator=torch.Generator().manual_seed(0))
    for m in data.modalities:
        assert samples[m.name].shape[0] == 2 and samples[m.name].shape[1:] == torch.Size(m.shape)
        if m.name in cond:
            assert cond[m.name].shape == x[m.name].shape

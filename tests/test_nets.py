"""The shared networks of every modality kind, and every registered model on a dataset with one modality of each."""

import math

import pytest
import torch
from helpers import installed_models

from mmbench.config import build_config
from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.nets import networks_for
from mmbench.objectives import Likelihood
from mmbench.registry import MODELS

IMAGE = Modality("image", (3, 64, 64), "image", "laplace")
MASK = Modality("mask", (1, 64, 64), "mask", "bernoulli")
ATTRIBUTES = Modality("attributes", (18,), "attributes", "bernoulli")
CAPTION = Modality("caption", (32,), "text", "categorical", classes=50)
EVERY_KIND = [IMAGE, MASK, ATTRIBUTES, CAPTION]


def example(m: Modality, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n examples of a modality: tokens (Long) for categorical ones, {0, 1} for Bernoulli ones, else [0, 1]."""
    if m.likelihood == "categorical":
        return torch.randint(0, m.classes, (n, *m.shape), generator=generator)
    x = torch.rand(n, *m.shape, generator=generator)
    return (x > 0.5).float() if m.likelihood == "bernoulli" else x


@pytest.mark.parametrize(
    "modality, network, out_shape",
    [
        (IMAGE, "Soft-IntroVAE ResNet", (3, 64, 64)),
        (Modality("image", (3, 32, 32)), "32x32 conv", (3, 32, 32)),
        (Modality("image", (3, 28, 28)), "PolyMNIST conv", (3, 28, 28)),
        (MASK, "mask conv", (1, 64, 64)),
        (Modality("mask", (1, 128, 128), "mask", "bernoulli"), "mask conv", (1, 128, 128)),
        (ATTRIBUTES, "MLP", (18,)),
        (CAPTION, "sentence CNN", (32, 50)),
        (Modality("caption", (24,), "text", "categorical", classes=7), "sentence CNN", (24, 7)),
        (Modality("labels", (3,), "attributes", "categorical", classes=5), "one-hot MLP", (3, 5)),
        (Modality("image", (3, 48, 48)), "MLP", (3, 48, 48)),
    ],
)
def test_each_network_maps_its_modality_to_a_gaussian_and_back_to_likelihood_parameters(modality, network, out_shape):
    nets = networks_for(modality)
    assert nets.name == network
    encoder, decoder = nets.encoder(8), nets.decoder(8)
    x = example(modality, 3, torch.Generator().manual_seed(0))
    q = encoder(x)
    assert q.mu.shape == q.logvar.shape == (3, 8) and q.mu.dtype == torch.float32
    out = decoder(q.mu)
    assert out.shape == (3, *out_shape)
    log_p = Likelihood(modality.likelihood).log_prob(x, out)
    assert log_p.shape == (3,) and torch.isfinite(log_p).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # heads stay fp32 under mixed precision
        assert encoder(x).logvar.dtype == torch.float32


def test_soft_intro_vae_nets_at_128x128_take_five_halvings_to_4x4():
    nets = networks_for(Modality("image", (3, 128, 128)))
    encoder, decoder = nets.encoder(16), nets.decoder(16)
    assert [m.out_features for m in (encoder.mu, encoder.logvar)] == [16, 16]
    assert encoder.mu.in_features == 512 * 4 * 4  # widths (64, 128, 256, 512, 512), 128 -> 4
    q = encoder(torch.rand(2, 3, 128, 128))
    assert q.mu.shape == (2, 16)
    assert decoder(q.mu).shape == (2, 3, 128, 128)


# Tiny settings: the test checks the plumbing of every model with every kind, not what they learn.
TINY = {"latent_dim": 8, "batch_size": 4, "epochs": 1}
PER_MODEL = {
    "mmvae": {"k": 2},
    "mmvaeplus": {"private_dim": 4},
    "diffmvae": {"unet_base": 8, "unet_mults": [1, 2], "sampler_steps": 2},
    "diffmvae_star": {"unet_base": 8, "unet_mults": [1, 2], "sampler_steps": 2},
    "mld": {"score_hidden": 16, "score_depth": 1, "sampler_steps": 2},
    "sbmae": {"score_hidden": 16, "score_depth": 1, "sampler_steps": 2, "score_net": "mlp"},
}


def every_kind_dataset(n: int = 8) -> MultimodalDataset:
    g = torch.Generator().manual_seed(0)
    return MultimodalDataset(
        EVERY_KIND, {m.name: example(m, n, g) for m in EVERY_KIND}, torch.randint(0, 2, (n,), generator=g), "every-kind"
    )


def check_samples(samples: dict, names: list[str], n: int) -> None:
    """Images are float locations; masks and attributes probabilities in [0, 1]; captions token indices."""
    assert set(samples) == set(names)
    for name, t in samples.items():
        if name == "caption":
            assert t.shape == (n, 32) and t.dtype == torch.long and 0 <= t.min() <= t.max() < 50
            continue
        shape = {"image": (3, 64, 64), "mask": (1, 64, 64), "attributes": (18,)}[name]
        assert t.shape == (n, *shape) and t.dtype == torch.float32
        if name != "image":
            assert 0 <= t.min() <= t.max() <= 1


@pytest.mark.parametrize("name", installed_models())
def test_every_model_trains_and_generates_with_every_modality_kind(name):
    torch.manual_seed(0)
    data = every_kind_dataset()
    cls = MODELS.get(name)
    model = cls(data.modalities, build_config(cls.Config, {**TINY, **PER_MODEL.get(name, {})}))
    optimizer = model.make_optimizer()
    for step in range(2):
        model.begin_step(step, 2)
        optimizer.zero_grad()
        out = model.loss(data.batch(torch.arange(4) + 4 * step))
        assert math.isfinite(out.loss.item())
        out.loss.backward()
        for m in data.modality_names:  # gradients reach every modality's encoder
            grads = [p.grad for n, p in model.named_parameters() if f"encoders.{m}." in n]
            assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), m
        optimizer.step()

    model.eval()
    check_samples(model.generate(2, generator=torch.Generator().manual_seed(0)), data.modality_names, 2)
    x = data.batch(torch.arange(3))["x"]
    for given in data.modality_names:
        others = [m for m in data.modality_names if m != given]
        check_samples(model.cond_generate(x, [given], others, generator=torch.Generator().manual_seed(0)), others, 3)


@pytest.mark.parametrize("name", ["diffmvae", "diffmvae_star"])
def test_diffusion_decoders_take_images_and_masks_and_leave_attributes_and_captions_feed_forward(name):
    cls = MODELS.get(name)
    model = cls(EVERY_KIND, build_config(cls.Config, {**TINY, **PER_MODEL[name]}))
    assert model.diffusion_names == ["image", "mask"]
    with pytest.raises(MMBenchError, match="modality 'caption' is marked for a diffusion decoder but is a text"):
        cls(EVERY_KIND, build_config(cls.Config, {**TINY, **PER_MODEL[name], "diffusion": ["caption"]}))


def test_a_likelihood_override_that_would_reach_a_caption_is_refused():
    cls = MODELS.get("mopoe")
    with pytest.raises(MMBenchError, match=r"'laplace' cannot replace the likelihood of modalities \['caption'\]"):
        cls(EVERY_KIND, build_config(cls.Config, {**TINY, "likelihood": "laplace"}))

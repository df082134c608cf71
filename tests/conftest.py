"""Shared fixtures: a small PolyMNIST built once per session, tiny synthetic datasets."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def polymnist_png(tmp_path_factory):
    from mmbench.data.polymnist_build import build_polymnist

    return build_polymnist(tmp_path_factory.mktemp("pm") / "png3", 3, seed=0, layout="png", progress=False)


@pytest.fixture(scope="session")
def polymnist_pt(tmp_path_factory):
    from mmbench.data.polymnist_build import build_polymnist

    return build_polymnist(tmp_path_factory.mktemp("pm") / "pt3", 3, seed=0, layout="pt", progress=False)


def tiny_dataset(n: int = 64, shapes=((3, 28, 28), (3, 28, 28), (3, 28, 28)), seed: int = 0):
    from mmbench.data.base import MultimodalDataset
    from mmbench.modality import Modality

    g = torch.Generator().manual_seed(seed)
    mods = [Modality(f"m{i}", s) for i, s in enumerate(shapes)]
    x = {m.name: torch.rand(n, *m.shape, generator=g) for m in mods}
    y = torch.randint(0, 10, (n,), generator=g)
    return MultimodalDataset(mods, x, y, "tiny")

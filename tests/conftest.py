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

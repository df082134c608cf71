"""CelebAMask-HQ: the published layout is prepared once into tensors and loaded; defects are named."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmbench.cli import main
from mmbench.data.celebamaskhq import CelebAMaskHQ
from mmbench.data.celebamaskhq_prepare import prepare_celebamaskhq
from mmbench.data.celebamaskhq_source import ATTRIBUTE_INDICES
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS

NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
# CelebA-HQ index k -> original CelebA index: two images per split, the split boundaries on both sides.
ORIG = {0: 10, 1: 162770, 2: 162771, 3: 182637, 2000: 182638, 4001: 200000}
SPLIT_KEYS = {"train": [0, 1], "val": [2, 3], "test": [2000, 4001]}
H = 128  # quadrant below: rows/cols 0..63 of 128, exactly halves at 64


def _value(k: int, j: int) -> int:
    return 1 if (k + j) % 3 == 0 else -1


def _quadrant(top: bool, left: bool) -> np.ndarray:
    a = np.zeros((H, H), dtype=np.uint8)
    a[(slice(0, H // 2) if top else slice(H // 2, H)), (slice(0, H // 2) if left else slice(H // 2, H))] = 255
    return a


# each image's part files: skin covers everything (left out of the mask); no file for image 3 at all
PARTS = {
    0: {"skin": np.full((H, H), 255, np.uint8), "hair": _quadrant(True, True), "nose": _quadrant(False, False)},
    1: {"skin": np.full((H, H), 255, np.uint8)},
    2: {"cloth": _quadrant(False, True)},
    3: {},
    2000: {"hat": _quadrant(True, True), "l_eye": _quadrant(True, False)},
    4001: {"neck": _quadrant(False, True)},
}


def make_release(src: Path) -> Path:
    (src / "CelebA-HQ-img").mkdir(parents=True)
    for k in ORIG:
        Image.new("RGB", (H, H), (k % 250, 100, 200)).save(src / "CelebA-HQ-img" / f"{k}.jpg", quality=95)
        (src / "CelebAMask-HQ-mask-anno" / str(k // 2000)).mkdir(parents=True, exist_ok=True)
        for part, a in PARTS[k].items():
            im = Image.fromarray(a)
            (im.convert("RGB") if part == "nose" else im).save(
                src / "CelebAMask-HQ-mask-anno" / str(k // 2000) / f"{k:05d}_{part}.png"
            )
    lines = [str(len(ORIG)), " ".join(NAMES)]
    lines += [f"{k}.jpg  " + " ".join(str(_value(k, j)) for j in range(40)) for k in ORIG]
    (src / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    mapping = ["idx         orig_idx    orig_file"] + [f"{k:<12}{o:<12}{o + 1:06d}.jpg" for k, o in ORIG.items()]
    (src / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    return src


@pytest.fixture
def release(tmp_path):
    return make_release(tmp_path / "CelebAMask-HQ")


@pytest.fixture
def prepared(release, tmp_path):
    return prepare_celebamaskhq(release, tmp_path / "prepared", 64, progress=False)


def test_registered():
    assert DATASETS.get("celebamaskhq") is CelebAMaskHQ


def test_splits_shapes_and_dtypes(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 2, "val": 2, "test": 2} and manifest["size"] == 64
    assert manifest["attributes"] == [NAMES[i] for i in ATTRIBUTE_INDICES]
    assert manifest["attributes"][:3] == ["Bald", "Bangs", "Black_Hair"]
    assert manifest["attributes"][-1] == "Wearing_Hat"
    for split, keys in SPLIT_KEYS.items():
        d = CelebAMaskHQ.load(prepared, split)
        assert torch.load(prepared / split / "index.pt").tolist() == keys
        assert d.modality_names == ["image", "mask", "attributes"] and len(d) == 2
        assert d.x["image"].shape == (2, 3, 64, 64) and d.x["image"].dtype == torch.float32
        assert d.x["mask"].shape == (2, 1, 64, 64) and d.x["attributes"].shape == (2, 18)
        assert [(m.kind, m.likelihood) for m in d.modalities] == [
            ("image", "laplace"),
            ("mask", "bernoulli"),
            ("attributes", "bernoulli"),
        ]
        for i, k in enumerate(keys):
            assert abs(float(d.x["image"][i, 0, 30, 30]) - (k % 250) / 255) < 3 / 255
    CelebAMaskHQ.check_options(prepared)
    CelebAMaskHQ.check_options(prepared, size=64)
    assert CelebAMaskHQ.release(prepared) == "2/2/2 images, 64x64"


def test_mask_is_the_union_of_every_part_but_skin(prepared):
    def q(top, left):
        return torch.from_numpy(_quadrant(top, left)[::2, ::2] > 0).float()

    train, val, test = (CelebAMaskHQ.load(prepared, s).x["mask"][:, 0] for s in ("train", "val", "test"))
    assert torch.equal(train[0], q(True, True) + q(False, False))  # hair + nose (an RGB file), skin left out
    assert train[1].sum() == 0  # skin only
    assert torch.equal(val[0], q(False, True)) and val[1].sum() == 0  # no part file at all: empty mask
    assert torch.equal(test[0], q(True, True) + q(True, False)) and torch.equal(test[1], q(False, True))


def test_attributes_are_the_18_selected_as_0_1(prepared):
    for split, keys in SPLIT_KEYS.items():
        d = CelebAMaskHQ.load(prepared, split)
        expected = torch.tensor([[float(_value(k, j) > 0) for j in ATTRIBUTE_INDICES] for k in keys])
        assert torch.equal(d.x["attributes"], expected) and torch.equal(d.y, expected.long())


def test_prepare_at_128(release, tmp_path):
    out = prepare_celebamaskhq(release, tmp_path / "p128", 128, progress=False)
    d = CelebAMaskHQ.load(out, "test", size=128)
    assert d.x["image"].shape == (2, 3, 128, 128)
    top = torch.from_numpy((_quadrant(True, True) | _quadrant(True, False)) > 0).float()
    assert torch.equal(d.x["mask"][0, 0], top)


def test_cli_prepare(release, tmp_path, capsys):
    assert main(["data", "prepare", "celebamaskhq", str(release), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "prepared in" in capsys.readouterr().out
    assert len(CelebAMaskHQ.load(tmp_path / "c", "val")) == 2
    assert main(["data", "prepare", "celebamaskhq", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere does not exist" in err
    assert main(["data", "prepare", "celebamaskhq", str(release), "--out", str(tmp_path / "c")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def _expect(match, fn, *args, **kw):
    with pytest.raises(MMBenchError, match=match) as err:
        fn(*args, **kw)
    assert "\n" not in str(err.value)


def test_load_refuses_the_raw_release(release):
    _expect("raw CelebAMask-HQ release; run `mmbench data prepare celebamaskhq", CelebAMaskHQ.load, release, "train")
    _expect("raw CelebAMask-HQ release", CelebAMaskHQ.check_options, release)


def test_cache_problems_are_named(prepared, tmp_path):
    _expect("prepared at 64x64, not 128x128", CelebAMaskHQ.load, prepared, "train", size=128)
    _expect("size must be one of", CelebAMaskHQ.check_options, prepared, size=32)
    _expect("split must be one of", CelebAMaskHQ.load, prepared, "validation")
    _expect("nothing does not exist", CelebAMaskHQ.load, tmp_path / "nothing")
    (prepared / "test" / "mask.pt").unlink()
    _expect("test/mask.pt is missing: the test split lacks the mask modality", CelebAMaskHQ.load, prepared, "test")
    _expect("test/mask.pt is missing", CelebAMaskHQ.check_options, prepared)
    torch.save(torch.full((2, 18), 2, dtype=torch.uint8), prepared / "val" / "attributes.pt")
    _expect("val/attributes.pt holds value 2, out of range", CelebAMaskHQ.load, prepared, "val")
    torch.save(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), prepared / "train" / "image.pt")
    _expect(
        r"train/image.pt holds torch.uint8 \(2, 3, 32, 32\), expected uint8 \(2, 3, 64, 64\)",
        CelebAMaskHQ.load,
        prepared,
        "train",
    )
    (prepared / "manifest.json").unlink()
    _expect("manifest.json is missing or unreadable", CelebAMaskHQ.load, prepared, "val")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _prepare_fails(src, tmp_path, match):
    _expect(match, prepare_celebamaskhq, src, tmp_path / "out", 64, progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


def test_corrupt_image_is_named_and_nothing_is_written(release, tmp_path):
    (release / "CelebA-HQ-img" / "2000.jpg").write_bytes(b"\xff\xd8 truncated")
    _prepare_fails(release, tmp_path, "CelebA-HQ-img/2000.jpg is not a readable image")


def test_unreadable_mask_is_named(release, tmp_path):
    (release / "CelebAMask-HQ-mask-anno" / "0" / "00002_cloth.png").write_bytes(b"\x89PNG garbage")
    _prepare_fails(release, tmp_path, "0/00002_cloth.png is not a readable image")


def test_wrong_image_and_mask_sizes_are_named(release, tmp_path):
    Image.new("RGB", (H, H - 8)).save(release / "CelebA-HQ-img" / "3.jpg")
    _prepare_fails(release, tmp_path, "CelebA-HQ-img/3.jpg is 128x120; a square image is required")
    Image.new("RGB", (H, H)).save(release / "CelebA-HQ-img" / "3.jpg")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(release / "CelebAMask-HQ-mask-anno" / "0" / "00000_nose.png")
    _prepare_fails(release, tmp_path, "00000_nose.png is 64x64, but .*00000_hair.png is 128x128")


def test_attribute_line_with_39_values(release, tmp_path):
    path = release / "CelebAMask-HQ-attribute-anno.txt"
    lines = _lines(path)
    lines[4] = lines[4].rsplit(" ", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    _prepare_fails(release, tmp_path, r"attribute-anno.txt line 5 \(2.jpg\) has 39 values, expected 40")


def test_attribute_value_out_of_range(release, tmp_path):
    path = release / "CelebAMask-HQ-attribute-anno.txt"
    lines = _lines(path)
    lines[3] = lines[3][:-2] + " 2"
    path.write_text("\n".join(lines) + "\n")
    _prepare_fails(release, tmp_path, r"attribute-anno.txt line 4 \(1.jpg\): value '2' is out of range")


def test_attribute_count_and_listing_disagreements(release, tmp_path):
    path = release / "CelebAMask-HQ-attribute-anno.txt"
    lines = _lines(path)
    path.write_text("\n".join(["7"] + lines[1:]) + "\n")
    _prepare_fails(release, tmp_path, "attribute-anno.txt says 7 images on line 1 but lists 6")
    path.write_text("\n".join(["5"] + lines[1:-1]) + "\n")
    _prepare_fails(release, tmp_path, "CelebA-HQ-img/4001.jpg has no line in .*attribute-anno.txt")
    path.write_text("\n".join(lines) + "\n")
    (release / "CelebA-HQ-img" / "1.jpg").unlink()
    _prepare_fails(release, tmp_path, "CelebA-HQ-img/1.jpg is missing; .*attribute-anno.txt lists it")


def test_mapping_problems_are_named(release, tmp_path):
    path = release / "CelebA-HQ-to-CelebA-mapping.txt"
    lines = _lines(path)
    path.write_text("\n".join(lines[:-1]) + "\n")
    _prepare_fails(release, tmp_path, "mapping.txt has no line for image 4001")
    path.write_text("\n".join(lines[:-1] + ["4001        202599      202600.jpg"]) + "\n")
    _prepare_fails(release, tmp_path, "mapping.txt line 7: orig_idx 202599 is out of range")


def test_missing_files_and_folders_are_named(release, tmp_path):
    _prepare_fails(tmp_path / "none", tmp_path, "none does not exist")
    shutil.rmtree(release / "CelebAMask-HQ-mask-anno" / "2")
    _prepare_fails(release, tmp_path, "mask folder .*CelebAMask-HQ-mask-anno/2 does not exist")
    (release / "CelebAMask-HQ-attribute-anno.txt").unlink()
    _prepare_fails(release, tmp_path, "CelebAMask-HQ-attribute-anno.txt is missing")
    _expect("size must be one of", prepare_celebamaskhq, release, tmp_path / "x", 256)

"""CUB image-captions: the published layout loads with MMVAE's pairing, tokens and vocabulary; defects are named."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmbench.data.captions import EOS, EXC, PAD, SPECIALS
from mmbench.data.cub import CUB, VOCAB_CACHE
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS

# Class folders are listed out of order on purpose: the loader sorts them (ImageFolder order).
TRAIN = {"002.Laysan_Albatross": ["b.jpg", "a.jpg"], "001.Black_footed_Albatross": ["z.png"]}
TEST = {"003.Sooty_Albatross": ["c.jpg", "d.jpg"]}
LONG = " ".join(["bird"] * 40)


def _color(i: int) -> tuple[int, int, int]:
    return (40 * i + 20, 200 - 30 * i, 100)


COLORS = ("red", "blue", "green", "yellow", "black")  # train images use the first three, test the last two


def _caption(split: str, image: int, k: int) -> str:
    """Caption k of an image: its colour names the image, the number of "very" names k; "seen" occurs 3 times
    in the train captions (out of the vocabulary), "often" 4 times (in); the last word is unique (<exc>)."""
    if (split, image, k) == ("train", 0, 1):
        return LONG
    colour = COLORS[image + (3 if split == "test" else 0)]
    extra = " seen" if k == 2 else " often" if k == 3 or (image, k) == (0, 4) else ""
    return f"{'A' if k % 2 else 'a'} {colour} Bird" + " very" * k + extra + f" {split}{image}x{k}."


def _decoded(split: str, image: int, k: int) -> str:
    colour = COLORS[image] if split == "train" else "<exc>"
    extra = " <exc>" if k == 2 else " often" if k == 3 or (image, k) == (0, 4) else ""
    return f"a {colour} bird" + " very" * k + extra + " <exc> ."


def make_cub(root: Path) -> Path:
    """Images with distinct solid colours (non-square, as CUB's), 10 caption lines per image in sorted order."""
    for split, classes, text in (("train", TRAIN, "text_trainvalclasses.txt"), ("test", TEST, "text_testclasses.txt")):
        index = 0
        lines = []
        for cls in sorted(classes):
            (root / split / cls).mkdir(parents=True)
            for name in sorted(classes[cls]):
                colour = _color(index + (3 if split == "test" else 0))
                Image.new("RGB", (80, 60), colour).save(root / split / cls / name)
                lines += [_caption(split, index, k) for k in range(10)]
                index += 1
        (root / text).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def cub(tmp_path):
    return make_cub(tmp_path / "cub")


def test_registered():
    assert DATASETS.get("cub") is CUB


def test_shapes_dtypes_and_modalities(cub):
    d = CUB.load(cub, "train")
    assert len(d) == 3 and d.modality_names == ["image", "caption"]
    assert d.x["image"].shape == (3, 3, 64, 64) and d.x["image"].dtype == torch.float32
    assert 0 <= d.x["image"].min() and d.x["image"].max() <= 1
    assert d.x["caption"].shape == (3, 32) and d.x["caption"].dtype == torch.long
    image, caption = d.modalities
    assert (image.kind, image.likelihood) == ("image", "laplace")
    assert (caption.kind, caption.likelihood, caption.classes) == ("text", "categorical", len(d.vocabulary))
    assert d.y.tolist() == [0, 1, 1]  # 001 holds z.png; 002 holds a.jpg, b.jpg
    assert CUB.load(cub, "test").y.tolist() == [2, 2]  # classes numbered over both splits


def test_images_pair_with_captions_in_sorted_order(cub):
    for k in (0, 3, 9):
        d = CUB.load(cub, "train", caption=k)
        texts = d.decode_text("caption", d.x["caption"])
        for i in range(3):
            expected = torch.tensor(_color(i), dtype=torch.float32) / 255
            assert torch.allclose(d.x["image"][i, :, 10, 10], expected, atol=1 / 255)
            assert texts[i] == _decoded("train", i, k)
    t = CUB.load(cub, "test", caption=5)
    assert t.decode_text(t.x["caption"]) == [_decoded("test", i, 5) for i in range(2)]
    assert torch.allclose(t.x["image"][1, :, 0, 0], torch.tensor(_color(4), dtype=torch.float32) / 255, atol=1 / 255)


def test_tokens_vocabulary_and_specials(cub):
    d = CUB.load(cub, "train", caption=1)
    assert d.vocabulary[:3] == SPECIALS
    # train words seen more than 3 times, in order of first occurrence; lowercased; test words never count
    assert d.vocabulary[3:] == ("a", "red", "bird", ".", "very", "often", "blue", "green")
    long_row = d.x["caption"][0]  # image 0, caption 1: 40 words truncated to 31 + <eos>
    assert long_row[:31].tolist() == [d.vocabulary.index("bird")] * 31 and long_row[31] == EOS
    assert int(d.caption_lengths()[0]) == 32
    short = d.x["caption"][1]  # "A blue Bird very train1x1."
    n = int(d.caption_lengths("caption")[1])
    assert n == 7 and short[n - 1] == EOS and (short[n:] == PAD).all()
    assert short[: n - 1].tolist() == [3, 9, 5, 7, EXC, 6]


def test_decode_text_takes_scores_and_stops_at_eos(cub):
    d = CUB.load(cub, "test")
    scores = torch.nn.functional.one_hot(d.x["caption"], len(d.vocabulary)).float()
    assert d.decode_text("caption", scores) == d.decode_text("caption", d.x["caption"])
    ids = torch.tensor([[d.vocabulary.index("bird"), EOS, d.vocabulary.index("red"), PAD]])
    assert d.decode_text("caption", ids) == ["bird"]
    with pytest.raises(MMBenchError, match="'image'"):
        d.decode_text("image", ids)


def test_subsets_keep_the_vocabulary(cub):
    d = CUB.load(cub, "train").head(2).to("cpu")
    assert d.vocabulary[:3] == SPECIALS and len(d.decode_text(d.x["caption"])) == 2


def test_vocabulary_is_cached_and_rebuilt_when_captions_change(cub):
    a = CUB.load(cub, "train")
    cache = json.loads((cub / VOCAB_CACHE).read_text())
    assert cache["words"] == list(a.vocabulary)
    cache["words"] = cache["words"][:3] + ["zzz"] + cache["words"][3:]
    (cub / VOCAB_CACHE).write_text(json.dumps(cache))
    assert CUB.load(cub, "train").vocabulary[3] == "zzz"  # same train file: the cache is read
    text = cub / "text_trainvalclasses.txt"
    text.write_text(text.read_text().replace("red", "scarlet"))
    b = CUB.load(cub, "train")
    assert "scarlet" in b.vocabulary and "zzz" not in b.vocabulary and "red" not in b.vocabulary


def test_unwritable_folder_still_loads_the_same(cub, monkeypatch):
    import tempfile

    expected = CUB.load(cub, "train").vocabulary
    (cub / VOCAB_CACHE).unlink()

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # every atomic write starts with a temporary file
    assert CUB.load(cub, "train").vocabulary == expected
    assert not (cub / VOCAB_CACHE).exists()


def test_check_options_accepts_the_fixture(cub):
    CUB.check_options(cub)
    CUB.check_options(cub, caption=9)
    assert CUB.release(cub) == "3/2 images" and CUB.release(cub / "gone") == ""


def _expect(root, match, fn=CUB.load, **kw):
    with pytest.raises(MMBenchError, match=match) as err:
        fn(root, **kw)
    assert "\n" not in str(err.value)


def test_missing_folder_is_named(cub, tmp_path):
    _expect(tmp_path / "none", "none/train does not exist")
    import shutil

    shutil.rmtree(cub / "test")
    _expect(cub, "cub/test does not exist", split="test")
    _expect(cub, "cub/test does not exist", fn=CUB.check_options)


def test_split_without_captions_is_named(cub):
    (cub / "text_testclasses.txt").unlink()
    _expect(cub, "text_testclasses.txt is missing: the test split has images but no captions", split="test")
    _expect(cub, "text_testclasses.txt is missing", fn=CUB.check_options)


def test_caption_count_not_a_multiple_of_ten(cub):
    path = cub / "text_testclasses.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    _expect(cub, "text_testclasses.txt has 19 captions, not a positive multiple of 10", split="test")
    _expect(cub, "text_testclasses.txt has 19 captions", fn=CUB.check_options)


def test_caption_count_that_disagrees_with_the_images(cub):
    (cub / "test" / "003.Sooty_Albatross" / "d.jpg").unlink()
    _expect(cub, r"text_testclasses.txt has 20 captions for 1 images in .*cub/test: expected 10", split="test")


def test_corrupt_image_is_named(cub):
    (cub / "train" / "002.Laysan_Albatross" / "a.jpg").write_bytes(b"not a jpeg")
    _expect(cub, "002.Laysan_Albatross/a.jpg is not a readable image")


def test_loose_image_and_bad_options(cub):
    _expect(cub, "caption must be an integer 0..9", caption=10)
    _expect(cub, "caption must be an integer 0..9", fn=CUB.check_options, caption=-1)
    _expect(cub, "split must be one of", split="val")
    Image.new("RGB", (8, 8)).save(cub / "test" / "loose.jpg")
    _expect(cub, "test/loose.jpg: CUB images must sit in class folders", split="test")

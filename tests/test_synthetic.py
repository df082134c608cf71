"""Synthetic dataset: a known generative process, deterministic per seed, every modality kind, checked options."""

import pytest
import torch

from mmbench.data.synthetic import DIGITS, PAIRS, VOCAB, Synthetic, sample
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS
from mmbench.runs.spec import RunSpec

VIEWS = ["image", "image", "mask", "attributes", "text"]


def test_views_of_every_kind_with_their_modalities():
    d = Synthetic.load(split="train", views=VIEWS, n=64, size=16, attributes=5)
    assert d.modality_names == ["image0", "image1", "mask0", "attributes0", "text0"]
    kinds = {m.name: (m.kind, m.shape, m.likelihood, m.classes) for m in d.modalities}
    assert kinds == {
        "image0": ("image", (3, 16, 16), "laplace", 0),
        "image1": ("image", (3, 16, 16), "laplace", 0),
        "mask0": ("mask", (1, 16, 16), "bernoulli", 0),
        "attributes0": ("attributes", (5,), "bernoulli", 0),
        "text0": ("text", (32,), "categorical", len(VOCAB)),
    }
    assert 0 <= d.x["image0"].min() and d.x["image0"].max() <= 1
    for binary in ("mask0", "attributes0"):
        assert set(d.x[binary].unique().tolist()) == {0.0, 1.0}
    assert d.x["text0"].dtype == torch.long and d.x["text0"].max() < len(VOCAB)
    assert d.y.dtype == torch.long and len(d) == 64 and set(d.y.tolist()) <= set(range(10))


def test_deterministic_per_seed_and_split():
    a, b = (Synthetic.load(split="test", views=VIEWS, n=32, seed=3) for _ in range(2))
    train = Synthetic.load(split="train", views=VIEWS, n=32, seed=3)
    other = Synthetic.load(split="test", views=VIEWS, n=32, seed=4)
    for m in a.modality_names:
        assert torch.equal(a.x[m], b.x[m])
        assert not torch.equal(a.x[m], train.x[m]) and not torch.equal(a.x[m], other.x[m])


def test_a_views_map_does_not_depend_on_the_other_views():
    a = Synthetic.load(split="train", views=["image", "text"], n=16)
    b = Synthetic.load(split="train", views=["image", "mask", "mask"], n=16)
    assert torch.equal(a.x["image0"], b.x["image0"]) and torch.equal(a.y, b.y)


def test_train_and_test_share_the_process():
    # the same fixed maps in both splits: class-mean images agree across splits far better than across classes
    train = Synthetic.load(split="train", views=["image"], n=2000, size=8)
    test = Synthetic.load(split="test", views=["image"], n=2000, size=8)
    mean = {
        name: torch.stack([d.x["image0"][d.y == c].mean(0).flatten() for c in range(10)])
        for name, d in (("train", train), ("test", test))
    }
    dist = torch.cdist(mean["train"], mean["test"])
    assert torch.equal(dist.argmin(1), torch.arange(10))


def test_text_says_the_class_and_the_signs_of_the_shared_latent():
    drawn = sample(["text"], 50, 8, 4, 0, "train")
    d = Synthetic.load(split="train", views=["text"], n=50, size=8)
    sentences = d.decode_text("text0", d.x["text0"])
    assert sentences == d.head(50).decode_text("text0", torch.nn.functional.one_hot(d.x["text0"], len(VOCAB)).float())
    lengths = set()
    for s, c, w in zip(sentences, drawn.y.tolist(), drawn.w):
        words = s.split()
        assert words[:5] == ["a", PAIRS[0][int(w[0] > 0)], PAIRS[1][int(w[1] > 0)], DIGITS[c], "shape"]
        lengths.add(len(words))
    assert lengths == {5, 8}  # the private clause "with ... ..." on some rows
    with pytest.raises(MMBenchError, match="no text view 'image0'"):
        Synthetic.load(split="train", views=["image", "text"], n=4).decode_text("image0", d.x["text0"][:4])


def test_registered_root_ignored_and_checked_at_submission(tmp_path):
    assert DATASETS.get("synthetic") is Synthetic
    d = Synthetic.load(tmp_path / "nowhere", "train", n=8)
    assert len(d) == 8 and Synthetic.release() == "generated in code (v1)"
    RunSpec("mopoe", "synthetic", {"views": ["image", "image"], "n": 16}).validate()
    with pytest.raises(MMBenchError, match="synthetic views must be a non-empty list"):
        RunSpec("mopoe", "synthetic", {"views": ["image", "photo"]}).validate()
    with pytest.raises(MMBenchError, match="bad options for dataset 'synthetic'"):
        RunSpec("mopoe", "synthetic", {"modalities": 3}).validate()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"views": []}, "views must be a non-empty list"),
        ({"views": "image"}, "views must be a non-empty list"),
        ({"n": 0}, r"n must be an integer >= 1, got 0"),
        ({"size": 4}, r"size must be an integer 8\.\.256, got 4"),
        ({"attributes": 1.5}, "attributes must be an integer"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_options_are_one_clear_error(options, message):
    with pytest.raises(MMBenchError, match=message):
        Synthetic.load(split="train", **options)
    with pytest.raises(MMBenchError, match=message):
        Synthetic.check_options(**options)


def test_unknown_split_is_refused():
    with pytest.raises(MMBenchError, match=r"synthetic split must be one of \('train', 'test'\), got 'val'"):
        Synthetic.load(split="val")

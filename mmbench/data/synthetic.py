"""A synthetic multimodal dataset with a known generative process, built in code (no files).

Shared latent: a class c ~ U{0..9} and a continuous vector w ~ N(0, I_4). View v sees the shared code
s = [3 onehot(c), w] and its own private noise e_v ~ N(0, I_2), through a fixed random map drawn from ``seed``
(the same in every split):
  image       3xSxS in [0, 1]: sigmoid of a 3x4x4 linear image of [s, e_v / 2], upsampled bilinearly to SxS
  mask        1xSxS binary: the same rendering with one channel, thresholded at 1/2
  attributes  k binary values 1[A_v s > 0]: a function of the shared latent alone
  text        32 tokens: "a {small|large} {left|right} {digit} shape [with {dark|bright} {round|square}] <eos>"
              (the words from the signs of w, the clause when e_v[0] > 0), padded; specials as CUB's captions
              (<exc>=0, <pad>=1, <eos>=2, Shi et al. 2019)
Every view carries the class, so coherence, probes and cross-modal generation have a right answer, and a test of
any model on any modality kind needs no download. Train and test are drawn from different streams of ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.registry import register_dataset

SPLITS = ("train", "test")
KINDS = ("image", "mask", "attributes", "text")
DEFAULT_VIEWS = ("image", "image", "mask", "attributes", "text")
CLASSES, SHARED_DIM, PRIVATE_DIM, COARSE, TEXT_LENGTH = 10, 4, 2, 4, 32
GENERATOR_VERSION = 1  # bump when the process changes: records name it as the dataset release
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAIRS = (("small", "large"), ("left", "right"), ("dark", "bright"), ("round", "square"))
VOCAB = ("<exc>", "<pad>", "<eos>", "a", "shape", "with", *DIGITS, *(word for pair in PAIRS for word in pair))
_ID = {word: i for i, word in enumerate(VOCAB)}
PAD, EOS = _ID["<pad>"], _ID["<eos>"]


class SyntheticSample(NamedTuple):
    """x: {view name: Tensor (N, *shape)}; y: class labels (N,) long; w: the shared continuous latent (N, 4)."""

    x: dict[str, Tensor]
    y: Tensor
    w: Tensor


class SyntheticDataset(MultimodalDataset):
    """A MultimodalDataset whose text views decode back to words (for clip_score and sample grids)."""

    def decode_text(self, modality: str, tokens: Tensor) -> list[str]:
        """Token indices (B, L), or logits (B, L, V), of text view ``modality`` -> one string per row."""
        if modality not in {m.name for m in self.modalities if m.kind == "text"}:
            raise MMBenchError(f"dataset {self.name!r} has no text view {modality!r}")
        return decode_tokens(tokens)


def decode_tokens(tokens: Tensor) -> list[str]:
    """Words up to the first <eos>, without <pad> and <exc>."""
    rows = (tokens.argmax(-1) if tokens.is_floating_point() else tokens).tolist()
    out = []
    for row in rows:
        stop = row.index(EOS) if EOS in row else len(row)
        out.append(" ".join(VOCAB[t] for t in row[:stop] if 0 <= t < len(VOCAB) and VOCAB[t] not in ("<pad>", "<exc>")))
    return out


def view_names(views: Sequence[str]) -> list[str]:
    """One name per view: its kind and its index among views of that kind (image0, image1, mask0, ...)."""
    return [f"{kind}{list(views[:i]).count(kind)}" for i, kind in enumerate(views)]


def view_modality(name: str, kind: str, size: int, attributes: int) -> Modality:
    if kind == "image":
        return Modality(name, (3, size, size), "image", "laplace")
    if kind == "mask":
        return Modality(name, (1, size, size), "mask", "bernoulli")
    if kind == "attributes":
        return Modality(name, (attributes,), "attributes", "bernoulli")
    return Modality(name, (TEXT_LENGTH,), "text", "categorical", classes=len(VOCAB))


def _field(code: np.ndarray, world: np.random.Generator, channels: int, size: int) -> Tensor:
    """sigmoid(code @ A) as a coarse (channels, 4, 4) image, upsampled bilinearly to size x size."""
    a = world.standard_normal((code.shape[1], channels * COARSE * COARSE)) * (3.0 / np.sqrt(code.shape[1]))
    coarse = torch.from_numpy(code @ a).float().reshape(len(code), channels, COARSE, COARSE)
    return torch.sigmoid(F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False))


def _render(
    kind: str, shared: np.ndarray, private: np.ndarray, world: np.random.Generator, size: int, attributes: int
) -> Tensor:
    if kind in ("image", "mask"):
        field = _field(np.concatenate([shared, private / 2], 1), world, 3 if kind == "image" else 1, size)
        return field if kind == "image" else (field > 0.5).float()
    if kind == "attributes":
        return torch.from_numpy((shared @ world.standard_normal((shared.shape[1], attributes)) > 0).astype(np.float32))
    c, w = shared[:, :CLASSES].argmax(1), shared[:, CLASSES:]
    words = [np.full(len(c), _ID["a"]), *(np.where(w[:, j] > 0, _ID[PAIRS[j][1]], _ID[PAIRS[j][0]]) for j in range(4))]
    clause = private[:, 0] > 0
    columns = [
        *words[:3],
        np.array([_ID[d] for d in DIGITS])[c],
        np.full(len(c), _ID["shape"]),
        np.where(clause, _ID["with"], EOS),
        np.where(clause, words[3], PAD),
        np.where(clause, words[4], PAD),
        np.where(clause, EOS, PAD),
    ]
    tokens = np.full((len(c), TEXT_LENGTH), PAD, dtype=np.int64)
    tokens[:, : len(columns)] = np.stack(columns, 1)
    return torch.from_numpy(tokens)


def sample(views: Sequence[str], n: int, size: int, attributes: int, seed: int, split: str) -> SyntheticSample:
    """Draw split ``split`` of the process in the module's docstring. Streams (numpy SeedSequence entropy):
    (seed, s) for the latent of split s (train 1, test 2), (seed, s, v + 1) for view v's private noise, and
    (seed, 0, v + 1) for view v's map, so a view's map does not depend on the other views."""
    _validate(views, n, size, attributes, seed)
    if split not in SPLITS:
        raise MMBenchError(f"synthetic split must be one of {SPLITS}, got {split!r}")
    s = SPLITS.index(split) + 1
    rng = np.random.default_rng((seed, s))
    c = rng.integers(0, CLASSES, n)
    w = rng.standard_normal((n, SHARED_DIM))
    shared = np.concatenate([3.0 * np.eye(CLASSES)[c], w], 1)
    x = {}
    for v, (name, kind) in enumerate(zip(view_names(views), views)):
        private = np.random.default_rng((seed, s, v + 1)).standard_normal((n, PRIVATE_DIM))
        x[name] = _render(kind, shared, private, np.random.default_rng((seed, 0, v + 1)), size, attributes)
    return SyntheticSample(x, torch.from_numpy(c).long(), torch.from_numpy(w).float())


def _validate(views, n, size, attributes, seed) -> None:
    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if isinstance(views, str) or not isinstance(views, Sequence) or not views or any(v not in KINDS for v in views):
        raise MMBenchError(f"synthetic views must be a non-empty list of {', '.join(KINDS)}, got {views!r}")
    for name, value, low, high in (
        ("n", n, 1, None),
        ("size", size, 8, 256),
        ("attributes", attributes, 1, None),
        ("seed", seed, 0, None),
    ):
        if not is_int(value) or value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high else f">= {low}"
            raise MMBenchError(f"synthetic {name} must be an integer {allowed}, got {value!r}")


@register_dataset("synthetic")
class Synthetic:
    """Synthetic views (image, mask, attributes, text) of a known shared latent, generated in code."""

    SPLITS = SPLITS

    @staticmethod
    def check_options(
        root: str | Path | None = None,
        views: Sequence[str] = DEFAULT_VIEWS,
        n: int = 1000,
        size: int = 32,
        attributes: int = 8,
        seed: int = 0,
    ) -> None:
        """What ``load`` would refuse (checked when a sweep is submitted)."""
        _validate(views, n, size, attributes, seed)

    @staticmethod
    def release(**_) -> str:
        return f"generated in code (v{GENERATOR_VERSION})"

    @staticmethod
    def load(
        root: str | Path | None = None,
        split: str = "train",
        views: Sequence[str] = DEFAULT_VIEWS,
        n: int = 1000,
        size: int = 32,
        attributes: int = 8,
        seed: int = 0,
    ) -> SyntheticDataset:
        """``n`` tuples of ``views`` for ``split``, generated in code.

        root:       ignored (nothing is read); accepted because runs pass a folder to every adapter, and part of a
                    run's spec, so keep it fixed (or leave it out) to keep run ids stable.
        views:      the kinds of the views, in order (image, mask, text, attributes).
        n:          tuples per split.
        size:       side of images and masks.
        attributes: values per attribute view.
        seed:       the generator's seed.
        """
        drawn = sample(views, n, size, attributes, seed, split)
        mods = [view_modality(name, kind, size, attributes) for name, kind in zip(view_names(views), views)]
        return SyntheticDataset(mods, drawn.x, drawn.y, name="synthetic")

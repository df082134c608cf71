"""CelebAMask-HQ adapter: reads the cache that ``mmbench data prepare celebamaskhq SRC --out DIR`` writes
(layout in ``mmbench.data.celebamaskhq_prepare``), never the 1024x1024 JPEGs themselves.

Modalities: image (3, S, S) in [0, 1], mask (1, S, S) in {0, 1} (every part but skin), attributes (18,) in {0, 1};
y holds the 18 attributes as int64. Splits train / val / test follow the published CelebA split.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mmbench.data.base import MultimodalDataset
from mmbench.data.celebamaskhq_prepare import FORMAT, MODALITY_FILES, SIZES
from mmbench.data.celebamaskhq_source import ATTRIBUTE_INDICES, ATTRIBUTES, IMAGES, SPLITS
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.registry import register_dataset

N_SELECTED = len(ATTRIBUTE_INDICES)


@register_dataset("celebamaskhq")
class CelebAMaskHQ:
    """CelebAMask-HQ (Lee et al. 2020): face image, combined part mask, 18 binary attributes."""

    SPLITS = SPLITS

    @staticmethod
    def check_options(root: str | Path, size: int | None = None, allow_missing: bool = False) -> None:
        """What ``load`` would refuse, found without reading tensors: a prepared cache at ``size`` holding every
        split's modality files (and, without ``allow_missing``, no image without a mask)."""
        info = _manifest(Path(root), size)
        _check_missing(Path(root), info, allow_missing)
        for split in SPLITS:
            for name in MODALITY_FILES:
                _require(Path(root) / split / name, split)

    @staticmethod
    def release(root: str | Path, **_) -> str:
        """ "published, SxS" for the 30,000-image release, else its split sizes and S; "" when not a prepared cache."""
        try:
            info = _manifest(Path(root), None)
        except MMBenchError:
            return ""
        n = info["splits"]
        size = f"{info['size']}x{info['size']}"
        if sum(n.values()) == 30000:
            return f"published, {size}"
        return f"{n['train']:,}/{n['val']:,}/{n['test']:,} images, {size}"

    @staticmethod
    def load(
        root: str | Path, split: str = "train", size: int | None = None, allow_missing: bool = False
    ) -> MultimodalDataset:
        """A split of the prepared cache.

        root:          the folder ``mmbench data prepare celebamaskhq`` wrote.
        size:          64 or 128, which must be the cache's (None: the cache's).
        allow_missing: a cache prepared with --allow-missing holds images without a mask file: false (default)
                       refuses it, true marks their mask missing (the dataset's mask; mmbench.data.missing).
        """
        root = Path(root)
        if split not in SPLITS:
            raise MMBenchError(f"CelebAMask-HQ split must be one of {SPLITS}, got {split!r}")
        info = _manifest(root, size)
        _check_missing(root, info, allow_missing)
        s, n = info["size"], info["splits"][split]
        expected = {"image.pt": (n, 3, s, s), "mask.pt": (n, 1, s, s), "attributes.pt": (n, N_SELECTED)}
        t = {}
        for name, shape in expected.items():
            t[name] = _tensor(_require(root / split / name, split), shape, binary=name != "image.pt")
        if n == 0:
            raise MMBenchError(f"{root / split} holds no images: the source had none in the {split} split")
        mods = [
            Modality("image", (3, s, s), "image", "laplace"),
            Modality("mask", (1, s, s), "mask", "bernoulli"),
            Modality("attributes", (N_SELECTED,), "attributes", "bernoulli"),
        ]
        x = {
            "image": t["image.pt"].float().div_(255.0),
            "mask": t["mask.pt"].float(),
            "attributes": t["attributes.pt"].float(),
        }
        mask = None
        if (root / split / OBSERVED).is_file():
            observed = torch.load(root / split / OBSERVED, map_location="cpu", weights_only=True)
            if not isinstance(observed, torch.Tensor) or observed.dtype != torch.bool or observed.shape != (n,):
                raise MMBenchError(f"{root / split / OBSERVED} must hold bool ({n},); prepare the cache again")
            mask = {"mask": observed}
        return MultimodalDataset(mods, x, t["attributes.pt"].long(), name="celebamaskhq", mask=mask)


OBSERVED = "mask_observed.pt"  # bool (N,): False where the image had no mask file (prepared with --allow-missing)


def _check_missing(root: Path, info: dict, allow_missing) -> None:
    if not isinstance(allow_missing, bool):
        raise MMBenchError(f"CelebAMask-HQ option allow_missing must be true or false, got {allow_missing!r}")
    without = {s: n for s, n in (info.get("without_mask") or {}).items() if n}
    if without and not allow_missing:
        counts = ", ".join(f"{n} in {s}" for s, n in without.items())
        raise MMBenchError(
            f"{root} holds images without a mask file ({counts}; prepared with --allow-missing); to train with "
            "their masks missing, set the dataset option allow_missing = true"
        )


def _manifest(root: Path, size: int | None) -> dict:
    if size is not None and size not in SIZES:
        raise MMBenchError(f"CelebAMask-HQ size must be one of {SIZES}, got {size!r}")
    if not root.is_dir():
        raise MMBenchError(
            f"CelebAMask-HQ folder {root} does not exist; prepare one with `mmbench data prepare "
            "celebamaskhq SRC --out DIR`"
        )
    if (root / IMAGES).is_dir() or (root / ATTRIBUTES).is_file():
        raise MMBenchError(
            f"{root} is the raw CelebAMask-HQ release; run `mmbench data prepare celebamaskhq {root} "
            f"--out DIR --size {size or 64}` first and load DIR"
        )
    path = root / "manifest.json"
    try:
        info = json.loads(path.read_text())
        ok = (
            info["dataset"] == "celebamaskhq"
            and info["format"] == FORMAT
            and info["size"] in SIZES
            and all(isinstance(info["splits"][s], int) and info["splits"][s] >= 0 for s in SPLITS)
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MMBenchError(
            f"{path} is missing or unreadable ({type(exc).__name__}); {root} is not a prepared "
            "CelebAMask-HQ cache: make one with `mmbench data prepare celebamaskhq SRC --out DIR`"
        ) from None
    if not ok:
        raise MMBenchError(f"{path} is not a CelebAMask-HQ manifest of format {FORMAT}; prepare the cache again")
    if size is not None and size != info["size"]:
        raise MMBenchError(
            f"{root} was prepared at {info['size']}x{info['size']}, not {size}x{size}; run `mmbench "
            f"data prepare celebamaskhq SRC --out DIR --size {size}` for that size"
        )
    return info


def _require(path: Path, split: str) -> Path:
    if not path.is_file():
        raise MMBenchError(
            f"{path} is missing: the {split} split lacks the {path.stem} modality; prepare the cache again"
        )
    return path


def _tensor(path: Path, shape: tuple, *, binary: bool) -> torch.Tensor:
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise MMBenchError(f"{path} is not a readable tensor file ({type(exc).__name__})") from None
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or tuple(t.shape) != shape:
        got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise MMBenchError(f"{path} holds {got}, expected uint8 {shape} (the manifest's size and count)")
    if binary and t.numel() and int(t.max()) > 1:
        raise MMBenchError(f"{path} holds value {int(t.max())}, out of range: it must be 0 or 1")
    return t

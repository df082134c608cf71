"""PolyMNIST adapter: reads both published layouts, of PolyMNIST and of Extended PolyMNIST (REFERENCE.md).

PNG layout:    {root}/{split}/m{k}/{i}.{label}.png   (tuple = same file name across m0..m{M-1})
Tensor layout: {root}/{split}/m{k}.pt (N, 3, 28, 28) in [0, 1] (or uint8)  and  labels.pt (N,)
Splits: train and test (Sutter et al. 2021; Translated-PolyMNIST, Daunhawer et al. 2022, has the same layout);
Extended PolyMNIST (Wesego & Rooshenas 2024) adds val and holds 10 modalities.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.registry import register_dataset

SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "test")  # val only in the Extended layout
SIZE, CLASSES = 28, 10
_MOD_DIR = re.compile(r"^m(\d+)$")
_MOD_PT = re.compile(r"^m(\d+)\.pt$")
SOURCE_HINT = (
    "get PolyMNIST from the MoPoE authors' release, or build a small one offline with "
    "`mmbench data build polymnist --out DIR`"
)


@register_dataset("polymnist")
class PolyMNIST:
    """PolyMNIST (Sutter et al. 2021): M views of one digit on different photo backgrounds, 3x28x28."""

    @staticmethod
    def splits(root: str | Path, **_) -> tuple[str, ...]:
        """The splits the folder holds: train and test, and val in the Extended layout."""
        return tuple(s for s in SPLITS if s in REQUIRED_SPLITS or (Path(root) / s).is_dir())

    @staticmethod
    def check_options(
        root: str | Path, modalities: int | None = None, subset: list[str] | None = None, pad_to: int = 0
    ) -> None:
        """What ``load`` would refuse, found without reading the images: train and test present, every split
        with the same modalities m0..m{M-1}, ``modalities`` / ``subset`` within them, ``pad_to`` valid (checked
        when a sweep is submitted)."""
        for split in REQUIRED_SPLITS:
            if not (Path(root) / split).is_dir():
                raise MMBenchError(f"PolyMNIST folder {Path(root) / split} does not exist; {SOURCE_HINT}")
        _check_pad(pad_to)
        _choose(Path(root), "train", modalities, subset)

    @staticmethod
    def release(root: str | Path, **_) -> str:
        """Which PolyMNIST this is: "published" (the authors' release, the papers' numbers; "published
        (extended)" with a val split), or "offline build, 4,000/1,000 tuples" (train/test; train/val/test for
        Extended, the variant in brackets when not the standard one) for a folder made by ``mmbench data build
        polymnist`` (its manifest.json); "" when the folder is not there. Tables keep them apart: numbers on
        one say nothing about the other."""
        root = Path(root)
        if not root.is_dir():
            return ""  # the folder is gone: nobody can tell any more
        try:
            info = json.loads((root / "manifest.json").read_text())
            sizes = "/".join(f"{info['sizes'][s]:,}" for s in SPLITS if s in info["sizes"])
            variant = info.get("variant", "standard")
        except (OSError, ValueError, KeyError, TypeError):
            return "published (extended)" if (root / "val").is_dir() else "published"
        return f"offline build{'' if variant == 'standard' else f' ({variant})'}, {sizes} tuples"

    @staticmethod
    def load(
        root: str | Path,
        split: str = "train",
        modalities: int | None = None,
        subset: list[str] | None = None,
        pad_to: int = 0,
    ) -> MultimodalDataset:
        """Load a split.

        root:       the PolyMNIST folder ({train,test}/m{k}/{i}.{label}.png, or m{k}.pt + labels.pt).
        modalities: keep the first k modalities (m0..m{k-1}), for scaling experiments (None: all).
        subset:     keep the named modalities (["m0", "m3"], in folder order); give modalities or subset.
        pad_to:     pad 28x28 to pad_to x pad_to with zeros, centred, as the Diff-MVAE authors' loader (0: off).
        """
        root = Path(root)
        if split not in SPLITS:
            raise MMBenchError(f"PolyMNIST split must be one of {SPLITS}, got {split!r}")
        folder = root / split
        if not folder.is_dir():
            if split == "val" and (root / "train").is_dir():
                raise MMBenchError(
                    f"PolyMNIST {root} has no val split (only the Extended layout has train/val/"
                    f"test); use split 'train' or 'test'"
                )
            raise MMBenchError(f"PolyMNIST folder {folder} does not exist; {SOURCE_HINT}")
        _check_pad(pad_to)
        layout, ids = _choose(root, split, modalities, subset)
        x, y = (_read_png_folders if layout == "png" else _read_tensors)(folder, ids)
        side = pad_to or SIZE
        if side != SIZE:
            p = (side - SIZE) // 2
            x = {k: F.pad(v, (p, p, p, p)) for k, v in x.items()}
        mods = [Modality(f"m{k}", (3, side, side), "image", "laplace") for k in ids]
        return MultimodalDataset(mods, x, y, name="polymnist")


def _check_pad(pad_to) -> None:
    if pad_to == 0:
        return
    if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < SIZE or (pad_to - SIZE) % 2:
        raise MMBenchError(
            f"PolyMNIST pad_to must be 0 (off) or a size >= {SIZE} that pads evenly on both sides "
            f"(32 for Extended PolyMNIST), got {pad_to!r}"
        )


def _discover(folder: Path) -> tuple[str, list[int]]:
    """(layout "png" | "pt", modality ids) of one split's folder; PNG folders win over tensor files."""
    dirs = sorted(int(m[1]) for p in folder.iterdir() if p.is_dir() and (m := _MOD_DIR.match(p.name)))
    pts = sorted(int(m[1]) for p in folder.iterdir() if p.is_file() and (m := _MOD_PT.match(p.name)))
    ids = dirs or pts
    if not ids:
        raise MMBenchError(f"{folder} holds neither m{{k}}/ PNG folders nor m{{k}}.pt tensors; {SOURCE_HINT}")
    if ids != list(range(len(ids))):
        raise MMBenchError(
            f"{folder}: modality folders must be m0..m{len(ids) - 1} without gaps, found "
            + ", ".join(f"m{i}" for i in ids)
        )
    return ("png" if dirs else "pt"), ids


def _choose(root: Path, split: str, modalities, subset) -> tuple[str, list[int]]:
    """The layout of ``split`` and the modality ids to read, after checking that every split present holds the
    same modalities (a split that lacks one is an error, never a silently smaller model)."""
    folder = root / split
    layout, ids = _discover(folder)
    for other in SPLITS:
        if other != split and (root / other).is_dir():
            other_ids = _discover(root / other)[1]
            if other_ids != ids:
                raise MMBenchError(
                    f"{root / other} holds modalities m0..m{len(other_ids) - 1} but {folder} holds "
                    f"m0..m{len(ids) - 1}; every split must hold the same ones"
                )
    if modalities is not None and subset is not None:
        raise MMBenchError(f"PolyMNIST {root}: give either modalities (the first k) or subset (names), not both")
    if modalities is not None:
        if isinstance(modalities, bool) or not isinstance(modalities, int) or not 1 <= modalities <= len(ids):
            raise MMBenchError(f"{folder} has {len(ids)} modalities; cannot take modalities={modalities}")
        return layout, ids[:modalities]
    if subset is None:
        return layout, ids
    if isinstance(subset, str) or not subset or not all(isinstance(s, str) for s in subset):
        raise MMBenchError(
            f"PolyMNIST subset must be a non-empty list of modality names such as ['m0', 'm3'], got {subset!r}"
        )
    unknown = [s for s in subset if s not in {f"m{k}" for k in ids}]
    if unknown or len(set(subset)) != len(subset):
        what = f"no modality {', '.join(map(repr, unknown))}" if unknown else f"one modality named twice in {subset}"
        raise MMBenchError(f"{folder} has {what}; it holds m0..m{len(ids) - 1}")
    return layout, [k for k in ids if f"m{k}" in subset]


def _read_png_folders(folder: Path, ids: list[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    from PIL import Image, UnidentifiedImageError

    names: list[str] | None = None
    x = {}
    for k in ids:
        mdir = folder / f"m{k}"
        files = sorted((p.name for p in mdir.iterdir() if p.suffix == ".png"), key=_tuple_order)
        if not files:
            raise MMBenchError(f"{mdir} holds no PNG files; {SOURCE_HINT}")
        if names is None:
            names = files
        elif files != names:
            missing = sorted(set(names) ^ set(files))[:3]
            raise MMBenchError(
                f"{mdir} does not hold the same file names as {folder / f'm{ids[0]}'} (e.g. "
                f"{missing}); tuples are matched by file name"
            )
        arr = np.empty((len(files), SIZE, SIZE, 3), dtype=np.uint8)
        for i, name in enumerate(files):
            try:
                with Image.open(mdir / name) as im:
                    img = np.asarray(im.convert("RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise MMBenchError(f"{mdir / name} is not a readable image: {exc}") from exc
            if img.shape != (SIZE, SIZE, 3):
                raise MMBenchError(f"{mdir / name} is {img.shape[1]}x{img.shape[0]}, expected {SIZE}x{SIZE}")
            arr[i] = img
        x[f"m{k}"] = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    labels = []
    for name in names:
        path = folder / f"m{ids[0]}" / name
        try:
            label = int(name.split(".")[-2])
        except (IndexError, ValueError):
            raise MMBenchError(f"{path}: file name must be '{{i}}.{{label}}.png'") from None
        if not 0 <= label < CLASSES:
            raise MMBenchError(f"{path}: label {label} is out of range 0..{CLASSES - 1}")
        labels.append(label)
    return x, torch.tensor(labels, dtype=torch.long)


def _tuple_order(name: str) -> tuple:
    """Sort key: the tuple index i of '{i}.{label}.png' numerically, so PNG and tensor layouts align."""
    head = name.split(".", 1)[0]
    return (0, int(head), name) if head.isdigit() else (1, 0, name)


def _read_tensors(folder: Path, ids: list[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    def load(path: Path) -> torch.Tensor:
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise MMBenchError(f"{path} is not a readable tensor file: {type(exc).__name__}: {exc}") from exc
        if not isinstance(t, torch.Tensor):
            raise MMBenchError(f"{path} holds a {type(t).__name__}, expected a tensor")
        return t

    labels_path = folder / "labels.pt"
    if not labels_path.is_file():
        raise MMBenchError(f"{labels_path} is missing; the tensor layout needs labels.pt beside m{{k}}.pt")
    y = load(labels_path).reshape(-1)
    bad = torch.nonzero((y < 0) | (y >= CLASSES) | (y != y.round() if y.is_floating_point() else False))
    if len(bad):
        i = int(bad[0])
        raise MMBenchError(f"{labels_path}: label {y[i].item()} at row {i} is out of range 0..{CLASSES - 1}")
    y = y.long()
    x = {}
    for k in ids:
        path = folder / f"m{k}.pt"
        t = load(path)
        if tuple(t.shape[1:]) != (3, SIZE, SIZE) or len(t) != len(y):
            raise MMBenchError(
                f"{path} has shape {tuple(t.shape)}, expected ({len(y)}, 3, {SIZE}, {SIZE}) to match labels.pt"
            )
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
        if len(t) and not (t.min() >= 0 and t.max() <= 1):  # also refuses NaN
            raise MMBenchError(
                f"{path} holds values in [{t.min().item():.3g}, {t.max().item():.3g}]; expected [0, 1] "
                "(or uint8 0..255)"
            )
        x[f"m{k}"] = t
    return x, y

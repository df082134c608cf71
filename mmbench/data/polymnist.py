"""PolyMNIST adapter: reads both published layouts (REFERENCE.md).

PNG layout:    {root}/{train,test}/m{k}/{i}.{label}.png   (tuple = same file name across m0..m{M-1})
Tensor layout: {root}/{train,test}/m{k}.pt (N, 3, 28, 28) in [0, 1]  and  labels.pt (N,)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.registry import register_dataset

SPLITS = ("train", "test")
_MOD_DIR = re.compile(r"^m(\d+)$")
_MOD_PT = re.compile(r"^m(\d+)\.pt$")
SOURCE_HINT = ("get PolyMNIST from the MoPoE authors' release, or build a small one offline with "
               "`mmbench data build polymnist --out DIR`")


@register_dataset("polymnist")
class PolyMNIST:
    """PolyMNIST (Sutter et al. 2021): M views of one digit on different photo backgrounds, 3x28x28."""

    @staticmethod
    def check_options(root: str | Path, modalities: int | None = None) -> None:
        """What ``load`` would refuse, found without reading the images: both splits present, with the same
        modalities m0..m{M-1}, and ``modalities`` within them (checked when a sweep is submitted)."""
        found = {}
        for split in SPLITS:
            folder = Path(root) / split
            if not folder.is_dir():
                raise MMBenchError(f"PolyMNIST folder {folder} does not exist; {SOURCE_HINT}")
            found[split] = sorted({int(m[1]) for p in folder.iterdir() if (m := _MOD_DIR.match(p.name) or
                                                                           _MOD_PT.match(p.name))})
            if not found[split]:
                raise MMBenchError(f"{folder} holds neither m{{k}}/ PNG folders nor m{{k}}.pt tensors; {SOURCE_HINT}")
        if found["train"] != found["test"]:
            raise MMBenchError(f"PolyMNIST {root}: train has modalities {found['train']} and test {found['test']}; "
                               "both splits must hold the same ones")
        if modalities is not None and not 1 <= modalities <= len(found["train"]):
            raise MMBenchError(f"{Path(root) / 'train'} has {len(found['train'])} modalities; cannot take "
                               f"modalities={modalities}")

    @staticmethod
    def release(root: str | Path, **_) -> str:
        """Which PolyMNIST this is: "published" (the MoPoE authors' 60k/10k release, the papers' numbers), or
        "offline build, 4,000/1,000 tuples" for a folder made by ``mmbench data build polymnist`` (its
        manifest.json); "" when the folder is not there. Tables keep them apart: numbers on one say nothing about
        the other."""
        manifest = Path(root) / "manifest.json"
        if not Path(root).is_dir():
            return ""  # the folder is gone: nobody can tell any more
        try:
            info = json.loads(manifest.read_text())
            sizes = info["sizes"]
            return f"offline build, {sizes['train']:,}/{sizes['test']:,} tuples"
        except (OSError, ValueError, KeyError, TypeError):
            return "published"

    @staticmethod
    def load(root: str | Path, split: str = "train", modalities: int | None = None) -> MultimodalDataset:
        """Load a split; ``modalities`` keeps the first k (m0..m{k-1}), for scaling experiments."""
        root = Path(root)
        if split not in SPLITS:
            raise MMBenchError(f"PolyMNIST split must be one of {SPLITS}, got {split!r}")
        folder = root / split
        if not folder.is_dir():
            raise MMBenchError(f"PolyMNIST folder {folder} does not exist; {SOURCE_HINT}")
        dirs = sorted((int(_MOD_DIR.match(p.name)[1]) for p in folder.iterdir() if p.is_dir() and _MOD_DIR.match(p.name)))
        pts = sorted((int(_MOD_PT.match(p.name)[1]) for p in folder.iterdir() if p.is_file() and _MOD_PT.match(p.name)))
        if dirs:
            ids = dirs
        elif pts:
            ids = pts
        else:
            raise MMBenchError(f"{folder} holds neither m{{k}}/ PNG folders nor m{{k}}.pt tensors; {SOURCE_HINT}")
        if ids != list(range(len(ids))):
            raise MMBenchError(f"{folder}: modality folders must be m0..m{len(ids) - 1} without gaps, found "
                               + ", ".join(f"m{i}" for i in ids))
        if modalities is not None:
            if not 1 <= modalities <= len(ids):
                raise MMBenchError(f"{folder} has {len(ids)} modalities; cannot take modalities={modalities}")
            ids = ids[:modalities]
        x, y = (_read_png_folders if dirs else _read_tensors)(folder, ids)
        mods = [Modality(f"m{k}", (3, 28, 28), "image", "laplace") for k in ids]
        return MultimodalDataset(mods, x, y, name="polymnist")


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
            raise MMBenchError(f"{mdir} does not hold the same file names as {folder / 'm0'} (e.g. {missing}); "
                               "tuples are matched by file name")
        arr = np.empty((len(files), 28, 28, 3), dtype=np.uint8)
        for i, name in enumerate(files):
            try:
                with Image.open(mdir / name) as im:
                    img = np.asarray(im.convert("RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise MMBenchError(f"{mdir / name} is not a readable image: {exc}") from exc
            if img.shape != (28, 28, 3):
                raise MMBenchError(f"{mdir / name} is {img.shape[1]}x{img.shape[0]}, expected 28x28")
            arr[i] = img
        x[f"m{k}"] = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    labels = []
    for name in names:
        parts = name.split(".")
        try:
            labels.append(int(parts[-2]))
        except (IndexError, ValueError):
            raise MMBenchError(f"{folder / 'm0' / name}: file name must be '{{i}}.{{label}}.png'") from None
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
    y = load(labels_path).long().reshape(-1)
    x = {}
    for k in ids:
        path = folder / f"m{k}.pt"
        t = load(path)
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        if tuple(t.shape[1:]) != (3, 28, 28) or len(t) != len(y):
            raise MMBenchError(f"{path} has shape {tuple(t.shape)}, expected ({len(y)}, 3, 28, 28) to match labels.pt")
        x[f"m{k}"] = t.float()
    return x, y

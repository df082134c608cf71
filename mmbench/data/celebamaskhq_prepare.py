"""``mmbench data prepare celebamaskhq SRC --out DIR``: decode and resize the release once into tensors.

    {out}/manifest.json                       size, split sizes, attribute names, mask parts, source
    {out}/{train,val,test}/image.pt           uint8 (N, 3, S, S)
    {out}/{train,val,test}/mask.pt            uint8 (N, 1, S, S) in {0, 1}: the union of every part but skin
    {out}/{train,val,test}/attributes.pt      uint8 (N, 18) in {0, 1}
    {out}/{train,val,test}/index.pt           int64 (N,): the CelebA-HQ index k of each row
    {out}/{train,val,test}/mask_observed.pt   bool (N,), only when prepared with allow_missing: False where the
                                              image has no mask file (its mask.pt row is zeros)

Images and the combined mask are resized with PIL's antialiased bilinear filter; the mask is thresholded at 0.5.
Written into a temporary folder beside ``out`` and renamed at the end: an interrupted run leaves nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmbench.data.celebamaskhq_source import MASK_PARTS, SPLITS, Source, read_source
from mmbench.data.imagefiles import read_image, resized
from mmbench.errors import MMBenchError
from mmbench.storage.atomic import atomic_folder, require_new_folder

SIZES = (64, 128)
FORMAT = 1
MODALITY_FILES = ("image.pt", "mask.pt", "attributes.pt")


def prepare_celebamaskhq(
    src: str | Path, out: str | Path, size: int = 64, *, progress: bool = True, allow_missing: bool = False
) -> Path:
    """Write the prepared cache of the release at ``src`` into ``out`` (new or empty) at ``size`` x ``size``;
    ``allow_missing``: images whose mask folder is absent are kept, their masks marked missing."""
    if size not in SIZES:
        raise MMBenchError(f"CelebAMask-HQ size must be one of {SIZES}, got {size}")
    out = require_new_folder(out)
    source = read_source(src, allow_missing=allow_missing)
    with atomic_folder(out, "preparing") as tmp:
        total = sum(len(ks) for ks in source.keys.values())
        with tqdm(total=total, desc="preparing CelebAMask-HQ", unit="img", disable=not progress) as bar:
            for split in SPLITS:
                _write_split(tmp / split, source, split, size, bar)
        manifest = {
            "dataset": "celebamaskhq",
            "format": FORMAT,
            "size": size,
            "splits": {s: len(source.keys[s]) for s in SPLITS},
            "attributes": source.selected_names,
            "mask_parts": list(MASK_PARTS),
            "resize": "PIL bilinear, antialiased; mask thresholded at 0.5",
            "source": str(source.root.resolve()),
        }
        if allow_missing:
            manifest["without_mask"] = {s: sum(source.parts[k] is None for k in source.keys[s]) for s in SPLITS}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _write_split(folder: Path, source: Source, split: str, size: int, bar: tqdm) -> None:
    keys = source.keys[split]
    image = np.empty((len(keys), 3, size, size), dtype=np.uint8)
    mask = np.empty((len(keys), 1, size, size), dtype=np.uint8)
    observed = np.array([source.parts[k] is not None for k in keys], dtype=bool)
    for i, k in enumerate(keys):
        image[i] = resized(read_image(source.image(k), square=True), size).transpose(2, 0, 1)
        mask[i, 0] = combined_mask(source.parts[k], size) if observed[i] else 0
        bar.update(1)
    folder.mkdir()
    if not observed.all():
        torch.save(torch.from_numpy(observed), folder / "mask_observed.pt")
    torch.save(torch.from_numpy(image), folder / "image.pt")
    torch.save(torch.from_numpy(mask), folder / "mask.pt")
    torch.save(torch.from_numpy(source.attributes[split]), folder / "attributes.pt")
    torch.save(torch.tensor(keys, dtype=torch.long), folder / "index.pt")


def combined_mask(parts: list[Path], size: int) -> np.ndarray:
    """The union of the part files (pixels > 127), resized to size x size, as uint8 in {0, 1}; no file: empty."""
    from PIL import Image

    union = None
    for path in parts:
        part = np.asarray(read_image(path, "L", square=True)) > 127
        if union is None:
            union = part
        elif part.shape != union.shape:
            raise MMBenchError(
                f"{path} is {part.shape[1]}x{part.shape[0]}, but {parts[0]} is "
                f"{union.shape[1]}x{union.shape[0]}; an image's part masks must share one size"
            )
        else:
            union |= part
    if union is None:
        return np.zeros((size, size), dtype=np.uint8)
    return (resized(Image.fromarray(union.astype(np.uint8) * 255), size) >= 128).astype(np.uint8)

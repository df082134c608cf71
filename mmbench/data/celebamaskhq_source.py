"""The published CelebAMask-HQ release (REFERENCE.md), read and checked without decoding any image.

{src}/CelebA-HQ-img/{k}.jpg                                  1024x1024 photos
{src}/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{part}.png 512x512 binary part masks (absent part: no file)
{src}/CelebAMask-HQ-attribute-anno.txt                       count; 40 names; `k.jpg` and 40 values in {1, -1}
{src}/CelebA-HQ-to-CelebA-mapping.txt                        header; `idx orig_idx orig_file` per image
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbench.errors import MMBenchError

IMAGES = "CelebA-HQ-img"
MASKS = "CelebAMask-HQ-mask-anno"
ATTRIBUTES = "CelebAMask-HQ-attribute-anno.txt"
MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
PARTS = (
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
MASK_PARTS = PARTS[1:]  # the multimodal setup's mask: every part but skin
ATTRIBUTE_INDICES = (4, 5, 8, 9, 11, 12, 15, 17, 18, 20, 21, 22, 26, 28, 31, 32, 33, 35)  # of the 40, from 0
N_ATTRIBUTES = 40
CELEBA_IMAGES = 202599
SPLITS = ("train", "val", "test")
SPLIT_ENDS = (162771, 182638)  # original CelebA index < 162771: train, < 182638: val, else test
PER_MASK_FOLDER = 2000
_MASK_FILE = re.compile(r"^(\d+)_([a-z_]+)\.png$")
SOURCE_HINT = "get CelebAMask-HQ from its authors (github.com/switchablenorms/CelebAMask-HQ)"


@dataclass(frozen=True)
class Source:
    """A checked release: attribute names (40), image keys k per split (sorted), the selected attributes as 0/1
    (N, 18) per split in the same order, and each key's part mask files that enter the combined mask."""

    root: Path
    names: list[str]
    keys: dict[str, list[int]]
    attributes: dict[str, np.ndarray]
    parts: dict[int, list[Path] | None]  # None: the image has no mask file to read (allow_missing)

    @property
    def selected_names(self) -> list[str]:
        return [self.names[i] for i in ATTRIBUTE_INDICES]

    def image(self, k: int) -> Path:
        return self.root / IMAGES / f"{k}.jpg"


def split_of(orig_index: int) -> str:
    """The published split of an original CelebA index."""
    return SPLITS[0] if orig_index < SPLIT_ENDS[0] else SPLITS[1] if orig_index < SPLIT_ENDS[1] else SPLITS[2]


def read_source(src: str | Path, *, allow_missing: bool = False) -> Source:
    """Check the release's files and their agreement: every listed image present, no image unlisted, one
    mapping line each; one line naming the file at the first problem. ``allow_missing``: a missing mask sub-folder
    leaves its images without a mask (``Source.parts`` None) instead of being refused."""
    root = Path(src)
    if not root.is_dir():
        raise MMBenchError(f"CelebAMask-HQ folder {root} does not exist; {SOURCE_HINT}")
    for name in (IMAGES, MASKS):
        if not (root / name).is_dir():
            raise MMBenchError(f"CelebAMask-HQ folder {root / name} does not exist; {SOURCE_HINT}")
    names, values = _read_attributes(root / ATTRIBUTES)
    mapping = _read_mapping(root / MAPPING)
    present = {p.name for p in (root / IMAGES).iterdir()}
    for k in values:
        if f"{k}.jpg" not in present:
            raise MMBenchError(f"{root / IMAGES / f'{k}.jpg'} is missing; {root / ATTRIBUTES} lists it")
        if k not in mapping:
            raise MMBenchError(f"{root / MAPPING} has no line for image {k} (listed in {root / ATTRIBUTES})")
    unlisted = sorted(n for n in present if n.lower().endswith(".jpg") and _key(n) not in values)
    if unlisted:
        raise MMBenchError(
            f"{root / IMAGES / unlisted[0]} has no line in {root / ATTRIBUTES} "
            f"({len(unlisted)} such images); the two must list the same images"
        )
    keys = {s: [] for s in SPLITS}
    for k in sorted(values):
        keys[split_of(mapping[k])].append(k)
    attributes = {
        s: (
            np.array([values[k] for k in ks], dtype=np.int8).reshape(len(ks), N_ATTRIBUTES)[:, list(ATTRIBUTE_INDICES)]
            > 0
        ).astype(np.uint8)
        for s, ks in keys.items()
    }
    return Source(root, names, keys, attributes, _mask_files(root / MASKS, sorted(values), allow_missing))


def _key(name: str) -> int | None:
    stem = name.rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise MMBenchError(f"CelebAMask-HQ file {path} is missing; {SOURCE_HINT}")
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MMBenchError(f"{path} is not a readable text file ({type(exc).__name__}: {exc})") from None


def _read_attributes(path: Path) -> tuple[list[str], dict[int, list[int]]]:
    """(the 40 names, {k: 40 values in {1, -1}}) of the attribute file."""
    lines = _read_lines(path)
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise MMBenchError(f"{path}: line 1 must be the image count and line 2 the {N_ATTRIBUTES} attribute names")
    names = lines[1].split()
    if len(names) != N_ATTRIBUTES:
        raise MMBenchError(f"{path} line 2 names {len(names)} attributes, expected {N_ATTRIBUTES}")
    values: dict[int, list[int]] = {}
    for n, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        k = _key(fields[0])
        if k is None or not fields[0].lower().endswith(".jpg"):
            raise MMBenchError(f"{path} line {n}: expected '<k>.jpg' and {N_ATTRIBUTES} values, got {fields[0]!r}")
        if len(fields) != N_ATTRIBUTES + 1:
            raise MMBenchError(f"{path} line {n} ({fields[0]}) has {len(fields) - 1} values, expected {N_ATTRIBUTES}")
        if any(v not in ("1", "-1") for v in fields[1:]):
            bad = next(v for v in fields[1:] if v not in ("1", "-1"))
            raise MMBenchError(f"{path} line {n} ({fields[0]}): value {bad!r} is out of range; attributes are 1 or -1")
        if k in values:
            raise MMBenchError(f"{path} line {n}: {fields[0]} is listed twice")
        values[k] = [int(v) for v in fields[1:]]
    if int(lines[0]) != len(values):
        raise MMBenchError(f"{path} says {int(lines[0])} images on line 1 but lists {len(values)}")
    return names, values


def _read_mapping(path: Path) -> dict[int, int]:
    """{CelebA-HQ index k: original CelebA index} of the mapping file (its header line skipped)."""
    mapping: dict[int, int] = {}
    for n, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields or (n == 1 and not fields[0].isdigit()):
            continue
        if len(fields) < 2 or not fields[0].isdigit() or not fields[1].lstrip("-").isdigit():
            raise MMBenchError(f"{path} line {n}: expected 'idx orig_idx orig_file', got {line.strip()!r}")
        k, orig = int(fields[0]), int(fields[1])
        if not 0 <= orig < CELEBA_IMAGES:
            raise MMBenchError(f"{path} line {n}: orig_idx {orig} is out of range (CelebA has {CELEBA_IMAGES} images)")
        if k in mapping:
            raise MMBenchError(f"{path} line {n}: idx {k} is listed twice")
        mapping[k] = orig
    return mapping


def _mask_files(folder: Path, keys: list[int], allow_missing: bool = False) -> dict[int, list[Path] | None]:
    """Each key's part files of MASK_PARTS (an absent file is an absent part); each mask sub-folder listed once.
    A missing sub-folder is refused, or (``allow_missing``) leaves its keys without a mask (None)."""
    parts: dict[int, list[Path] | None] = {k: [] for k in keys}
    for sub in sorted({k // PER_MASK_FOLDER for k in keys}):
        d = folder / str(sub)
        if not d.is_dir() and allow_missing:
            for k in keys:
                if k // PER_MASK_FOLDER == sub:
                    parts[k] = None
            continue
        if not d.is_dir():
            raise MMBenchError(
                f"CelebAMask-HQ mask folder {d} does not exist (it holds the masks of images "
                f"{sub * PER_MASK_FOLDER}..{(sub + 1) * PER_MASK_FOLDER - 1}); {SOURCE_HINT}; to prepare the "
                "images without masks, pass --allow-missing"
            )
        for p in sorted(d.iterdir()):
            m = _MASK_FILE.match(p.name)
            k = int(m[1]) if m else -1
            if m and m[2] in MASK_PARTS and parts.get(k) is not None and k // PER_MASK_FOLDER == sub:
                parts[k].append(p)
    return parts

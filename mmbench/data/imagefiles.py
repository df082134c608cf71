"""Reading image files for the adapters: one line naming the file when it cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: Path, mode: str = "RGB", *, square: bool = False):
    """The decoded image at ``path`` as a PIL image in ``mode``; ``square`` refuses one whose sides differ."""
    from PIL import Image, UnidentifiedImageError

    from mmbench.errors import MMBenchError

    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MMBenchError(f"{path} is not a readable image ({type(exc).__name__}: {exc})") from None
    if square and img.width != img.height:
        raise MMBenchError(f"{path} is {img.width}x{img.height}; a square image is required")
    return img


def resized(img, size: int) -> np.ndarray:
    """``img`` resized to size x size (bilinear with antialiasing, torchvision's Resize on PIL) as uint8 (H, W[, C])."""
    from PIL import Image

    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)

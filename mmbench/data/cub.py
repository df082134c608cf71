"""CUB image-captions adapter (the layout of Shi et al. 2019, MMVAE; REFERENCE.md).

    {root}/train/{class}/*.jpg   {root}/test/{class}/*.jpg            images of any size, resized to 64x64
    {root}/text_trainvalclasses.txt   {root}/text_testclasses.txt    one caption per line, 10 per image

Images are ordered as torchvision's ImageFolder orders them in MMVAE (class folders by name, then files by name
within a class); caption line i belongs to image i // 10.

Pairing: one row per image, with its ``caption``-th caption (0..9, default 0). MMVAE instead repeats every image
for each of its 10 captions; here the images are held once (11,788 x 3 x 64 x 64 floats = 580 MB, not 5.8 GB),
and a sweep can vary ``caption`` to use the others. Labels y are the bird classes, numbered by the sorted class
folder names of both splits together (0..199 for the published folders).

The vocabulary (``mmbench.data.captions``) is built from the train captions and cached in
``{root}/cub_vocab.json`` when the folder is writable; captions are token ids for the sentence networks.
With ``text_vae = FOLDER`` (the paper's setting: a pretrained BERT encoder and GPT-2 decoder, Li et al. 2020)
captions are instead token pairs (2, 32) of that folder's two tokenizers (``mmbench.textvae``), and every model
gets the pretrained networks for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmbench.data.captions import MAX_LEN, CaptionDataset, PretrainedCaptionDataset, cached_vocabulary, encode
from mmbench.data.imagefiles import is_image, read_image, resized
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.registry import register_dataset
from mmbench.textvae import check_folder, encode_pairs, tokenizers

SPLITS = ("train", "test")
CAPTION_FILES = {"train": "text_trainvalclasses.txt", "test": "text_testclasses.txt"}
PER_IMAGE = 10
SIZE = 64
VOCAB_CACHE = "cub_vocab.json"
PUBLISHED = (8855, 2933)  # images in the trainval and test classes of the MMVAE release
SOURCE_HINT = "CUB image-captions come from the MMVAE authors' release (github.com/iffsid/mmvae, data/cub)"


@register_dataset("cub")
class CUB:
    """CUB image-captions (Wah et al. 2011; Reed et al. 2016 captions): 64x64 bird photo + one of its 10 captions."""

    SPLITS = SPLITS

    @staticmethod
    def check_options(root: str | Path, caption: int = 0, text_vae: str = "", allow_missing: bool = False) -> None:
        """What ``load`` would refuse, found without decoding images: both splits' folders and caption files,
        10 captions per image, ``caption`` within 0..9, and the text VAE folder's files."""
        _check_caption(caption)
        _check_allow_missing(allow_missing)
        if text_vae:
            check_folder(text_vae)
        for split in SPLITS:
            images = _image_files(Path(root), split)
            lines = _read_captions(Path(root), split)[1]
            _check_count(Path(root) / CAPTION_FILES[split], lines, images)
            if not allow_missing:
                _refuse_blank(Path(root) / CAPTION_FILES[split], _blank_images(lines), images)

    @staticmethod
    def release(root: str | Path, **_) -> str:
        """ "published" for the MMVAE release's 8,855/2,933 images, else the image counts; "" without the folder."""
        root = Path(root)
        if not root.is_dir():
            return ""
        try:
            counts = tuple(len(_image_files(root, s)) for s in SPLITS)
        except MMBenchError:
            return ""
        return "published" if counts == PUBLISHED else f"{counts[0]:,}/{counts[1]:,} images"

    @staticmethod
    def load(
        root: str | Path, split: str = "train", caption: int = 0, text_vae: str = "", allow_missing: bool = False
    ) -> CaptionDataset:
        """A split: image (3, 64, 64) in [0, 1] and caption (32,) token ids, one row per image.

        root:          the CUB image-captions folder (the published layout).
        caption:       which of each image's 10 captions to use (0-9).
        text_vae:      a local BERT/GPT-2 (Optimus) folder: captions become token pairs (2, 32) of its two
                       tokenizers (``mmbench.textvae``; "": the published vocabulary).
        allow_missing: an image whose 10 caption lines are all blank has no caption: false (default) refuses
                       it, true marks its caption missing (the dataset's mask; mmbench.data.missing).
        """
        root = Path(root)
        if split not in SPLITS:
            raise MMBenchError(f"CUB split must be one of {SPLITS}, got {split!r}")
        _check_caption(caption)
        _check_allow_missing(allow_missing)
        files = _image_files(root, split)
        text, lines = _read_captions(root, split)
        _check_count(root / CAPTION_FILES[split], lines, files)
        blank = _blank_images(lines)
        if not allow_missing:
            _refuse_blank(root / CAPTION_FILES[split], blank, files)
        if text_vae:
            text_vae = str(check_folder(text_vae).resolve())
            tokens = encode_pairs(lines[caption::PER_IMAGE], text_vae, MAX_LEN)
        else:
            train_text, train_lines = (text, lines) if split == "train" else _read_captions(root, "train")
            words = cached_vocabulary(train_text, train_lines, root / VOCAB_CACHE)
            tokens = encode(lines[caption::PER_IMAGE], words)
        pixels = np.empty((len(files), SIZE, SIZE, 3), dtype=np.uint8)
        for i, path in enumerate(files):
            pixels[i] = resized(read_image(path), SIZE)
        image = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)
        classes = {c: i for i, c in enumerate(sorted({p.parent.name for s in SPLITS for p in _image_files(root, s)}))}
        y = torch.tensor([classes[p.parent.name] for p in files], dtype=torch.long)
        image_modality = Modality("image", (3, SIZE, SIZE), "image", "laplace")
        mask = {"caption": torch.from_numpy(~blank)} if blank.any() else None
        if text_vae:
            caption_modality = Modality(
                "caption",
                (2, MAX_LEN),
                "text",
                "categorical",
                classes=tokenizers(text_vae).decoder_vocabulary,
                pretrained=text_vae,
            )
            return PretrainedCaptionDataset(
                [image_modality, caption_modality],
                {"image": image, "caption": tokens},
                y,
                name="cub",
                text_vae=text_vae,
                mask=mask,
            )
        mods = [image_modality, Modality("caption", (MAX_LEN,), "text", "categorical", classes=len(words))]
        x = {"image": image, "caption": tokens}
        return CaptionDataset(mods, x, y, name="cub", vocabulary=tuple(words), mask=mask)


def _check_caption(caption) -> None:
    if isinstance(caption, bool) or not isinstance(caption, int) or not 0 <= caption < PER_IMAGE:
        raise MMBenchError(
            f"CUB option caption must be an integer 0..{PER_IMAGE - 1} (which of an image's "
            f"{PER_IMAGE} captions), got {caption!r}"
        )


def _check_allow_missing(allow_missing) -> None:
    if not isinstance(allow_missing, bool):
        raise MMBenchError(f"CUB option allow_missing must be true or false, got {allow_missing!r}")


def _blank_images(lines: list[str]) -> np.ndarray:
    """bool (images,): True where all of an image's 10 caption lines are blank (the image has no caption)."""
    return np.array([not any(s.strip() for s in lines[i : i + PER_IMAGE]) for i in range(0, len(lines), PER_IMAGE)])


def _refuse_blank(path: Path, blank: np.ndarray, images: list[Path]) -> None:
    if blank.any():
        first = int(np.flatnonzero(blank)[0])
        raise MMBenchError(
            f"{path}: image {images[first]} has no caption (lines {PER_IMAGE * first + 1}-{PER_IMAGE * (first + 1)} "
            f"are blank; {int(blank.sum())} image(s) in all); to train with their captions missing, set the dataset "
            "option allow_missing = true"
        )


def _image_files(root: Path, split: str) -> list[Path]:
    """Image files of a split in ImageFolder order: class folders sorted by name, files sorted within each."""
    folder = root / split
    if not folder.is_dir():
        raise MMBenchError(f"CUB folder {folder} does not exist; {SOURCE_HINT}")
    loose = sorted(p.name for p in folder.iterdir() if p.is_file() and is_image(p))
    if loose:
        raise MMBenchError(f"{folder / loose[0]}: CUB images must sit in class folders ({folder}/<class>/*.jpg)")
    files = [
        p
        for c in sorted(d for d in folder.iterdir() if d.is_dir())
        for p in sorted(c.iterdir(), key=lambda p: p.name)
        if p.is_file() and is_image(p)
    ]
    if not files:
        raise MMBenchError(f"{folder} holds no images in class folders ({folder}/<class>/*.jpg); {SOURCE_HINT}")
    return files


def _read_captions(root: Path, split: str) -> tuple[bytes, list[str]]:
    """(the file's bytes, its lines): one caption per line, the final newline ending the last one."""
    path = root / CAPTION_FILES[split]
    if not path.is_file():
        raise MMBenchError(
            f"CUB caption file {path} is missing: the {split} split has images but no captions; {SOURCE_HINT}"
        )
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MMBenchError(f"{path} is not a readable UTF-8 caption file ({type(exc).__name__}: {exc})") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return raw, lines


def _check_count(path: Path, lines: list[str], images: list[Path]) -> None:
    if not lines or len(lines) % PER_IMAGE:
        raise MMBenchError(
            f"{path} has {len(lines)} captions, not a positive multiple of {PER_IMAGE} ({PER_IMAGE} per image)"
        )
    if len(lines) != PER_IMAGE * len(images):
        raise MMBenchError(
            f"{path} has {len(lines)} captions for {len(images)} images in "
            f"{images[0].parent.parent}: expected {PER_IMAGE * len(images)} ({PER_IMAGE} per image)"
        )

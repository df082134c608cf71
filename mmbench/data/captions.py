"""Captions as token tensors: MMVAE's CUB tokenisation and vocabulary, a cached vocabulary, decoding.

A caption is lowercased and split into words (runs of letters and digits) and punctuation marks (one token each),
close to NLTK's ``word_tokenize`` that MMVAE uses, without that dependency. It keeps its first 31 tokens, gets
<eos> and is padded with <pad> to 32. The vocabulary holds the specials <exc>=0, <pad>=1, <eos>=2, then every word
that occurs more than 3 times in the TRAIN captions, in order of first occurrence; other words become <exc>.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.storage.atomic import atomic_write_json
from mmbench.textvae import decoder_ids_to_text, through_first_eos, tokenizers

SPECIALS = ("<exc>", "<pad>", "<eos>")
EXC, PAD, EOS = 0, 1, 2
MAX_LEN = 32
MIN_COUNT = 3  # a word joins the vocabulary when it occurs MORE than this often in the train captions
_TOKEN = re.compile(r"\w+|[^\w\s]")
_CACHE_FORMAT = 1


def tokenize(caption: str) -> list[str]:
    return _TOKEN.findall(caption.lower())


def build_vocabulary(captions: Iterable[str], min_count: int = MIN_COUNT) -> list[str]:
    """Specials, then the words seen more than ``min_count`` times, in order of first occurrence."""
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(tokenize(caption))
    return [*SPECIALS, *(w for w, n in counts.items() if n > min_count and w not in SPECIALS)]


def encode(captions: Sequence[str], words: Sequence[str], max_len: int = MAX_LEN) -> Tensor:
    """Token ids (N, max_len) as int64: first max_len - 1 tokens, <eos>, then <pad>; unknown words -> <exc>."""
    index = {w: i for i, w in enumerate(words)}
    out = np.full((len(captions), max_len), PAD, dtype=np.int64)
    for row, caption in enumerate(captions):
        ids = [index.get(w, EXC) for w in tokenize(caption)[: max_len - 1]]
        ids.append(EOS)
        out[row, : len(ids)] = ids
    return torch.from_numpy(out)


def cached_vocabulary(train_text: bytes, train_captions: Sequence[str], cache: Path) -> list[str]:
    """The vocabulary of ``train_captions``, read from the JSON ``cache`` when it was built from the same train
    file (same SHA-256), else built and written there atomically; an unwritable place is skipped."""
    digest = hashlib.sha256(train_text).hexdigest()
    try:
        info = json.loads(cache.read_text())
        words = info["words"]
        if (
            info["format"] == _CACHE_FORMAT
            and info["sha256"] == digest
            and info["min_count"] == MIN_COUNT
            and tuple(words[:3]) == SPECIALS
            and len(set(words)) == len(words)
            and all(isinstance(w, str) for w in words)
        ):
            return list(words)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    words = build_vocabulary(train_captions)
    info = {"format": _CACHE_FORMAT, "sha256": digest, "min_count": MIN_COUNT, "max_len": MAX_LEN, "words": words}
    try:
        atomic_write_json(cache, info)
    except OSError:
        pass  # a read-only data folder: the vocabulary is rebuilt (deterministically) on every load
    return words


@dataclass
class CaptionDataset(MultimodalDataset):
    """A MultimodalDataset whose text modalities hold token ids of ``vocabulary`` (index = token id)."""

    vocabulary: tuple[str, ...] = ()

    def _text(self, modality: str | None) -> str:
        names = [m.name for m in self.modalities if m.kind == "text"]
        if modality is None and len(names) == 1:
            return names[0]
        if modality not in names:
            raise MMBenchError(f"dataset {self.name!r} has text modalities {names}, not {modality!r}")
        return modality

    def caption_lengths(self, modality: str | None = None) -> Tensor:
        """Tokens per caption including <eos> (N,), as MMVAE's ``length``."""
        return (self.x[self._text(modality)] != PAD).sum(-1)

    def _token_ids(self, modality: str | Tensor, tokens: Tensor | None) -> Tensor:
        """``decode_text``'s arguments as integer ids on the CPU with a batch dimension: ``(name, tokens)`` or
        ``(tokens)`` for the only text modality; scores over the vocabulary are decoded by argmax."""
        if tokens is None:
            modality, tokens = None, modality
        self._text(modality)
        tokens = tokens.detach().cpu()
        if tokens.is_floating_point():
            tokens = tokens.argmax(-1)
        return tokens.unsqueeze(0) if tokens.ndim == 1 else tokens

    def decode_text(self, modality: str | Tensor, tokens: Tensor | None = None) -> list[str]:
        """Captions as text: ``decode_text(name, tokens)`` or ``decode_text(tokens)`` for the only text modality.
        ``tokens`` are ids (B, L) or scores over the vocabulary (B, L, V), decoded by argmax; each caption stops
        at <eos> and skips <pad>."""
        texts = []
        for row in self._token_ids(modality, tokens).tolist():
            words = []
            for t in row:
                if t == EOS:
                    break
                if t != PAD:
                    words.append(self.vocabulary[t] if 0 <= t < len(self.vocabulary) else SPECIALS[EXC])
            texts.append(" ".join(words))
        return texts


@dataclass
class PretrainedCaptionDataset(CaptionDataset):
    """Captions as token pairs (N, 2, L) of a pretrained text VAE's tokenizers (``mmbench.textvae``): row 0 for
    its encoder, row 1 for its decoder. Text comes back through the decoder's tokenizer."""

    text_vae: str = ""

    def caption_lengths(self, modality: str | None = None) -> Tensor:
        """Decoder tokens per caption up to and including the first end-of-sequence (N,)."""
        ids = self.x[self._text(modality)][:, 1]
        return through_first_eos(ids, tokenizers(self.text_vae).decoder_eos).sum(-1)

    def decode_text(self, modality: str | Tensor, tokens: Tensor | None = None) -> list[str]:
        """Captions as text from token pairs (B, 2, L), decoder ids (B, L) or scores over the decoder's vocabulary
        (B, L, V); each stops at the first end-of-sequence."""
        return decoder_ids_to_text(self._token_ids(modality, tokens), self.text_vae)

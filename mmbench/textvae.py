"""A pretrained text VAE brought by the user: the paper's CUB text modality (a BERT encoder and a GPT-2 decoder,
initialised from Li et al. 2020, Optimus), read from a local folder, never downloaded.

    {folder}/encoder/   a Hugging Face encoder (BERT): config.json, model.safetensors or pytorch_model.bin, and
                        its tokenizer files, as ``save_pretrained`` writes them (Optimus's ``checkpoint-encoder-*``)
    {folder}/decoder/   a Hugging Face causal language model (GPT-2) and its tokenizer, likewise
                        (Optimus's ``checkpoint-decoder-*``); its tokenizer needs an end-of-sequence token

A caption becomes a pair of token rows (2, L): row 0 is the encoder tokenizer's ids (with its own special tokens,
padded with its pad id), row 1 the decoder tokenizer's ids, then end-of-sequence, padded with its pad id (or the
end-of-sequence id when it has none). The encoder reads row 0; the decoder is scored on row 1 (``nets.pretrained_text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from mmbench.errors import MMBenchError

PARTS = ("encoder", "decoder")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INSTALL_HINT = "the pretrained text VAE needs Hugging Face transformers: pip install 'mmbench[text]'"
SOURCE_HINT = (
    "save a BERT encoder and a GPT-2 decoder with save_pretrained into {folder}/encoder and "
    "{folder}/decoder (Optimus's checkpoints, github.com/ChunyuanLI/Optimus, have this layout)"
)


def transformers_module():
    """``transformers``, or one line saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise MMBenchError(INSTALL_HINT) from None
    transformers.logging.set_verbosity_error()  # no "weights not used" banners for Optimus's extra heads
    transformers.logging.disable_progress_bar()  # nor a loading bar per network in every run's log
    return transformers


def check_folder(folder: str | Path) -> Path:
    """The folder, after checking that each part has a config, weights and a tokenizer; else one line naming
    the first missing file and where to get it."""
    folder = Path(folder)
    hint = SOURCE_HINT.format(folder=folder)
    if not folder.is_dir():
        raise MMBenchError(f"text VAE folder {folder} does not exist; {hint}")
    for part in PARTS:
        sub = folder / part
        if not (sub / "config.json").is_file():
            raise MMBenchError(f"text VAE {part} {sub}/config.json is missing; {hint}")
        if not any((sub / w).is_file() for w in WEIGHT_FILES):
            raise MMBenchError(f"text VAE {part} {sub} has no weights ({' or '.join(WEIGHT_FILES)}); {hint}")
        if not any((sub / t).is_file() for t in ("tokenizer.json", "vocab.txt", "vocab.json")):
            raise MMBenchError(
                f"text VAE {part} {sub} has no tokenizer (tokenizer.json, vocab.txt or vocab.json); {hint}"
            )
    return folder


@dataclass(frozen=True)
class Tokenizers:
    """The two tokenizers of a text VAE and the ids the pairing needs."""

    encoder: object
    decoder: object
    encoder_pad: int
    decoder_eos: int
    decoder_pad: int

    @property
    def decoder_vocabulary(self) -> int:
        return len(self.decoder)


@lru_cache(maxsize=8)
def tokenizers(folder: str) -> Tokenizers:
    """Both tokenizers of ``folder`` (read once per process)."""
    folder = check_folder(folder)
    auto = transformers_module().AutoTokenizer
    loaded = {}
    for part in PARTS:
        try:
            loaded[part] = auto.from_pretrained(str(folder / part), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds for a broken tokenizer
            raise MMBenchError(
                f"text VAE {part} tokenizer in {folder / part} does not load "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
    enc, dec = loaded["encoder"], loaded["decoder"]
    if dec.eos_token_id is None:
        raise MMBenchError(
            f"text VAE decoder tokenizer in {folder / 'decoder'} has no eos_token; the decoder must "
            f"end each caption with one"
        )
    if enc.pad_token_id is None:
        raise MMBenchError(f"text VAE encoder tokenizer in {folder / 'encoder'} has no pad_token")
    pad = dec.pad_token_id if dec.pad_token_id is not None else dec.eos_token_id
    return Tokenizers(enc, dec, int(enc.pad_token_id), int(dec.eos_token_id), int(pad))


def encode_pairs(captions: Sequence[str], folder: str | Path, max_len: int) -> Tensor:
    """Captions -> token pairs (N, 2, max_len) int64 (module docstring): the encoder's ids truncated and padded
    to max_len; the decoder's first max_len - 1 ids, end-of-sequence, then padding."""
    tok = tokenizers(str(folder))
    out = torch.empty(len(captions), 2, max_len, dtype=torch.long)
    out[:, 0] = text_to_encoder_ids(captions, folder, max_len)
    out[:, 1] = tok.decoder_pad
    for row, ids in enumerate(tok.decoder(list(captions), add_special_tokens=False)["input_ids"]):
        ids = [*ids[: max_len - 1], tok.decoder_eos]
        out[row, 1, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def through_first_eos(ids: Tensor, eos: int) -> Tensor:
    """Mask (same shape as ``ids``, last dimension the tokens) of every token before the first ``eos`` and that
    eos itself: the tokens a caption is scored on."""
    ended = ids == eos
    return (ended.cumsum(-1) - ended.long()) == 0


def decoder_ids_to_text(tokens: Tensor, folder: str | Path) -> list[str]:
    """Decoder ids (B, L), or pairs (B, 2, L), to text: each caption stops at its first end-of-sequence."""
    tok = tokenizers(str(folder))
    tokens = tokens.detach().cpu()
    if tokens.ndim == 3:
        tokens = tokens[:, -1]
    texts = []
    for row in tokens.tolist():
        if tok.decoder_eos in row:
            row = row[: row.index(tok.decoder_eos)]
        texts.append(tok.decoder.decode(row, skip_special_tokens=True).strip())
    return texts


def text_to_encoder_ids(texts: Sequence[str], folder: str | Path, max_len: int) -> Tensor:
    """Text -> the encoder tokenizer's ids (N, max_len), as ``encode_pairs`` makes row 0."""
    tok = tokenizers(str(folder))
    ids = tok.encoder(list(texts), max_length=max_len, truncation=True, padding="max_length")["input_ids"]
    return torch.tensor(ids, dtype=torch.long).reshape(len(texts), max_len)

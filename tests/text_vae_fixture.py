"""A tiny pretrained text VAE folder in the published layout (``mmbench.textvae``), made offline by the tests: a
WordPiece tokenizer and a one-layer BERT in ``encoder/``, a byte-level BPE tokenizer and a one-layer GPT-2 in
``decoder/``, both trained or initialised here from the test's own captions."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

HIDDEN = 32


def make_text_vae(folder: Path, captions: Sequence[str], *, optimus_latent: int = 0, seed: int = 0) -> Path:
    """Write ``folder``/encoder and ``folder``/decoder. ``optimus_latent`` > 0 adds Optimus's latent heads to the
    saved weights (``linear`` in the encoder, ``transformer.linear_emb`` in the decoder) for that latent size."""
    import transformers
    from safetensors.torch import load_file, save_file
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

    torch.manual_seed(seed)
    folder = Path(folder)
    bert_tok = BertWordPieceTokenizer(lowercase=True)
    bert_tok.train_from_iterator(
        list(captions), vocab_size=200, min_frequency=1, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    enc_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bert_tok._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    gpt_tok = ByteLevelBPETokenizer()
    gpt_tok.train_from_iterator(list(captions), vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    dec_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=gpt_tok._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=len(enc_tok),
            hidden_size=HIDDEN,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=2 * HIDDEN,
            max_position_embeddings=64,
        )
    )
    gpt = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=len(dec_tok),
            n_embd=HIDDEN,
            n_layer=1,
            n_head=2,
            n_positions=64,
            bos_token_id=dec_tok.eos_token_id,
            eos_token_id=dec_tok.eos_token_id,
        )
    )
    for part, model, tok in (("encoder", bert, enc_tok), ("decoder", gpt, dec_tok)):
        model.save_pretrained(folder / part)
        tok.save_pretrained(folder / part)
    if optimus_latent:
        heads = {
            "encoder": {
                "linear.weight": torch.randn(2 * optimus_latent, HIDDEN),
                "linear.bias": torch.randn(2 * optimus_latent),
            },
            "decoder": {"transformer.linear_emb.weight": torch.randn(HIDDEN, optimus_latent)},
        }
        for part, extra in heads.items():
            path = folder / part / "model.safetensors"
            save_file({**load_file(str(path)), **extra}, str(path), metadata={"format": "pt"})
    return folder

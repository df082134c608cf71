"""The pretrained text VAE's networks (Li et al. 2020, Optimus; the Diff-MVAE paper's CUB text modality): a BERT
encoder and a GPT-2 decoder loaded from a local folder (``mmbench.textvae``), fine-tuned with the rest of the model.

Encoder: the encoder's pooled output (BERT's pooler; the first token's state for models without one) -> Linear
-> (mu, logvar), chunked in that order as Optimus's ``BertForLatentConnector``. Optimus's trained head
(``linear.weight``/``linear.bias`` in the encoder's weights) is loaded when its size matches the latent size.

Decoder: autoregressive, so it reads the caption it is scored on (teacher forcing, ``teacher_forced``):
log p(x|z) = sum_i log p(x_i | x_<i, z) over the decoder's tokens up to and including the first end-of-sequence.
z enters twice: a linear map of z is added to every token embedding (Optimus's "embedding" injection, its
``transformer.linear_emb``, loaded when present and sized to match), and a second linear map of z is a prefix
embedding in front of the caption, which every layer attends to. Optimus's other path, "memory" injection (z as
per-layer keys and values), is replaced by that prefix: it reaches every layer through attention without
depending on a transformers version's cache format. Generation is greedy (the categorical likelihood's mean is
its argmax, as for the sentence CNN): up to L tokens, stopped at end-of-sequence, re-tokenized for the encoder
so a generated caption is a token pair like the data.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmbench.errors import MMBenchError
from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision
from mmbench.textvae import (
    WEIGHT_FILES,
    check_folder,
    decoder_ids_to_text,
    text_to_encoder_ids,
    through_first_eos,
    tokenizers,
    transformers_module,
)


def _load(auto, sub: Path):
    try:
        return auto.from_pretrained(str(sub), local_files_only=True)
    except Exception as exc:  # transformers raises many kinds for a broken checkpoint
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MMBenchError(f"text VAE model in {sub} does not load ({type(exc).__name__}: {first})") from None


def _saved_tensors(sub: Path, *keys: str) -> list[Tensor | None]:
    """Tensors of the part's weights file by key (Optimus's latent heads), None for a key it lacks; the file is
    read once."""
    path = next(sub / w for w in WEIGHT_FILES if (sub / w).is_file())
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return [f.get_tensor(k) if k in f.keys() else None for k in keys]
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state.get(k) for k in keys]


def _copy_if_sized(param: Tensor, saved: Tensor | None) -> bool:
    if saved is None or saved.shape != param.shape:
        return False
    with torch.no_grad():
        param.copy_(saved)
    return True


class PretrainedTextEncoder(nn.Module):
    """Token pairs (B, 2, L) -> Gaussian q(z|x) from the encoder's ids (row 0)."""

    def __init__(self, folder: str | Path, latent_dim: int):
        super().__init__()
        sub = check_folder(folder) / "encoder"
        self.body = _load(transformers_module().AutoModel, sub)
        self.head = nn.Linear(self.body.config.hidden_size, 2 * latent_dim)
        weight, bias = _saved_tensors(sub, "linear.weight", "linear.bias")
        self.loaded_head = _copy_if_sized(self.head.weight, weight)
        if self.loaded_head:
            _copy_if_sized(self.head.bias, bias)
        self.pad = tokenizers(str(folder)).encoder_pad

    def forward(self, x: Tensor) -> Gaussian:
        ids = x[:, 0].long()
        out = self.body(input_ids=ids, attention_mask=(ids != self.pad).long())
        pooled = getattr(out, "pooler_output", None)
        h = pooled if pooled is not None else out.last_hidden_state[:, 0]
        mu, logvar = full_precision(self.head(h)).chunk(2, -1)
        return Gaussian(mu, logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class PretrainedTextDecoder(nn.Module):
    """z -> a causal language model over the decoder's tokens (row 1 of the pairs); scored by teacher forcing."""

    teacher_forced = True

    def __init__(self, folder: str | Path, latent_dim: int, length: int):
        super().__init__()
        self.folder = str(check_folder(folder))
        sub = Path(self.folder) / "decoder"
        self.body = _load(transformers_module().AutoModelForCausalLM, sub)
        hidden = self.body.config.hidden_size
        self.inject = nn.Linear(latent_dim, hidden, bias=False)
        (injection,) = _saved_tensors(sub, "transformer.linear_emb.weight")
        self.loaded_injection = _copy_if_sized(self.inject.weight, injection)
        self.prefix = nn.Linear(latent_dim, hidden)
        self.length = length
        tok = tokenizers(self.folder)
        self.eos, self.pad = tok.decoder_eos, tok.decoder_pad

    def logits(self, z: Tensor, ids: Tensor) -> Tensor:
        """Next-token logits (B, n + 1, V) after the prefix and each of ``ids`` (B, n)."""
        tokens = self.body.get_input_embeddings()(ids.long())
        inputs = torch.cat([self.prefix(z)[:, None].to(tokens.dtype), tokens], 1) + self.inject(z)[:, None]
        return self.body(inputs_embeds=inputs, use_cache=False).logits

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per row: the decoder's ids (row 1) up to and including the first end-of-sequence."""
        target = x[:, 1].long()
        logp = F.log_softmax(full_precision(self.logits(z, target[:, :-1])), -1)
        per_token = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return (per_token * through_first_eos(target, self.eos)).sum(-1)

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Greedy captions as token pairs (B, 2, L) on z's device."""
        ids = torch.empty(z.shape[0], 0, dtype=torch.long, device=z.device)
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        for _ in range(self.length):
            nxt = self.logits(z, ids)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == self.eos
            if bool(done.all()):
                break
        ids = F.pad(ids, (0, self.length - ids.shape[1]), value=self.pad)
        encoder_ids = text_to_encoder_ids(decoder_ids_to_text(ids, self.folder), self.folder, self.length)
        return torch.stack([encoder_ids.to(ids.device), ids], 1)

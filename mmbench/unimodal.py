"""Per-modality encoders, decoders and likelihoods that most baselines share."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from mmbench.fusion import Gaussian
from mmbench.modality import Modality
from mmbench.nets import default_decoder, default_encoder
from mmbench.objectives import Likelihood

_ENCODINGS: ContextVar[dict | None] = ContextVar("mmbench_encodings", default=None)


@contextmanager
def reuse_encodings() -> Iterator[None]:
    """Within the block each (encoder, input tensor) pair runs once: evaluation that forms many subsets of one
    batch (conditional coherence: 2^M - 2 subsets) encodes each modality once, not once per subset. For
    evaluation (no gradients, encoders in eval mode, inputs not modified in place) only."""
    token = _ENCODINGS.set({})
    try:
        yield
    finally:
        _ENCODINGS.reset(token)


def _encode(encoder: nn.Module, x: Tensor):
    cache = _ENCODINGS.get()
    if cache is None:
        return encoder(x)
    key = (id(encoder), id(x), x._version)
    if key not in cache:
        cache[key] = (encoder(x), x)  # x is kept alive, so its id cannot be reused within the block
    return cache[key][0]


def stacked_experts(encoders: Mapping[str, nn.Module], x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
    """Unimodal posteriors q(z|x_m) of the named modalities stacked on dim 0: (len(names), B, D)."""
    outs = [_encode(encoders[m], x[m]) for m in names]
    return Gaussian(torch.stack([o.mu for o in outs]), torch.stack([o.logvar for o in outs]))


def decoded_log_prob(decoder: nn.Module, likelihood: Likelihood, x: Tensor, z: Tensor) -> Tensor:
    """log p(x|z) per row (N,). A teacher-forced decoder (autoregressive: the pretrained text VAE's GPT-2) reads
    x as it scores it; every other decoder maps z to the likelihood's parameters."""
    if getattr(decoder, "teacher_forced", False):
        return decoder.log_prob(x, z)
    return likelihood.log_prob(x, decoder(z))


def decoded_mean(decoder: nn.Module, likelihood: Likelihood, z: Tensor) -> Tensor:
    """The decoder's output in data space: the likelihood's mean, or a teacher-forced decoder's greedy sample."""
    if getattr(decoder, "teacher_forced", False):
        return decoder.generate(z)
    return likelihood.mean(decoder(z))


class UnimodalParts(nn.Module):
    """One encoder and one feed-forward decoder per modality, with each modality's likelihood; ``latent_dims``
    gives each modality its own latent size (unimodal autoencoders, as latent-diffusion models train)."""

    def __init__(
        self,
        modalities: Sequence[Modality],
        latent_dim: int,
        likelihood_scale: float = 0.75,
        likelihood: str = "",
        encoder_latent_dim: int | None = None,
        decoder_latent_dim: int | None = None,
        latent_dims: Mapping[str, int] | None = None,
    ):
        super().__init__()
        sizes = dict(latent_dims or {})
        self.encoders = nn.ModuleDict(
            {m.name: default_encoder(m, sizes.get(m.name) or encoder_latent_dim or latent_dim) for m in modalities}
        )
        self.decoders = nn.ModuleDict(
            {m.name: default_decoder(m, sizes.get(m.name) or decoder_latent_dim or latent_dim) for m in modalities}
        )
        self.likelihoods = {m.name: Likelihood(likelihood or m.likelihood, likelihood_scale) for m in modalities}

    def experts(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
        """Unimodal posteriors q(z|x_m) of the named modalities stacked on dim 0: (len(names), B, D)."""
        return stacked_experts(self.encoders, x, names)

    def decode_raw(self, z: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Decoder outputs (likelihood parameters) for the named modalities."""
        return {m: self.decoders[m](z) for m in names}

    def decode_mean(self, z: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {m: decoded_mean(self.decoders[m], self.likelihoods[m], z) for m in names}

    def log_likelihoods(
        self, x: Mapping[str, Tensor], z: Tensor, rows: Tensor, names: Sequence[str]
    ) -> dict[str, Tensor]:
        """log p(x_m[rows] | z) per modality, each (N,)."""
        return {m: decoded_log_prob(self.decoders[m], self.likelihoods[m], x[m][rows], z) for m in names}

"""Per-modality encoders, decoders and likelihoods that most baselines share."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmbench.fusion import Gaussian
from mmbench.modality import Modality
from mmbench.nets import default_decoder, default_encoder
from mmbench.objectives import Likelihood


def stacked_experts(encoders: Mapping[str, nn.Module], x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
    """Unimodal posteriors q(z|x_m) of the named modalities stacked on dim 0: (len(names), B, D)."""
    outs = [encoders[m](x[m]) for m in names]
    return Gaussian(torch.stack([o.mu for o in outs]), torch.stack([o.logvar for o in outs]))


class UnimodalParts(nn.Module):
    """One encoder and one feed-forward decoder per modality, with each modality's likelihood."""

    def __init__(self, modalities: Sequence[Modality], latent_dim: int, likelihood_scale: float = 0.75,
                 likelihood: str = "", encoder_latent_dim: int | None = None, decoder_latent_dim: int | None = None):
        super().__init__()
        self.encoders = nn.ModuleDict({m.name: default_encoder(m, encoder_latent_dim or latent_dim) for m in modalities})
        self.decoders = nn.ModuleDict({m.name: default_decoder(m, decoder_latent_dim or latent_dim) for m in modalities})
        self.likelihoods = {m.name: Likelihood(likelihood or m.likelihood, likelihood_scale) for m in modalities}

    def experts(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
        """Unimodal posteriors q(z|x_m) of the named modalities stacked on dim 0: (len(names), B, D)."""
        return stacked_experts(self.encoders, x, names)

    def decode_raw(self, z: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Decoder outputs (likelihood parameters) for the named modalities."""
        return {m: self.decoders[m](z) for m in names}

    def decode_mean(self, z: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {m: self.likelihoods[m].mean(out) for m, out in self.decode_raw(z, names).items()}

    def log_likelihoods(self, x: Mapping[str, Tensor], z: Tensor, rows: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """log p(x_m[rows] | z) per modality, each (N,)."""
        return {m: self.likelihoods[m].log_prob(x[m][rows], out) for m, out in self.decode_raw(z, names).items()}

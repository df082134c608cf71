"""Per-modality encoders, decoders and likelihoods that most baselines share."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmbench.fusion import Gaussian
from mmbench.modality import Modality
from mmbench.nets import default_decoder, default_encoder
from mmbench.nets.stacked import StackedModules, same_structure
from mmbench.objectives import Likelihood


class UnimodalParts(nn.Module):
    """One encoder and one feed-forward decoder per modality, with each modality's likelihood.

    When every modality's networks share one structure (PolyMNIST), they are stored stacked and run in
    one vectorised call (``StackedModules``); otherwise one module per modality. Both give the same math.
    """

    def __init__(self, modalities: Sequence[Modality], latent_dim: int, likelihood_scale: float = 0.75,
                 likelihood: str = "", *, stack: bool = True):
        super().__init__()
        self.names = [m.name for m in modalities]
        encoders = [default_encoder(m, latent_dim) for m in modalities]
        decoders = [default_decoder(m, latent_dim) for m in modalities]
        self.stacked = stack and len(modalities) > 1 and same_structure(encoders) and same_structure(decoders)
        if self.stacked:
            self.encoders = StackedModules(encoders)
            self.decoders = StackedModules(decoders)
        else:
            self.encoders = nn.ModuleDict(dict(zip(self.names, encoders)))
            self.decoders = nn.ModuleDict(dict(zip(self.names, decoders)))
        self.likelihoods = {m.name: Likelihood(likelihood or m.likelihood, likelihood_scale) for m in modalities}

    def _index(self, names: Sequence[str]) -> Tensor | None:
        if list(names) == self.names:
            return None
        return torch.tensor([self.names.index(m) for m in names], device=self.encoders.weights[0].device)

    def experts(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
        """Unimodal posteriors q(z|x_m) of the named modalities stacked on dim 0: (len(names), B, D)."""
        if self.stacked:
            out = self.encoders(torch.stack([x[m] for m in names]), self._index(names))
            return Gaussian(out.mu, out.logvar)
        outs = [self.encoders[m](x[m]) for m in names]
        return Gaussian(torch.stack([o.mu for o in outs]), torch.stack([o.logvar for o in outs]))

    def decode_raw(self, z: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Decoder outputs (likelihood parameters) for the named modalities, from latents z (N, D)."""
        if self.stacked:
            out = self.decoders(z.unsqueeze(0).expand(len(names), *z.shape), self._index(names))
            return dict(zip(names, out.unbind(0)))
        return {m: self.decoders[m](z) for m in names}

    def decode_mean(self, z: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {m: self.likelihoods[m].mean(out) for m, out in self.decode_raw(z, names).items()}

    def log_likelihoods(self, x: Mapping[str, Tensor], z: Tensor, rows: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """log p(x_m[rows] | z) per modality, each (N,)."""
        return {m: self.likelihoods[m].log_prob(x[m][rows], out) for m, out in self.decode_raw(z, names).items()}

"""A product-of-experts VAE (the MVAE objective without its subsampled subsets) as a third-party plugin: it
imports only names that ``mmbench`` exports (docs/plugins.md)."""

from __future__ import annotations

import dataclasses

import torch

from mmbench import (
    LossOutput,
    MultimodalVAE,
    TrainConfig,
    UnimodalParts,
    kl_normal,
    product_of_stacked_experts,
    register_model,
)


@dataclasses.dataclass(frozen=True)
class PoEExampleConfig(TrainConfig):
    """A small preset for tests: latent 16, beta 1, Adam 1e-3, batch 64.

    likelihood_scale: scale of the Laplace likelihood.
    """

    latent_dim: int = 16
    beta: float = 1.0
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 1
    likelihood_scale: float = 0.75


@register_model("poe_example")
class PoEExample(MultimodalVAE):
    """Product-of-experts VAE (example plugin): -E[log p(X|z)] + beta KL(q(z|X) || p(z)), q the product of experts."""

    display_name = "PoE (example)"
    Config = PoEExampleConfig

    def __init__(self, modalities, config=None):
        super().__init__(modalities, config)
        self.parts = UnimodalParts(self.modalities, self.config.latent_dim, self.config.likelihood_scale)

    def encode(self, x, subset=None):
        subset = self.validate_subset(subset or self.modality_names)
        return product_of_stacked_experts(self.parts.experts(x, subset), prior_expert=True)

    def decode(self, z, modalities=None, *, generator=None):
        return self.parts.decode_mean(z, modalities or self.modality_names)

    def loss(self, batch):
        q = self.encode(batch["x"])
        z = q.rsample()
        rows = torch.arange(z.shape[0], device=z.device)
        rec = torch.stack(list(self.parts.log_likelihoods(batch["x"], z, rows, self.modality_names).values())).sum(0)
        kl = kl_normal(q)
        return LossOutput((-rec + self.config.beta * kl).mean(), {"rec": -rec.mean().item(), "kl": kl.mean().item()})

"""MVTCAE: multi-view total correlation auto-encoder (Hwang, Kim, Han & Kim, NeurIPS 2021)."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import torch
from torch import Tensor

from mmbench.config import TrainConfig, check_range
from mmbench.fusion import (
    Gaussian,
    kl_normal,
    masked_subset_posteriors,
    product_of_experts,
    product_of_stacked_experts,
)
from mmbench.missing import batch_masks, fill_missing, observed
from mmbench.modality import Modality
from mmbench.model import LossOutput, MultimodalVAE
from mmbench.registry import register_model
from mmbench.unimodal import UnimodalParts


@dataclasses.dataclass(frozen=True)
class MVTCAEConfig(TrainConfig):
    """MVTCAE's PolyMNIST preset: latent 512, alpha 5/6, beta 2.5, Adam 1e-3, batch 256, 300 epochs,
    Laplace likelihood with scale 0.75, the shared MoPoE-code networks.

    alpha: weight between the conditional-VIB terms KL(q(z|X) || q(z|x_m)) and the VIB term KL(q(z|X) || p(z)).
    """

    latent_dim: int = 512
    beta: float = 2.5
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 300
    alpha: float = 5 / 6
    likelihood_scale: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "alpha", lo=0.0, hi=1.0)
        check_range(self, "likelihood_scale", lo=0.0, lo_open=True)


@register_model("mvtcae")
class MVTCAE(MultimodalVAE):
    """MVTCAE (Hwang et al. 2021): product of all unimodal experts, total-correlation objective (alpha, beta).
    Missing modalities: MultiVae's MVTCAE (the product, reconstructions and CVIB terms over observed modalities)."""

    display_name = "MVTCAE"
    supports_missing = True
    Config = MVTCAEConfig
    config: MVTCAEConfig

    def __init__(self, modalities: Sequence[Modality], config: MVTCAEConfig | None = None):
        super().__init__(modalities, config)
        self.parts = UnimodalParts(self.modalities, self.config.latent_dim, self.config.likelihood_scale)

    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """q(z|x_A) = prod_{m in A} q(z|x_m), no prior expert."""
        subset = self.validate_subset(subset or self.modality_names)
        return product_of_stacked_experts(self.parts.experts(x, subset))

    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        return self.parts.decode_mean(z, modalities or self.modality_names)

    def loss(self, batch) -> LossOutput:
        """L = (N-a)/N sum_m -log p(x_m|z) + beta [ (a/N) sum_m KL(q(z|X) || q(z|x_m)) + (1-a) KL(q(z|X) || p(z)) ],
        z ~ q(z|X), N modalities, a = alpha (REFERENCE.md; Hwang et al. 2021, eq. 9).

        Rows with missing modalities (``batch["mask"]``), as MultiVae's MVTCAE: q(z|X) is the product over the
        observed experts and the sums over m run over observed modalities; N stays the number of modalities."""
        x = batch["x"]
        names = self.modality_names
        n, a, beta = len(names), self.config.alpha, self.config.beta
        masks = batch_masks(batch, names)
        if masks is not None:
            x = fill_missing(x, masks)
        e = self.parts.experts(x, names)
        unimodal = [Gaussian(e.mu[i], e.logvar[i]) for i in range(n)]
        if masks is None:
            joint = product_of_experts(unimodal)
        else:
            obs = observed(masks, names).to(e.mu.device)
            q = masked_subset_posteriors(e, torch.ones(1, n, device=obs.device), obs)
            joint = Gaussian(q.mu[0], q.logvar[0])
        z = joint.rsample()
        rows = torch.arange(z.shape[0], device=z.device)
        lls = self.parts.log_likelihoods(x, z, rows, names)
        cvibs = [kl_normal(joint, q) for q in unimodal]
        if masks is not None:
            lls = {m: torch.where(obs[i], lls[m], 0) for i, m in enumerate(names)}
            cvibs = [torch.where(obs[i], v, 0) for i, v in enumerate(cvibs)]
        rec = torch.stack(list(lls.values())).sum(0)
        cvib = torch.stack(cvibs).sum(0)
        vib = kl_normal(joint)
        loss = (-(n - a) / n * rec + beta * (a / n * cvib + (1 - a) * vib)).mean()
        return LossOutput(loss, {"rec": -rec.mean().item(), "cvib": cvib.mean().item(), "vib": vib.mean().item()})

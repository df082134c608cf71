"""MVAE: product of experts with the prior expert (Wu & Goodman, NeurIPS 2018)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, Sequence

import torch
from torch import Tensor

from mmbench.config import TrainConfig, check_range
from mmbench.fusion import (
    Gaussian,
    kl_normal,
    masked_subset_posteriors,
    product_of_stacked_experts,
    subset_mask,
    subset_posteriors,
)
from mmbench.missing import batch_masks, fill_missing, observed
from mmbench.modality import Modality
from mmbench.model import LossOutput, MultimodalVAE
from mmbench.registry import register_model
from mmbench.unimodal import UnimodalParts


@dataclasses.dataclass(frozen=True)
class MVAEConfig(TrainConfig):
    """MVAE on PolyMNIST with the shared MoPoE-code networks (as MoPoE's and MVTCAE's comparisons ran it):
    latent 512, beta 2.5, Adam 5e-4, batch 256, 300 epochs, Laplace likelihood with scale 0.75.

    random_subsets:   extra subsets drawn per training batch beside the joint and unimodal terms (the original
                      paper's sub-sampled training): distinct subsets of 2 to M-1 modalities, each equally likely
                      (MultiVae's draw; all of them when it exceeds their number); 0 disables them.
    warmup_epochs:    KL annealing: the KL weight rises linearly from 0 to beta over this many epochs
                      (Wu & Goodman's annealing factor; MultiVae's default of 10 epochs); 0 disables it.
                      Without it PolyMNIST's posteriors collapse to the prior within two epochs, before
                      the decoders draw digits.
    likelihood_scale: fixed scale of the Laplace (or Normal) likelihood.
    """

    latent_dim: int = 512
    beta: float = 2.5
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 300
    random_subsets: int = 0
    warmup_epochs: float = 10.0
    likelihood_scale: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "random_subsets", lo=0)
        check_range(self, "warmup_epochs", lo=0.0)
        check_range(self, "likelihood_scale", lo=0.0, lo_open=True)


@register_model("mvae")
class MVAE(MultimodalVAE):
    """MVAE (Wu & Goodman 2018): product of experts with N(0, I) expert; joint plus unimodal ELBOs. Missing
    modalities: MultiVae's MVAE (each term over x_{A & O}, averaged over the rows observing part of A)."""

    display_name = "MVAE"
    supports_missing = True
    Config = MVAEConfig
    config: MVAEConfig

    def __init__(self, modalities: Sequence[Modality], config: MVAEConfig | None = None):
        super().__init__(modalities, config)
        self.parts = UnimodalParts(self.modalities, self.config.latent_dim, self.config.likelihood_scale)

    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """q(z|x_A) = N(0, I) * prod_{m in A} q(z|x_m)."""
        subset = self.validate_subset(subset or self.modality_names)
        return product_of_stacked_experts(self.parts.experts(x, subset), prior_expert=True)

    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        return self.parts.decode_mean(z, modalities or self.modality_names)

    def training_subsets(self) -> list[tuple[str, ...]]:
        """The joint set, every single modality and, in training only, ``random_subsets`` distinct subsets of 2 to
        M-1 modalities drawn uniformly among all of them (torch's global RNG, so seeded and resumed)."""
        names = self.modality_names
        family = [tuple(names)] + [(m,) for m in names] if len(names) > 1 else [tuple(names)]
        if self.training and self.config.random_subsets and len(names) > 2:
            pool = [c for size in range(2, len(names)) for c in itertools.combinations(names, size)]
            family += [pool[i] for i in torch.randperm(len(pool))[: self.config.random_subsets].tolist()]
        return family

    def loss(self, batch) -> LossOutput:
        """-sum_A ELBO(x_A) over the training subsets; ELBO(x_A) reconstructs only the modalities in A:
        E_q(z|x_A)[sum_{m in A} log p(x_m|z)] - beta_t KL(q(z|x_A) || N(0, I)), with beta_t the annealed
        weight during training (``kl_weight``) and beta outside it.

        Rows with missing modalities (``batch["mask"]``), as MultiVae's MVAE: term A takes, in each row, the product
        over the experts of A it observes (with N(0, I)) and reconstructs those, and is averaged over the rows that
        observe at least one modality of A (none: no term)."""
        x = batch["x"]
        names = self.modality_names
        family = self.training_subsets()
        masks = batch_masks(batch, names)
        if masks is not None:
            return self._masked_loss(fill_missing(x, masks), masks, family)
        experts = self.parts.experts(x, names)
        mask = subset_mask(family, names).T.to(experts.mu)
        posteriors = subset_posteriors(experts, mask, torch.ones(len(family), device=experts.mu.device))
        z = posteriors.rsample()  # (S, B, D)
        total = torch.zeros((), device=z.device)
        terms: dict[str, float] = {}
        kl = kl_normal(posteriors)  # (S, B)
        kl_weight = self.kl_weight()
        rows = torch.arange(z.shape[1], device=z.device)
        for s, subset in enumerate(family):
            lls = self.parts.log_likelihoods(x, z[s], rows, subset)
            rec = torch.stack(list(lls.values())).sum(0)
            total = total + (rec - kl_weight * kl[s]).mean()
        terms["kl"] = kl.mean().item()
        return LossOutput(-total, terms)

    def _masked_loss(self, x, masks, family) -> LossOutput:
        names = self.modality_names
        experts = self.parts.experts(x, names)
        obs = observed(masks, names).to(experts.mu.device)  # (M, B)
        mask = subset_mask(family, names).T.to(experts.mu)  # (S, M)
        posteriors = masked_subset_posteriors(experts, mask, obs, torch.ones(len(family), device=obs.device))
        available = (mask @ obs.to(mask)) > 0  # (S, B): the row observes part of A
        z = posteriors.rsample()  # (S, B, D)
        kl = kl_normal(posteriors)  # (S, B)
        kl_weight = self.kl_weight()
        rows = torch.arange(z.shape[1], device=z.device)
        total = torch.zeros((), device=z.device)
        for s, subset in enumerate(family):
            lls = self.parts.log_likelihoods(x, z[s], rows, subset)
            rec = torch.stack([torch.where(masks[m].to(v.device), v, 0) for m, v in lls.items()]).sum(0)
            count = available[s].sum()
            term = torch.where(available[s], rec - kl_weight * kl[s], 0).sum() / count.clamp_min(1)
            total = total + term
        return LossOutput(-total, {"kl": kl[available].mean().item()})

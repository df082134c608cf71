"""MMVAE: mixture of unimodal experts (Shi, Siddharth, Paige & Torr, NeurIPS 2019)."""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from mmbench.config import TrainConfig, check_choice, check_range
from mmbench.fusion import Gaussian
from mmbench.missing import batch_masks, fill_missing, observed
from mmbench.modality import Modality
from mmbench.model import LossOutput, MultimodalVAE
from mmbench.objectives import IMPORTANCE_ESTIMATORS as ESTIMATORS
from mmbench.objectives import importance_objective
from mmbench.registry import register_model
from mmbench.unimodal import UnimodalParts


@dataclasses.dataclass(frozen=True)
class MMVAEConfig(TrainConfig):
    """MMVAE on PolyMNIST with the shared MoPoE-code networks: latent 512, Gaussian posteriors, DReG with
    K = 10, beta 1 (the stratified bound as published), Adam 1e-3, batch 256, 300 epochs, Laplace 0.75.

    estimator: "elbo" (mean of log-weights over K), "iwae" (log-mean-exp over K) or "dreg" (the IWAE
               bound with doubly reparameterised gradients, Tucker et al. 2019, as MMVAE's code).
    k:         samples per modality and example.
    beta:      weight of log p(z) - log q(z|X) inside each log-weight (1 = the MMVAE bound).
    """

    latent_dim: int = 512
    beta: float = 1.0
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 300
    estimator: str = "dreg"
    k: int = 10
    likelihood_scale: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "k", lo=1)
        check_range(self, "likelihood_scale", lo=0.0, lo_open=True)
        check_choice(self, "estimator", ESTIMATORS)


@register_model("mmvae")
class MMVAE(MultimodalVAE):
    """MMVAE (Shi et al. 2019): uniform mixture of unimodal posteriors, stratified IWAE/DReG objective. Missing
    modalities: MultiVae's MMVAE (mixture, strata and reconstructions over each row's observed modalities)."""

    display_name = "MMVAE"
    supports_missing = True
    Config = MMVAEConfig
    config: MMVAEConfig

    def __init__(self, modalities: Sequence[Modality], config: MMVAEConfig | None = None):
        super().__init__(modalities, config)
        self.parts = UnimodalParts(self.modalities, self.config.latent_dim, self.config.likelihood_scale)

    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """The Gaussian with the mean and variance of the mixture (1/|A|) sum_{m in A} q(z|x_m).

        Sampling for generation uses the mixture itself (``cond_generate``); this moment-matched Gaussian
        serves procedures that need one distribution per example (e.g. posterior means for a prior).
        """
        subset = self.validate_subset(subset or self.modality_names)
        e = self.parts.experts(x, subset)
        mean = e.mu.mean(0)
        second = (e.logvar.exp() + e.mu**2).mean(0)
        return Gaussian(mean, torch.log((second - mean**2).clamp_min(1e-12)))

    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        return self.parts.decode_mean(z, modalities or self.modality_names)

    @torch.no_grad()
    def cond_generate(self, x, given, targets=None, *, generator=None):
        """z from the mixture over the given modalities: each row picks one of them uniformly."""
        given = self.validate_subset(given)
        e = self.parts.experts(x, given)
        b = e.mu.shape[1]
        pick = torch.randint(0, len(given), (b,), generator=generator).to(e.mu.device)
        rows = torch.arange(b, device=e.mu.device)
        z = Gaussian(e.mu[pick, rows], e.logvar[pick, rows]).rsample(generator=generator)
        return self.decode(z, targets, generator=generator)

    def log_weights(
        self, x: Mapping[str, Tensor], experts: Gaussian, z: Tensor, rows: Tensor, obs: Tensor | None = None
    ) -> Tensor:
        """log w = sum_d log p(x_d|z) + beta [log p(z) - log q(z|X)], q(z|X) = (1/M) sum_m q(z|x_m).

        experts: unimodal posteriors (M, B, D); z: (N, D) latents for the examples ``rows`` (N,); obs: (M, B)
        bool for rows with missing modalities: the sum over d and the mixture run over observed modalities.
        """
        names = self.modality_names
        lls = self.parts.log_likelihoods(x, z, rows, names)
        log_prior = Gaussian(torch.zeros_like(z), torch.zeros_like(z)).log_prob(z)
        log_q = torch.stack(
            [Gaussian(experts.mu[m, rows], experts.logvar[m, rows]).log_prob(z) for m in range(len(names))]
        )
        if obs is None:
            rec = torch.stack(list(lls.values())).sum(0)
            log_mix = torch.logsumexp(log_q, 0) - math.log(len(names))
        else:
            seen = obs[:, rows]  # (M, N)
            rec = torch.stack([torch.where(seen[i], lls[m], 0) for i, m in enumerate(names)]).sum(0)
            log_q = torch.where(seen, log_q, -math.inf)
            log_mix = torch.logsumexp(log_q, 0) - torch.log(seen.sum(0).to(log_q))
        return rec + self.config.beta * (log_prior - log_mix)

    def loss(self, batch) -> LossOutput:
        """Stratified bound (1/M) sum_m E_{z_1..K ~ q(z|x_m)} [estimator over K of log w(z_k)].

        Rows with missing modalities (``batch["mask"]``), as MultiVae's MMVAE: (1/|O|) sum over the observed
        modalities O of the row, with log w over O (``log_weights``)."""
        x = batch["x"]
        names = self.modality_names
        k, est = self.config.k, self.config.estimator
        masks = batch_masks(batch, names)
        if masks is not None:
            x = fill_missing(x, masks)
        experts = self.parts.experts(x, names)
        obs = None if masks is None else observed(masks, names).to(experts.mu.device)  # (M, B)
        # DReG: the log-weights see the posteriors' parameters only through z (stop-gradient on q).
        scored = experts.detach() if est == "dreg" else experts
        b = experts.mu.shape[1]
        rows = torch.arange(b, device=experts.mu.device).repeat(k)
        total = torch.zeros(b, device=experts.mu.device)
        bound = torch.zeros(b, device=experts.mu.device)
        for m in range(len(names)):
            z = Gaussian(experts.mu[m], experts.logvar[m]).rsample(k)  # (K, B, D)
            lw = self.log_weights(x, scored, z.reshape(k * b, -1), rows, obs).reshape(k, b)
            objective, stratum_bound = importance_objective(lw, est, (z,)), torch.logsumexp(lw, 0) - math.log(k)
            if obs is not None:  # a stratum counts only for the rows that observe its modality
                objective = torch.where(obs[m], objective, 0)
                stratum_bound = torch.where(obs[m], stratum_bound, 0)
            total = total + objective
            bound = bound + stratum_bound.detach()
        strata = len(names) if obs is None else obs.sum(0).to(total)
        loss = -(total / strata).mean()
        return LossOutput(loss, {"iwae_bound": (bound / strata).mean().item()})

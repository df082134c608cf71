"""MoPoE: mixture of products of experts (Sutter, Daunhawer & Vogt, ICLR 2021)."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import torch
from torch import Tensor

from mmbench.config import TrainConfig, check_choice, check_range
from mmbench.errors import MMBenchError
from mmbench.fusion import (
    PRIOR_EXPERT_RULES,
    Gaussian,
    has_prior_expert,
    product_of_stacked_experts,
    subset_mask,
    subset_posteriors,
    subset_weights,
    subsets,
)
from mmbench.modality import LIKELIHOODS, Modality
from mmbench.model import LossOutput, MultimodalVAE
from mmbench.objectives import ESTIMATORS, KL_ESTIMATORS, mixture_elbo, stratified_mixture_elbo
from mmbench.registry import register_model
from mmbench.unimodal import UnimodalParts


@dataclasses.dataclass(frozen=True)
class MoPoEConfig(TrainConfig):
    """MoPoE's PolyMNIST preset (Sutter et al. 2021 and their code): latent 512, beta 2.5, Adam 5e-4,
    batch 256, 300 epochs, Laplace likelihood with scale 0.75.

    prior_expert:     which subset posteriors include the N(0, I) expert: "full_set" (the reference
                      code), "all" or "none".
    estimator:        "stratified" (the reference code: each batch row decodes one subset's sample)
                      or "enumerate" (every subset decodes every row; cost grows with 2^M).
    kl_estimator:     "exact" (the reference code: every row's KL averaged over all 2^M-1 subset
                      posteriors, S x B x D tensors) or "stratified" (each row's KL for its assigned subset
                      only: the same expectation at a cost linear in M; needs estimator "stratified").
    likelihood_scale: fixed scale of the Laplace (or Normal) likelihood.
    likelihood:       "" keeps each modality's own likelihood (Laplace for PolyMNIST); or one for all.
    """

    latent_dim: int = 512
    beta: float = 2.5
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 300
    prior_expert: str = "full_set"
    estimator: str = "stratified"
    kl_estimator: str = "exact"
    likelihood_scale: float = 0.75
    likelihood: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "prior_expert", PRIOR_EXPERT_RULES)
        check_choice(self, "estimator", ESTIMATORS)
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        if self.kl_estimator == "stratified" and self.estimator != "stratified":
            raise MMBenchError(
                f"{type(self).__name__}.kl_estimator = 'stratified' needs estimator = 'stratified' "
                f"(got {self.estimator!r})"
            )
        check_range(self, "likelihood_scale", lo=0.0, lo_open=True)
        check_choice(self, "likelihood", ("", *LIKELIHOODS))


@register_model("mopoe")
class MoPoE(MultimodalVAE):
    """MoPoE (Sutter et al. 2021): mixture over all 2^M-1 subsets of products of experts, eq. 3 ELBO."""

    display_name = "MoPoE"
    Config = MoPoEConfig
    config: MoPoEConfig

    def __init__(self, modalities: Sequence[Modality], config: MoPoEConfig | None = None):
        super().__init__(modalities, config)
        cfg = self.config
        # categorical decoders output logits per class, the others data-shaped outputs: an override cannot cross
        categorical = cfg.likelihood == "categorical"
        clash = [m.name for m in self.modalities if cfg.likelihood and categorical != (m.likelihood == "categorical")]
        if clash:
            raise MMBenchError(
                f"MoPoEConfig.likelihood = {cfg.likelihood!r} cannot replace the likelihood of "
                f"modalities {clash} (categorical and other decoders differ); leave it '' for their own"
            )
        self.parts = UnimodalParts(self.modalities, cfg.latent_dim, cfg.likelihood_scale, cfg.likelihood)
        self.family = subsets(self.modality_names)
        self.register_buffer("mask", subset_mask(self.family, self.modality_names).T.contiguous(), persistent=False)
        self.register_buffer("weights", subset_weights(self.family), persistent=False)
        self.register_buffer(
            "prior_flags", torch.tensor([self._has_prior_expert(s) for s in self.family]), persistent=False
        )

    def _has_prior_expert(self, subset: Sequence[str]) -> bool:
        return has_prior_expert(self.config.prior_expert, len(subset), len(self.modalities))

    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """q(z|x_A): the product of the experts in A (with N(0, I) where the prior-expert rule says)."""
        subset = self.validate_subset(subset or self.modality_names)
        return product_of_stacked_experts(self.parts.experts(x, subset), prior_expert=self._has_prior_expert(subset))

    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        return self.parts.decode_mean(z, modalities or self.modality_names)

    def loss(self, batch) -> LossOutput:
        """-ELBO of eq. 3 over all non-empty subsets, uniform w_A, beta-weighted KL."""
        x = batch["x"]
        names = self.modality_names
        experts = self.parts.experts(x, names)
        log_likelihood = lambda z, rows: self.parts.log_likelihoods(x, z, rows, names)  # noqa: E731
        if self.config.kl_estimator == "stratified":
            out = stratified_mixture_elbo(
                experts, self.mask, self.prior_flags, self.weights, log_likelihood, beta=self.config.beta
            )
        else:
            posteriors = subset_posteriors(experts, self.mask, self.prior_flags)
            out = mixture_elbo(
                posteriors, self.weights, log_likelihood, beta=self.config.beta, estimator=self.config.estimator
            )
        loss = -out.elbo.mean()
        terms = {"kl": out.kl.mean().item(), **{f"rec/{m}": -v.mean().item() for m, v in out.log_likelihood.items()}}
        return LossOutput(loss, terms)

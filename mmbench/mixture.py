"""The subset-mixture VAE (eq. 3 of the Diff-MVAE paper; eq. 23 with diffusion terms): the base of MoPoE and
Diff-MVAE, which differ only in their networks and per-modality terms.

    ELBO = sum_A w_A { E_q(z|x_A) [ sum_i log p(x_i|z) ] - beta * KL(q(z|x_A) || p(z)) }      (eq. 3)

q(z|x_A) is the product of the unimodal experts in A, with N(0, I) where the prior-expert rule says, over all
2^M - 1 non-empty subsets A with uniform w_A.

Rows with missing modalities (``batch["mask"]``) sum only over the subsets of the modalities they observe, w_A
renormalised over those, and reconstruct (or denoise) only observed modalities: MultiVae's MoPoE on an
``IncompleteDataset`` (``MoPoE.inference``: availabilities / their sum), eq. 3 of the row's observed tuple.
"""

from __future__ import annotations

import abc
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
    valid_subsets,
)
from mmbench.missing import batch_masks, fill_missing, observed
from mmbench.modality import Modality
from mmbench.model import LossOutput, MultimodalVAE
from mmbench.objectives import ESTIMATORS, KL_ESTIMATORS, ElboOutput, mixture_elbo, stratified_mixture_elbo


@dataclasses.dataclass(frozen=True)
class SubsetMixtureConfig(TrainConfig):
    """The fields of every subset-mixture model (eq. 3).

    prior_expert:     which subset posteriors include the N(0, I) expert: "full_set" (MoPoE's reference code),
                      "all" or "none".
    estimator:        "stratified" (MoPoE's reference code: each batch row decodes one subset's sample) or
                      "enumerate" (every subset decodes every row; cost grows with 2^M).
    kl_estimator:     "exact" (MoPoE's reference code: every row's KL averaged over all 2^M-1 subset posteriors,
                      S x B x D tensors) or "stratified" (each row's KL for its assigned subset only: the same
                      expectation at a cost linear in M; needs estimator "stratified").
    likelihood_scale: fixed scale of the Laplace (or Normal) likelihood of the feed-forward decoders.
    """

    prior_expert: str = "full_set"
    estimator: str = "stratified"
    kl_estimator: str = "exact"
    likelihood_scale: float = 0.75

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


class SubsetMixtureVAE(MultimodalVAE):
    """A model trained on eq. 3 (or eq. 23): subclasses give the unimodal ``experts`` and the per-modality
    ``log_likelihoods`` (or their diffusion surrogates); the subsets, the products of experts, the KL estimators
    and the loss are here. Buffers: ``mask`` (S, M) 0/1, ``weights`` w_A (S,), ``prior_flags`` (S,) 0/1 float."""

    config: SubsetMixtureConfig
    supports_missing = True

    def __init__(self, modalities: Sequence[Modality], config: SubsetMixtureConfig | None = None):
        super().__init__(modalities, config)
        names = self.modality_names
        self.family = subsets(names)
        self.register_buffer("mask", subset_mask(self.family, names).T.contiguous(), persistent=False)
        self.register_buffer("weights", subset_weights(self.family), persistent=False)
        flags = [self.subset_has_prior_expert(s) for s in self.family]
        self.register_buffer("prior_flags", torch.tensor(flags, dtype=torch.float32), persistent=False)

    def subset_has_prior_expert(self, subset: Sequence[str]) -> bool:
        """Whether N(0, I) joins q(z|x_A) (``config.prior_expert``'s rule)."""
        return has_prior_expert(self.config.prior_expert, len(subset), len(self.modalities))

    @abc.abstractmethod
    def experts(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
        """Unimodal posteriors q(z|x_m) of the named modalities stacked on dim 0: (len(names), B, D)."""

    @abc.abstractmethod
    def log_likelihoods(self, x: Mapping[str, Tensor], z: Tensor, rows: Tensor) -> dict[str, Tensor]:
        """log p(x_m[rows] | z) per modality, each (N,), or a surrogate such as minus a denoising loss (eq. 23)."""

    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """q(z|x_A): the product of the experts in A (with N(0, I) where the prior-expert rule says)."""
        subset = self.validate_subset(subset or self.modality_names)
        return product_of_stacked_experts(self.experts(x, subset), prior_expert=self.subset_has_prior_expert(subset))

    def elbo(
        self,
        x: Mapping[str, Tensor],
        *,
        beta: float,
        free_bits: float = 0.0,
        masks: Mapping[str, Tensor] | None = None,
    ) -> ElboOutput:
        """Per-example eq. 3 over all subsets with the configured estimators (``mixture_elbo`` for the exact KL,
        ``stratified_mixture_elbo`` for the stratified one); with ``masks`` ({m: bool (B,)}, ``batch_masks``)
        over each row's subsets of observed modalities, missing rows zero-filled and their terms dropped."""
        cfg = self.config
        valid = None
        if masks is not None:
            x = fill_missing(x, masks)
            valid = valid_subsets(self.mask, observed(masks, self.modality_names).to(self.mask.device))
        experts = self.experts(x, self.modality_names)
        if masks is None:
            log_likelihood = lambda z, rows: self.log_likelihoods(x, z, rows)  # noqa: E731
        else:

            def log_likelihood(z: Tensor, rows: Tensor) -> dict[str, Tensor]:
                lls = self.log_likelihoods(x, z, rows)
                return {m: torch.where(masks[m].to(v.device)[rows], v, 0) for m, v in lls.items()}

        if cfg.kl_estimator == "stratified":
            return stratified_mixture_elbo(
                experts,
                self.mask,
                self.prior_flags,
                self.weights,
                log_likelihood,
                beta=beta,
                free_bits=free_bits,
                valid=valid,
            )
        posteriors = subset_posteriors(experts, self.mask, self.prior_flags)
        return mixture_elbo(
            posteriors,
            self.weights,
            log_likelihood,
            beta=beta,
            estimator=cfg.estimator,
            free_bits=free_bits,
            valid=valid,
        )

    def log_terms(self, log_likelihood: Mapping[str, Tensor]) -> dict[str, float]:
        """The per-modality entries of the training log: reconstruction losses "rec/<m>" by default."""
        return {f"rec/{m}": -v.mean().item() for m, v in log_likelihood.items()}

    def loss(self, batch) -> LossOutput:
        """-ELBO (eq. 3; eq. 23 with diffusion terms) averaged over the batch (every row, observed terms only when
        it misses modalities), KL weighted by ``kl_weight()`` and floored by ``config.free_bits`` when the config
        has that field."""
        masks = batch_masks(batch, self.modality_names)
        out = self.elbo(
            batch["x"], beta=self.kl_weight(), free_bits=getattr(self.config, "free_bits", 0.0), masks=masks
        )
        lls = out.log_likelihood
        if masks is not None:  # the log's per-modality means over the rows that observe the modality
            lls = {m: v[masks[m].to(v.device)] for m, v in lls.items() if bool(masks[m].any())}
        return LossOutput(-out.elbo.mean(), {"kl": out.kl.mean().item(), **self.log_terms(lls)})

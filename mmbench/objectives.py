"""Likelihoods and the subset-mixture ELBO (eq. 3 of the Diff-MVAE paper; eq. 23 with diffusion terms).

    ELBO = sum_A w_A { E_q(z|x_A) [ sum_i log p(x_i|z) ] - beta * KL(q(z|x_A) || p(z)) }      (eq. 3)

``mixture_elbo`` takes the per-modality log-likelihood as a callable, so a model may return, for a
modality with a diffusion decoder, the negative denoising score-matching loss instead (eq. 23).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian, full_precision, kl_normal, row_assignment, row_weights, stratified_assignment

ESTIMATORS = ("enumerate", "stratified")


def sum_per_example(t: Tensor) -> Tensor:
    """Sum over every dimension but the first, in any memory layout (a reshape would copy a
    channels-last tensor)."""
    return t.sum(dim=tuple(range(1, t.dim()))) if t.dim() > 1 else t


@dataclass(frozen=True)
class Likelihood:
    """A decoder likelihood p(x|z): the decoder output is its location (or logits).

    laplace:     Laplace(x; loc, scale), fixed scale (0.75 for PolyMNIST, MoPoE's code).
    normal:      N(x; loc, scale^2), fixed scale.
    bernoulli:   Bernoulli(x; sigmoid(logits)), x in [0, 1].
    categorical: Categorical(x; softmax(logits)) over the last dim of the output; x holds indices.
    log_prob sums over every dimension but the batch one.
    """

    name: str
    scale: float = 0.75

    def __post_init__(self) -> None:
        if self.name not in ("laplace", "normal", "bernoulli", "categorical"):
            raise MMBenchError(f"unknown likelihood {self.name!r}; known: laplace, normal, bernoulli, categorical")
        if self.name in ("laplace", "normal") and not self.scale > 0:
            raise MMBenchError(f"likelihood scale must be > 0, got {self.scale}")

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        out = full_precision(out)  # a bf16 decoder output (autocast) is scored in fp32
        # Laplace and normal: the per-element constant and scale are applied to the per-example sums, so the
        # pixels are read in two passes (difference, abs or square) instead of four; the same sum
        if self.name == "laplace":  # sum_i -|x_i - loc_i| / s - log(2 s)
            d = (x - out).abs()
            return sum_per_example(d) * (-1.0 / self.scale) - d[0].numel() * math.log(2 * self.scale)
        if self.name == "normal":  # sum_i -(x_i - loc_i)^2 / (2 s^2) - log s - log(2 pi) / 2
            d = (x - out).square()
            return sum_per_example(d) * (-0.5 / self.scale**2) - d[0].numel() * (
                math.log(self.scale) + 0.5 * math.log(2 * math.pi)
            )
        if self.name == "bernoulli":
            lp = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            lp = torch.log_softmax(out, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
        return sum_per_example(lp)

    def mean(self, out: Tensor) -> Tensor:
        """The decoder output mapped to data space (location, probabilities or class indices)."""
        if self.name == "bernoulli":
            return torch.sigmoid(out)
        if self.name == "categorical":
            return out.argmax(-1)
        return out


class ElboOutput(NamedTuple):
    """Per-example terms of the mixture ELBO, each of shape (B,).

    elbo = sum_m log_likelihood[m] - beta * kl.  With the stratified estimator each row carries the
    reconstruction of the one subset it was assigned to, so only the batch mean estimates eq. 3.
    """

    elbo: Tensor
    log_likelihood: dict[str, Tensor]
    kl: Tensor


def mixture_elbo(
    posteriors: Gaussian,
    weights: Tensor,
    log_likelihood: Callable[[Tensor, Tensor], Mapping[str, Tensor]],
    *,
    beta: float = 1.0,
    prior: Gaussian | None = None,
    estimator: str = "enumerate",
    n_samples: int = 1,
    free_bits: float = 0.0,
    generator: torch.Generator | None = None,
    valid: Tensor | None = None,
) -> ElboOutput:
    """The subset-mixture ELBO of eq. 3 (eq. 23 when log_likelihood returns diffusion surrogates).

    posteriors:     q(z|x_A) for every subset, Gaussians of shape (S, B, D).
    weights:        w_A, shape (S,), summing to 1.
    log_likelihood: (z (N, D), rows (N,)) -> {modality: (N,)}: log p(x_i[rows] | z) per modality,
                    or a surrogate such as minus a denoising score-matching loss (eq. 23).
    estimator:      "enumerate" draws n_samples z from every q(z|x_A) (cost grows with |S|);
                    "stratified" gives each batch row to one subset, in contiguous blocks sized by
                    w_A as in MoPoE's reference code (cost independent of |S|). KL is exact for both.
    prior:          p(z), N(0, I) by default.
    free_bits:      a KL floor in nats per latent dimension (``kl_normal``); 0 = the plain KL.
    valid:          (S, B) bool, for rows with missing modalities: subset s holds only modalities row b observes.
                    Each row then sums over its valid subsets with w_A renormalised over them (``row_weights``),
                    the stratified rows draw only among them (``row_assignment``), and log_likelihood must give
                    0 for a modality a row misses. None: every subset of every row (the complete-data path).
    """
    if estimator not in ESTIMATORS:
        raise MMBenchError(f"unknown ELBO estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    if n_samples < 1:
        raise MMBenchError(f"n_samples must be >= 1, got {n_samples}")
    s, b, d = posteriors.mu.shape
    if weights.shape != (s,):
        raise MMBenchError(f"{weights.numel()} subset weights for {s} subset posteriors")
    weights = weights.to(posteriors.mu)
    if valid is not None:
        return _masked_mixture_elbo(
            posteriors, weights, log_likelihood, valid, beta, prior, estimator, n_samples, free_bits, generator
        )
    kl = (weights[:, None] * kl_normal(posteriors, prior, free_bits=free_bits)).sum(0)  # (B,)

    if estimator == "enumerate":
        z = posteriors.rsample(n_samples, generator=generator)  # (K, S, B, D)
        rows = torch.arange(b, device=z.device).repeat(n_samples * s)
        lls = log_likelihood(z.reshape(-1, d), rows)
        terms = {m: (weights[:, None] * v.reshape(n_samples, s, b).mean(0)).sum(0) for m, v in lls.items()}
    else:
        assigned = stratified_assignment(b, weights.cpu()).to(z_device := posteriors.mu.device)
        rows = torch.arange(b, device=z_device)
        q = Gaussian(posteriors.mu[assigned, rows], posteriors.logvar[assigned, rows])  # (B, D)
        z = q.rsample(n_samples, generator=generator)  # (K, B, D)
        lls = log_likelihood(z.reshape(-1, d), rows.repeat(n_samples))
        terms = {m: v.reshape(n_samples, b).mean(0) for m, v in lls.items()}

    elbo = torch.stack(list(terms.values())).sum(0) - beta * kl
    return ElboOutput(elbo, terms, kl)


def _masked_mixture_elbo(
    posteriors: Gaussian,
    weights: Tensor,
    log_likelihood: Callable[[Tensor, Tensor], Mapping[str, Tensor]],
    valid: Tensor,
    beta: float,
    prior: Gaussian | None,
    estimator: str,
    n_samples: int,
    free_bits: float,
    generator: torch.Generator | None,
) -> ElboOutput:
    """``mixture_elbo`` over each row's valid subsets: sum_A w_A(b) {...} with w_A(b) = w_A [A valid] / sum."""
    s, b, d = posteriors.mu.shape
    if valid.shape != (s, b):
        raise MMBenchError(f"valid has shape {tuple(valid.shape)}, expected ({s}, {b}): subsets x rows")
    valid = valid.to(posteriors.mu.device)
    w = row_weights(weights, valid)  # (S, B)
    kl = torch.where(valid, w * kl_normal(posteriors, prior, free_bits=free_bits), 0).sum(0)  # (B,)
    if estimator == "enumerate":
        z = posteriors.rsample(n_samples, generator=generator)  # (K, S, B, D)
        rows = torch.arange(b, device=z.device).repeat(n_samples * s)
        lls = log_likelihood(z.reshape(-1, d), rows)
        terms = {m: torch.where(valid, w * v.reshape(n_samples, s, b).mean(0), 0).sum(0) for m, v in lls.items()}
    else:
        assigned = row_assignment(w, generator=generator).to(posteriors.mu.device)
        rows = torch.arange(b, device=posteriors.mu.device)
        q = Gaussian(posteriors.mu[assigned, rows], posteriors.logvar[assigned, rows])  # (B, D)
        z = q.rsample(n_samples, generator=generator)  # (K, B, D)
        lls = log_likelihood(z.reshape(-1, d), rows.repeat(n_samples))
        terms = {m: v.reshape(n_samples, b).mean(0) for m, v in lls.items()}
    elbo = torch.stack(list(terms.values())).sum(0) - beta * kl
    return ElboOutput(elbo, terms, kl)


KL_ESTIMATORS = ("exact", "stratified")


def stratified_mixture_elbo(
    experts: Gaussian,
    mask: Tensor,
    prior_flags: Tensor,
    weights: Tensor,
    log_likelihood: Callable[[Tensor, Tensor], Mapping[str, Tensor]],
    *,
    beta: float = 1.0,
    free_bits: float = 0.0,
    generator: torch.Generator | None = None,
    valid: Tensor | None = None,
) -> ElboOutput:
    """Eq. 3 with the KL stratified like the reconstruction: each batch row is assigned one subset A
    (``stratified_assignment``'s blocks, expected share w_A, dealt to the rows in a random order) and carries log p(x|z), z ~ q(z|x_A), and KL(q(z|x_A) || p(z))
    of that subset only. Its expectation over the assignment is the exact average sum_A w_A KL_A, and only the
    B assigned products of experts are formed: cost O(M B D) instead of O(2^M B D) for the exact KL
    (``mixture_elbo``), which is what makes 10 modalities affordable.

    experts: unimodal Gaussians stacked (M, B, D); mask: (S, M) 0/1; prior_flags: (S,) 0/1 (the N(0, I) expert).
    valid: (S, B) bool for rows with missing modalities (see ``mixture_elbo``): each row draws among its valid
    subsets with w_A renormalised over them (``row_assignment``), so its expected KL is their weighted average.
    """
    m, b, d = experts.mu.shape
    if valid is not None:
        assigned = row_assignment(row_weights(weights, valid.to(experts.mu.device)), generator=generator)
        assigned = assigned.to(experts.mu.device)
    else:
        assigned = stratified_assignment(b, weights.cpu(), generator=generator)
        # rows take the blocks in a random order, so each row's expected KL is the exact average, whatever the order
        assigned = assigned[torch.randperm(b, generator=generator)].to(experts.mu.device)
    with torch.autocast(experts.mu.device.type, enabled=False):
        precisions = 1.0 / (full_precision(experts.logvar).exp() + 1e-8)  # (M, B, D)
        row_mask = mask.to(precisions)[assigned]  # (B, M)
        precision = torch.einsum("bm,mbd->bd", row_mask, precisions) + prior_flags.to(precisions)[assigned, None]
        mean = torch.einsum("bm,mbd->bd", row_mask, full_precision(experts.mu) * precisions) / precision
    q = Gaussian(mean, -torch.log(precision))
    kl = kl_normal(q, free_bits=free_bits)
    rows = torch.arange(b, device=mean.device)
    terms = dict(log_likelihood(q.rsample(generator=generator), rows))
    elbo = torch.stack(list(terms.values())).sum(0) - beta * kl
    return ElboOutput(elbo, terms, kl)


IMPORTANCE_ESTIMATORS = ("elbo", "iwae", "dreg")


def importance_objective(log_w: Tensor, estimator: str, latents: tuple[Tensor, ...] = ()) -> Tensor:
    """Per-example objective (B,) from K log importance weights log_w (K, B).

    elbo: mean_k log w_k.   iwae: log (1/K) sum_k w_k (Burda et al. 2016).
    dreg: sum_k w~_k log w_k with w~ the normalised weights held constant, and the gradient reaching the
          reparameterised ``latents`` (K, B, D) scaled once more by w~ (Tucker et al. 2019), so encoder
          parameters get the doubly reparameterised gradient. log_w must then see the posteriors'
          parameters only through the latents (stop-gradient on q). Its value is not the bound.
    """
    if estimator == "elbo":
        return log_w.mean(0)
    if estimator == "iwae":
        return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
    if estimator != "dreg":
        raise MMBenchError(f"unknown estimator {estimator!r}; known: {', '.join(IMPORTANCE_ESTIMATORS)}")
    weights = torch.softmax(log_w.detach(), 0)
    for latent in latents:
        if latent.requires_grad:
            latent.register_hook(lambda grad: weights.unsqueeze(-1) * grad)
    return (weights * log_w).sum(0)


def annealed_beta(beta: float, warmup_epochs: float, step: int, steps_per_epoch: int) -> float:
    """KL annealing: beta * min(1, step / (warmup_epochs * steps_per_epoch)); beta itself without warm-up."""
    ramp = warmup_epochs * steps_per_epoch
    return beta * (min(1.0, step / ramp) if ramp > 0 else 1.0)

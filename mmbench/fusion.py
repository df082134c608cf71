"""Gaussian posteriors and how multimodal VAEs fuse them.

Notation follows the Diff-MVAE paper (eq. 3/13): S is the family of subsets A of the modalities,
w_A the weight of subset A, q(z|x_A) a product of the unimodal Gaussian experts in A.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from mmbench.errors import MMBenchError

LOG_2PI = math.log(2 * math.pi)
# Encoders clamp log-variances to +-LOGVAR_LIMIT (variances 1e-13..1e13). A collapsing expert (e.g. a
# single modality beside the prior expert) otherwise drifts until exp() overflows and the loss is NaN.
LOGVAR_LIMIT = 30.0


def full_precision(t: Tensor) -> Tensor:
    """``t`` in fp32 when autocast made it bf16 or fp16; fp32 and fp64 tensors are returned as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class Gaussian(NamedTuple):
    """Diagonal Gaussian N(mu, exp(logvar)); tensors of shape (..., D)."""

    mu: Tensor
    logvar: Tensor

    @property
    def var(self) -> Tensor:
        return self.logvar.exp()

    @property
    def std(self) -> Tensor:
        return (0.5 * self.logvar).exp()

    def rsample(self, n: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised sample, shape (..., D), or (n, ..., D) when n is given."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        if generator is None:
            eps = torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype)
        else:  # a generator draws on its own device (the CPU for evaluation's seeded draws), then moves
            eps = torch.randn(shape, generator=generator, device=generator.device, dtype=self.mu.dtype).to(
                self.mu.device
            )
        return self.mu + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mu, var) summed over the last dimension."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 / self.var).sum(-1)

    def detach(self) -> "Gaussian":
        return Gaussian(self.mu.detach(), self.logvar.detach())

    def index(self, rows: Tensor) -> "Gaussian":
        return Gaussian(self.mu[rows], self.logvar[rows])


def standard_normal(like: Tensor) -> Gaussian:
    """N(0, I) with the shape, dtype and device of ``like``."""
    return Gaussian(torch.zeros_like(like), torch.zeros_like(like))


def kl_normal(q: Gaussian, p: Gaussian | None = None, *, free_bits: float = 0.0) -> Tensor:
    """KL(q || p) between diagonal Gaussians, summed over the last dimension; p = N(0, I) by default.

    KL = 1/2 sum_d [ log(var_p/var_q) + (var_q + (mu_q - mu_p)^2) / var_p - 1 ].

    free_bits > 0: each dimension's term is max(KL_d, free_bits) nats (free bits, Kingma et al. 2016, per
    example), so a dimension carrying less information than the floor gets no gradient towards the prior.
    """
    if p is None:
        per_dim = 0.5 * (q.var + q.mu**2 - 1.0 - q.logvar)
    else:
        per_dim = 0.5 * (p.logvar - q.logvar + (q.var + (q.mu - p.mu) ** 2) / p.var - 1.0)
    return (per_dim.clamp_min(free_bits) if free_bits > 0 else per_dim).sum(-1)


def product_of_experts(experts: Sequence[Gaussian], *, prior_expert: bool = False) -> Gaussian:
    """Normalised product of Gaussian experts (Wu & Goodman 2018, eq. 2 of the MVAE paper).

    precision = sum_i 1/var_i (+ 1 with the N(0, I) prior expert),  mu = (sum_i mu_i/var_i) / precision.
    Experts must share their shape (..., D).
    """
    if not experts:
        raise MMBenchError("product_of_experts needs at least one expert")
    stacked = Gaussian(torch.stack([e.mu for e in experts]), torch.stack([e.logvar for e in experts]))
    return product_of_stacked_experts(stacked, prior_expert=prior_expert)


def product_of_stacked_experts(experts: Gaussian, *, prior_expert: bool = False) -> Gaussian:
    """``product_of_experts`` for experts already stacked on dim 0: (E, ..., D) -> (..., D)."""
    mask = torch.ones(1, experts.mu.shape[0], dtype=experts.mu.dtype, device=experts.mu.device)
    flag = torch.tensor([float(prior_expert)], dtype=experts.mu.dtype, device=experts.mu.device)
    q = subset_posteriors(experts, mask, flag)
    return Gaussian(q.mu[0], q.logvar[0])


PRIOR_EXPERT_RULES = ("full_set", "all", "none")


def has_prior_expert(rule: str, subset_size: int, n_modalities: int) -> bool:
    """Whether N(0, I) joins subset A's product: "full_set" (MoPoE's reference code: only A = all
    modalities), "all" or "none"."""
    return rule == "all" or (rule == "full_set" and subset_size == n_modalities)


def subsets(modalities: Sequence[str], family: Sequence[Sequence[str]] | None = None) -> list[tuple[str, ...]]:
    """All non-empty subsets of ``modalities`` (by size, then order), or a validated given family."""
    names = list(modalities)
    if len(set(names)) != len(names):
        raise MMBenchError(f"duplicate modality names in {names}")
    if family is None:
        return [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]
    out = []
    for s in family:
        s = tuple(s)
        if not s:
            raise MMBenchError("a subset in the family is empty; every subset needs one modality at least")
        unknown = [m for m in s if m not in names]
        if unknown:
            raise MMBenchError(f"subset {list(s)} names unknown modalities {unknown}; known: {names}")
        out.append(tuple(m for m in names if m in s))
    if len(set(out)) != len(out):
        raise MMBenchError(f"subset family {family} lists a subset twice")
    return out


def subset_weights(family: Sequence[Sequence[str]], weights: Sequence[float] | None = None) -> Tensor:
    """w_A of eq. 3: uniform 1/|S| by default, or the given non-negative weights normalised to sum 1."""
    if weights is None:
        return torch.full((len(family),), 1.0 / len(family))
    w = torch.as_tensor(list(weights), dtype=torch.float32)
    if w.shape != (len(family),):
        raise MMBenchError(f"got {w.numel()} subset weights for {len(family)} subsets")
    if (w < 0).any() or w.sum() <= 0:
        raise MMBenchError(f"subset weights must be non-negative with a positive sum, got {list(weights)}")
    return w / w.sum()


def subset_mask(family: Sequence[Sequence[str]], modalities: Sequence[str]) -> Tensor:
    """(M, S) 0/1 matrix: entry [m, s] is 1 when modality m is in subset s."""
    return torch.tensor([[float(m in s) for s in family] for m in modalities])


def stratified_assignment(batch_size: int, weights: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Assign rows to subsets in contiguous blocks sized by the weights (MoPoE's reference code).

    Returns a LongTensor (B,) of subset indices. Each subset gets floor(B * w) rows; the remaining rows go to
    subsets drawn afresh for every batch by systematic sampling over the fractional parts f = B * w - floor(B * w)
    (one uniform offset, then every unit step), so subset s gets an extra row with probability exactly f_s and
    its expected share is exactly w_s. (Giving the remainder to the same subsets every batch, as the largest
    fractional parts or the first subsets, biases their weights: at B = 32 and 31 subsets, {m0} would weigh
    6.25 % instead of 3.2 %.) The draw uses ``generator``, else torch's global RNG (seeded and checkpointed
    by the trainer).
    """
    raw = batch_size * weights.double()
    counts = raw.floor().long()
    missing = batch_size - int(counts.sum())
    if missing:
        frac = (raw - counts).clamp_min(0)
        frac = frac * (missing / frac.sum())  # the fractional parts sum to `missing` (up to rounding)
        offset = float(torch.rand((), generator=generator, dtype=torch.float64))
        ends = torch.cumsum(frac, 0)
        points = offset + torch.arange(missing, dtype=torch.float64)
        picked = torch.searchsorted(ends, points, right=True).clamp_max(len(weights) - 1)
        counts += torch.bincount(picked, minlength=len(weights))
    return torch.repeat_interleave(torch.arange(len(weights)), counts)


def valid_subsets(mask: Tensor, observed: Tensor) -> Tensor:
    """(S, B) bool: subset s holds only modalities row b observes. mask: (S, M) 0/1; observed: (M, B) bool."""
    return (mask.to(torch.float32) @ (~observed).to(torch.float32)) == 0


def row_weights(weights: Tensor, valid: Tensor) -> Tensor:
    """w_A renormalised over each row's valid subsets: (S, B), every column summing to 1, 0 where not valid.
    weights: (S,); valid: (S, B) bool, every row with a valid subset of positive weight."""
    w = torch.where(valid, weights.to(valid.device)[:, None], 0)
    total = w.sum(0, keepdim=True)
    if not bool((total > 0).all()):
        raise MMBenchError("a batch row has no subset of observed modalities with a positive weight")
    return w / total


def row_assignment(weights: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """One subset per row, row b taking subset s with probability weights[s, b] exactly: (S, B) -> (B,) indices.

    The rows' uniforms are stratified, u_b = (pi(b) + U) / B with pi a random permutation and U one uniform (so
    each u_b is uniform on [0, 1)), and each goes through its own row's inverse CDF: rows with equal weights
    spread over the subsets in proportion to them, as ``stratified_assignment``'s blocks do, and a subset of
    weight 0 is never drawn. The draw uses ``generator``, else torch's global RNG."""
    s, b = weights.shape
    u = (torch.randperm(b, generator=generator).double() + torch.rand((), generator=generator, dtype=torch.float64)) / b
    cdf = torch.cumsum(weights.T.double(), 1)
    cdf = cdf / cdf[:, -1:]  # the last valid subset's entry and all after it are exactly 1 > u
    picked = torch.searchsorted(cdf, u.to(cdf.device)[:, None], right=True).squeeze(1)
    return picked.clamp_max(s - 1)


def masked_subset_posteriors(
    experts: Gaussian, mask: Tensor, observed: Tensor, prior_expert: Tensor | None = None, eps: float = 1e-8
) -> Gaussian:
    """``subset_posteriors`` with each row's product over the experts it observes only: q(z|x_{A & O_b}).

    experts: (M, B, D); mask: (S, M) 0/1; observed: (M, B) bool; prior_expert: (S,) 0/1. Returns (S, B, D). A
    subset with no observed expert in a row is N(0, I) there (with or without the prior expert): callers drop
    such terms."""
    with torch.autocast(experts.mu.device.type, enabled=False):
        precisions = 1.0 / (full_precision(experts.logvar).exp() + eps)
        precisions = torch.where(observed[..., None], precisions, 0)  # (M, B, D)
        mu = torch.where(observed[..., None], full_precision(experts.mu), 0)
        mask = mask.to(precisions.dtype)
        precision = torch.einsum("sm,mbd->sbd", mask, precisions)
        weighted = torch.einsum("sm,mbd->sbd", mask, mu * precisions)
    if prior_expert is not None:
        precision = precision + prior_expert.to(precision.dtype).view(-1, 1, 1)
    precision = torch.where(precision > 0, precision, 1.0)  # no expert at all: N(0, I), no 0/0 in the gradient
    return Gaussian(weighted / precision, -torch.log(precision))


def subset_posteriors(
    experts: Gaussian, mask: Tensor, prior_expert: Tensor | None = None, eps: float = 1e-8
) -> Gaussian:
    """q(z|x_A) for every subset A at once, each a product of the unimodal experts in A.

    experts: unimodal Gaussians stacked on dim 0, shapes (M, ..., D); mask: (S, M) 0/1 (``subset_mask``
    transposed); prior_expert: (S,) 0/1, whether N(0, I) joins subset s's product.
    Returns Gaussians of shape (S, ..., D).  Cost is one (S, M) x (M, B*D) product, so all 2^M - 1
    subsets of MoPoE stay affordable.
    """
    with torch.autocast(experts.mu.device.type, enabled=False):  # fp32 even under bf16 autocast
        precisions = 1.0 / (full_precision(experts.logvar).exp() + eps)
        m, rest = precisions.shape[0], precisions.shape[1:]
        mask = mask.to(precisions.dtype)
        precision = (mask @ precisions.reshape(m, -1)).reshape(-1, *rest)
        weighted = (mask @ (full_precision(experts.mu) * precisions).reshape(m, -1)).reshape(-1, *rest)
    if prior_expert is not None:
        precision = precision + prior_expert.to(precision.dtype).view(-1, *([1] * len(rest)))
    return Gaussian(weighted / precision, -torch.log(precision))

"""Latent-space procedures over the contract: encoder latents and how well two latent samples match."""

from __future__ import annotations

import torch
from torch import Tensor

from mmbench.data.base import MultimodalDataset
from mmbench.model import MultimodalVAE


@torch.no_grad()
def encoder_latents(
    model: MultimodalVAE,
    data: MultimodalDataset,
    *,
    batch_size: int = 500,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Posterior means of the full set, E[q(z | x_1..M)], for every example (N, D); with ``sample`` one draw
    z ~ q(z | x_1..M) per example instead (a sample of the aggregate posterior)."""
    model.eval()
    q = [model.encode(b["x"]) for b in data.batches(batch_size)]
    return torch.cat([p.rsample(generator=generator) if sample else p.mu for p in q])


def _sqrtm_psd(c: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def gaussian_fit_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussian fits of two samples (N, D):
    ||m_a - m_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)."""
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    sa = _sqrtm_psd(ca)
    cross = torch.linalg.eigvalsh(sa @ cb @ sa).clamp_min(0).sqrt().sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(ca) + torch.trace(cb) - 2 * cross)


def moment_errors(a: Tensor, b: Tensor) -> tuple[float, float]:
    """How far sample a's first two moments are from sample b's: ||m_a - m_b||_2 and ||C_a - C_b||_F / ||C_b||_F."""
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    return float((a.mean(0) - b.mean(0)).norm()), float((ca - cb).norm() / cb.norm())

"""The sinusoidal timestep embedding every diffusion network here shares (Vaswani et al. 2017's position
encoding over t, as Ho et al. 2020's UNet embeds timesteps)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def timestep_embedding(t: Tensor, dim: int, scale: float | None = None) -> Tensor:
    """Sinusoidal embedding of scale * t (N,). The process decides the scale (its ``time_scale``); without one, t's
    type does, never its values: integer t are DDPM's discrete timesteps 0..T-1 and are embedded as they are;
    floating-point t are the VP-SDE's continuous times in (0, 1] and are scaled by 1000 to the same range.
    (Guessing from the values embedded a discrete batch of 0s and 1s, ancestral sampling's last step, as t = 1000.)"""
    if scale is None:
        scale = 1000.0 if t.is_floating_point() else 1.0
    t = t.float() * scale
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], -1)

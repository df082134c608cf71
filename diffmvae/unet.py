"""UNets for Diff-MVAE: 2-D over images (the diffusion decoders) and 1-D over latent vectors (the score prior).

One architecture serves both (``dims`` = 2 or 1): residual blocks with GroupNorm and SiLU, a timestep
embedding (sinusoidal, then an MLP) to which an optional conditioning vector z is added through its own
projection, so every block sees (t, z); strided-conv downsampling, nearest upsampling, skip connections.
Inputs whose spatial size is not divisible by 2^(levels-1) are padded and cropped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmbench.errors import MMBenchError


@dataclass(frozen=True)
class UNetConfig:
    """dims: 2 (images) or 1 (vectors); channels: input/output channels; base: width of the first level;
    mults: width multiplier per level (one downsampling between levels); cond_dim: size of z (0: none)."""

    dims: int = 2
    channels: int = 3
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    cond_dim: int = 0
    groups: int = 8

    def __post_init__(self) -> None:
        if self.dims not in (1, 2):
            raise MMBenchError(f"UNet dims must be 1 or 2, got {self.dims}")
        if not self.mults or self.base < self.groups or self.base % self.groups:
            raise MMBenchError(f"UNet base width {self.base} must be a positive multiple of groups {self.groups}")


PRESETS = {
    "image28": UNetConfig(dims=2, channels=3, base=32, mults=(1, 2, 2)),      # 28 -> 14 -> 7
    "image64": UNetConfig(dims=2, channels=3, base=64, mults=(1, 2, 2, 4)),   # 64 -> 32 -> 16 -> 8
    "latent": UNetConfig(dims=1, channels=1, base=32, mults=(1, 2, 2)),
}


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t (N,). The process decides the scale through t's type, never its values:
    integer t are DDPM's discrete timesteps 0..T-1 and are embedded as they are; floating-point t are the
    VP-SDE's continuous times in (0, 1] and are scaled by 1000 to the same range. (Guessing from the values
    embedded a discrete batch of 0s and 1s, ancestral sampling's last step, as t = 1000.)"""
    t = t.float() * 1000.0 if t.is_floating_point() else t.float()
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], -1)


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv1d


class ResBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int, emb: int, groups: int):
        super().__init__()
        conv = _conv(dims)
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = conv(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = conv(cout, cout, 3, padding=1)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e).reshape(*e.shape[:1], -1, *([1] * (x.dim() - 2)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    """s_theta(x_t, t, z): predicts noise (DDPM) or the score (VP-SDE), shaped like x_t."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        conv = _conv(c.dims)
        emb = 4 * c.base
        self.time = nn.Sequential(nn.Linear(c.base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond = nn.Sequential(nn.Linear(c.cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb)) if c.cond_dim else None
        widths = [c.base * m for m in c.mults]
        self.inp = conv(c.channels, c.base, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c.base
        for i, w in enumerate(widths):
            self.down.append(ResBlock(c.dims, prev, w, emb, c.groups))
            self.downsample.append(conv(w, w, 3, stride=2, padding=1) if i + 1 < len(widths) else nn.Identity())
            prev = w
        self.mid = nn.ModuleList([ResBlock(c.dims, prev, prev, emb, c.groups), ResBlock(c.dims, prev, prev, emb, c.groups)])
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(ResBlock(c.dims, prev + w, w, emb, c.groups))
            prev = w
        self.out = nn.Sequential(nn.GroupNorm(min(c.groups, prev), prev), nn.SiLU(), conv(prev, c.channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        c = self.config
        if self.cond is not None and z is None:
            raise MMBenchError("this UNet is conditioned on z (cond_dim > 0); pass z")
        squeeze = c.dims == 1 and x.dim() == 2  # a batch of vectors (N, D) -> (N, 1, D)
        if squeeze:
            x = x.unsqueeze(1)
        size = x.shape[2:]
        factor = 2 ** (len(c.mults) - 1)
        pad = [(-s) % factor for s in size]
        if any(pad):
            x = F.pad(x, [p for q in reversed(pad) for p in (0, q)])
        e = self.time(timestep_embedding(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t, c.base))
        if self.cond is not None:
            e = e + self.cond(z)
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, e)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, e)
        for block in self.up:
            skip = skips.pop()
            if h.shape[2:] != skip.shape[2:]:
                h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), e)
        out = self.out(h)
        out = out[(..., *[slice(0, s) for s in size])] if c.dims == 2 else out[..., : size[0]]
        return out.squeeze(1) if squeeze else out

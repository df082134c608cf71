"""UNets: 2-D over images (Diff-MVAE's diffusion decoders) and 1-D over latent vectors (latent score models).

One architecture serves both (``dims`` = 2 or 1): residual blocks with GroupNorm and SiLU, a timestep
embedding (sinusoidal, then an MLP), strided-conv downsampling, nearest upsampling, skip connections.
Inputs are padded (to ``pad_to``, or to a size divisible by 2^(levels-1)) and the output cropped back.

How z reaches the network (``conditioning``; parts joined by "+" combine):
  "embedding":   z's projection is added to the time embedding, so each block gets a per-channel bias from
                 (t, z) (Ho et al. 2020's class conditioning; the weakest path).
  "scale_shift": each block's second GroupNorm is modulated by z, h = GN(h) (1 + s(z)) + b(z) (adaptive group
                 norm; DiffAE, Preechakul et al. 2022, scales every block's features by z the same way).
  "spatial":     a learned head maps z to feature maps at the input resolution, concatenated to x_t as extra
                 input channels (DiffuseVAE, Pandey et al. 2022, conditions on a z-derived image). The head is
                 part of s_theta(x_t, z, t), so the objective (eq. 23) is unchanged. Images only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmbench.diffusion.embedding import timestep_embedding
from mmbench.errors import MMBenchError

CONDITIONINGS = ("embedding", "scale_shift", "spatial")


def conditioning_parts(conditioning: str, *, field: str = "conditioning") -> tuple[str, ...]:
    """The parts of a conditioning name ("scale_shift+spatial" -> both), each checked."""
    parts = tuple(p.strip() for p in str(conditioning).split("+"))
    bad = [p for p in parts if p not in CONDITIONINGS]
    if bad or len(set(parts)) != len(parts):
        raise MMBenchError(
            f"{field} = {conditioning!r}: use one of {', '.join(CONDITIONINGS)} or several joined "
            f"by '+' (e.g. 'scale_shift+spatial')"
        )
    return parts


@dataclass(frozen=True)
class UNetConfig:
    """dims: 2 (images) or 1 (vectors); channels: input/output channels; base: width of the first level;
    mults: width multiplier per level (one downsampling between levels); cond_dim: size of z (0: none);
    conditioning: how z enters (module docstring); pad_to: pad inputs to this size (0: only as the levels need;
    28x28 PolyMNIST padded to 32 gives levels 32/16/8, as the authors' code pads), cropped back on output;
    spatial_channels: feature maps the "spatial" head adds to x_t."""

    dims: int = 2
    channels: int = 3
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    cond_dim: int = 0
    groups: int = 8
    conditioning: str = "embedding"
    pad_to: int = 0
    spatial_channels: int = 4

    def __post_init__(self) -> None:
        if self.dims not in (1, 2):
            raise MMBenchError(f"UNet dims must be 1 or 2, got {self.dims}")
        if not self.mults or self.base < self.groups or self.base % self.groups:
            raise MMBenchError(f"UNet base width {self.base} must be a positive multiple of groups {self.groups}")
        if "spatial" in conditioning_parts(self.conditioning) and self.dims != 2:
            raise MMBenchError(
                f"conditioning = {self.conditioning!r}: 'spatial' makes feature maps for an image "
                f"UNet; a 1-D UNet takes 'embedding' or 'scale_shift'"
            )
        if self.pad_to < 0 or self.spatial_channels < 1:
            raise MMBenchError(
                f"UNet pad_to must be >= 0 and spatial_channels >= 1, got {self.pad_to}, {self.spatial_channels}"
            )

    @property
    def parts(self) -> tuple[str, ...]:
        return conditioning_parts(self.conditioning) if self.cond_dim else ()


PRESETS = {
    "image28": UNetConfig(dims=2, channels=3, base=32, mults=(1, 2, 2)),  # 28 -> 14 -> 7
    "image64": UNetConfig(dims=2, channels=3, base=64, mults=(1, 2, 2, 4)),  # 64 -> 32 -> 16 -> 8
    "latent": UNetConfig(dims=1, channels=1, base=32, mults=(1, 2, 2)),
}


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv1d


def _per_channel(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(*v.shape[:2], *([1] * (like.dim() - 2)))


class ResBlock(nn.Module):
    """GN-SiLU-conv, + emb(e) per channel, GN (modulated by z when ``modulated``), SiLU-conv, residual."""

    def __init__(self, dims: int, cin: int, cout: int, emb: int, groups: int, modulated: bool = False):
        super().__init__()
        conv = _conv(dims)
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = conv(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.modulation = nn.Linear(emb, 2 * cout) if modulated else None
        self.conv2 = conv(cout, cout, 3, padding=1)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, e: Tensor, zc: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h + _per_channel(self.emb(e), h))
        if self.modulation is not None:
            scale, shift = _per_channel(self.modulation(zc), h).chunk(2, 1)
            h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SpatialHead(nn.Module):
    """z -> ``channels`` feature maps at a given size: a linear map to a coarse 8x8 grid, resized, two convs."""

    grid = 8

    def __init__(self, cond_dim: int, channels: int, width: int):
        super().__init__()
        self.width = width
        self.linear = nn.Linear(cond_dim, width * self.grid * self.grid)
        self.convs = nn.Sequential(
            nn.SiLU(), nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1)
        )

    def forward(self, z: Tensor, size: tuple[int, int]) -> Tensor:
        h = self.linear(z).reshape(z.shape[0], self.width, self.grid, self.grid)
        return self.convs(F.interpolate(h, size=size, mode="bilinear", align_corners=False))


class UNet(nn.Module):
    """s_theta(x_t, t, z): predicts noise (DDPM) or the score (VP-SDE), shaped like x_t."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        conv = _conv(c.dims)
        emb = 4 * c.base
        self.time = nn.Sequential(nn.Linear(c.base, emb), nn.SiLU(), nn.Linear(emb, emb))
        parts = c.parts
        z_mlp = lambda: nn.Sequential(nn.Linear(c.cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb))  # noqa: E731
        self.cond = z_mlp() if "embedding" in parts else None
        self.modulation = z_mlp() if "scale_shift" in parts else None
        self.spatial = SpatialHead(c.cond_dim, c.spatial_channels, c.base) if "spatial" in parts else None
        block = lambda cin, cout: ResBlock(c.dims, cin, cout, emb, c.groups, modulated="scale_shift" in parts)  # noqa: E731
        widths = [c.base * m for m in c.mults]
        self.inp = conv(c.channels + (c.spatial_channels if self.spatial is not None else 0), c.base, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c.base
        for i, w in enumerate(widths):
            self.down.append(block(prev, w))
            self.downsample.append(conv(w, w, 3, stride=2, padding=1) if i + 1 < len(widths) else nn.Identity())
            prev = w
        self.mid = nn.ModuleList([block(prev, prev), block(prev, prev)])
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(block(prev + w, w))
            prev = w
        self.out = nn.Sequential(
            nn.GroupNorm(min(c.groups, prev), prev), nn.SiLU(), conv(prev, c.channels, 3, padding=1)
        )

    def forward(self, x: Tensor, t: Tensor, z: Tensor | None = None, *, time_scale: float | None = None) -> Tensor:
        """eps_theta(x_t, t, z); ``time_scale``: the process's factor on t in the timestep embedding (by t's type
        when None, ``timestep_embedding``)."""
        c = self.config
        if c.cond_dim and z is None:
            raise MMBenchError("this UNet is conditioned on z (cond_dim > 0); pass z")
        squeeze = c.dims == 1 and x.dim() == 2  # a batch of vectors (N, D) -> (N, 1, D)
        if squeeze:
            x = x.unsqueeze(1)
        size = x.shape[2:]
        factor = 2 ** (len(c.mults) - 1)
        padded = [max(c.pad_to, s) for s in size]
        padded = [p + (-p) % factor for p in padded]
        before = [(p - s) // 2 for p, s in zip(padded, size)]  # centred, as the authors pad 28 to 32
        if padded != list(size):
            x = F.pad(x, [v for b, p, s in reversed(list(zip(before, padded, size))) for v in (b, p - s - b)])
        e = self.time(timestep_embedding(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t, c.base, time_scale))
        if self.cond is not None:
            e = e + self.cond(z)
        zc = self.modulation(z) if self.modulation is not None else None
        if self.spatial is not None:
            x = torch.cat([x, self.spatial(z, tuple(x.shape[2:]))], 1)
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, e, zc)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, e, zc)
        for block in self.up:
            skip = skips.pop()
            if h.shape[2:] != skip.shape[2:]:
                h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), e, zc)
        out = self.out(h)
        out = out[(..., *[slice(b, b + s) for b, s in zip(before, size)])]
        return out.squeeze(1) if squeeze else out

"""The score networks of the latent-diffusion papers, as ``LatentDenoiser``s (net(x, t, *, time_scale) -> eps):

UnetMLP         MLD's (their src/components/mlp_unet.py, unet_type "linear"): a UNet-shaped MLP over the
                concatenated latent, the per-modality time vector embedded by a two-layer MLP
LatentGridUNet  SBM-AE's layout (their train_poly_unet_cont.py): each modality's latent, s x s, one channel of
                an M x s x s image, through mmbench's 2-D UNet (theirs is the "annotated diffusion" UNet)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmbench.diffusion.unet import UNet, UNetConfig
from mmbench.errors import MMBenchError


def _norm(width: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, width), width)  # GroupNorm(32) as MLD's code, fewer groups for narrow tests


class ResnetBlock(nn.Module):
    """[GroupNorm-SiLU-Linear](in->out) + SiLU-Linear(time embedding), [GroupNorm-SiLU-Linear](out->out), plus a
    linear skip when in != out (MLD's ResnetBlock, no scale-shift)."""

    def __init__(self, cin: int, cout: int, time_dim: int):
        super().__init__()
        self.block1 = nn.Sequential(_norm(cin), nn.SiLU(), nn.Linear(cin, cout))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, cout))
        self.block2 = nn.Sequential(_norm(cout), nn.SiLU(), nn.Linear(cout, cout))
        self.skip = nn.Linear(cin, cout) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        return self.block2(self.block1(x) + self.time(e)) + self.skip(x)


class UnetMLP(nn.Module):
    """MLD's score network: Linear(D -> width) kept as a long skip r; ``levels`` down levels of [ResnetBlock,
    Linear] (their "downsample" is a Linear), two middle ResnetBlocks, ``levels`` up levels of [ResnetBlock on the
    concatenated skip, Linear], a final ResnetBlock on [h, r], GroupNorm-SiLU-Linear(width -> D) zero-initialised.
    The time embedding is Linear(groups -> time_dim)-GELU-Linear of the raw time vector, one time per modality in
    [0, 1] (no sinusoid; a DDPM's integer steps are divided by 1000)."""

    def __init__(self, dim: int, *, width: int = 1536, levels: int = 2, groups: int = 1, time_dim: int = 512):
        super().__init__()
        self.groups = groups
        self.time = nn.Sequential(nn.Linear(groups, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
        self.inp = nn.Linear(dim, width)
        self.down = nn.ModuleList(ResnetBlock(width, width, time_dim) for _ in range(levels))
        self.downsample = nn.ModuleList(nn.Linear(width, width) for _ in range(levels))
        self.mid = nn.ModuleList(ResnetBlock(width, width, time_dim) for _ in range(2))
        self.up = nn.ModuleList(ResnetBlock(2 * width, width, time_dim) for _ in range(levels))
        self.upsample = nn.ModuleList(nn.Linear(width, width) for _ in range(levels))
        self.final = ResnetBlock(2 * width, width, time_dim)
        self.out = nn.Sequential(_norm(width), nn.SiLU(), nn.Linear(width, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, *, time_scale: float = 1000.0) -> Tensor:
        t = t.reshape(-1, 1).expand(x.shape[0], self.groups) if t.dim() < 2 else t
        e = self.time(t.to(x.dtype) * (time_scale / 1000.0))
        h = r = self.inp(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, e)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, e)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], 1), e))
        return self.out(self.final(torch.cat([h, r], 1), e))


class LatentGridUNet(nn.Module):
    """Latents of M modalities, each of size s^2, as an M x s x s image through a 2-D UNet (one time per example)."""

    def __init__(self, sizes: tuple[int, ...], *, base: int = 64, mults: tuple[int, ...] = (1, 2, 2, 2)):
        super().__init__()
        side = math.isqrt(sizes[0])
        if len(set(sizes)) != 1 or side * side != sizes[0]:
            raise MMBenchError(
                f"score_net = 'unet' needs every modality's latent size to be one square (64 = 8 x 8), got "
                f"{list(sizes)}; set score_net = 'mlp' for other sizes"
            )
        if side % 2 ** (len(mults) - 1):
            raise MMBenchError(
                f"score_net = 'unet': a {side} x {side} latent grid cannot be halved {len(mults) - 1} times "
                f"(score_mults {list(mults)})"
            )
        self.shape = (len(sizes), side, side)
        self.net = UNet(UNetConfig(dims=2, channels=len(sizes), base=base, mults=tuple(mults)))

    def forward(self, x: Tensor, t: Tensor, *, time_scale: float | None = None) -> Tensor:
        if t.dim() == 2:  # one time per example: SBM-AE's score model noises every modality alike
            t = t[:, 0]
        return self.net(x.reshape(-1, *self.shape), t, time_scale=time_scale).reshape(x.shape)

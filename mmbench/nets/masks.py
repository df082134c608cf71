"""Conv encoder/decoder for binary masks (CelebAMask-HQ's combined face-part mask, 1 x 64 x 64 or 1 x 128 x 128).

The Diff-MVAE appendix gives no separate mask network; this is mmbench's own, in the layout of MoPoE's PolyMNIST
nets deepened to the mask's size with DCGAN's halvings (Radford, Metz & Chintala 2016: k4 s2 p1 convolutions).
Encoder: Conv C->32->64->128->256(->256...) (k4 s2 p1, ReLU) down to 4x4, flatten, Linear -> 512 + ReLU, heads
mu and logvar. Decoder: Linear latent -> 256x4x4 + ReLU, ConvT (k4 s2 p1, ReLU) back to S x S and C channels,
no final activation: the output is the Bernoulli likelihood's logits (``objectives.Likelihood``).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision

BOTTLENECK = 4
MAX_WIDTH = 256


def mask_size_fits(size: int) -> bool:
    """Whether the mask nets take S x S masks: S = 4 * 2^k with k >= 1."""
    halvings = (size // BOTTLENECK).bit_length() - 1
    return size >= 2 * BOTTLENECK and size == BOTTLENECK * 2**halvings


def mask_widths(size: int) -> list[int]:
    """Output widths of the encoder's convolutions, one per halving from S to 4: 32, 64, 128, 256, 256, ..."""
    if not mask_size_fits(size):
        raise ValueError(f"the mask nets take square masks of side 4 * 2^k (8, 16, ..., 64, 128), got {size}")
    halvings = (size // BOTTLENECK).bit_length() - 1
    return [min(32 * 2**i, MAX_WIDTH) for i in range(halvings)]


class MaskEncoder(nn.Module):
    """(B, C, S, S) masks in {0, 1} -> Gaussian q(z|x)."""

    def __init__(self, channels: int, size: int, latent_dim: int, hidden: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        fin = channels
        for fout in mask_widths(size):
            layers += [nn.Conv2d(fin, fout, 4, 2, 1), nn.ReLU()]
            fin = fout
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(fin * BOTTLENECK**2, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> Gaussian:
        h = self.features(x)
        # fp32 heads under bf16 autocast: products of experts and KL need the range
        return Gaussian(full_precision(self.mu(h)), full_precision(self.logvar(h)).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class MaskDecoder(nn.Module):
    """z (N, D) -> Bernoulli logits (N, C, S, S)."""

    def __init__(self, latent_dim: int, channels: int, size: int):
        super().__init__()
        widths = mask_widths(size)[::-1]
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, widths[0] * BOTTLENECK**2),
            nn.ReLU(),
            nn.Unflatten(1, (widths[0], BOTTLENECK, BOTTLENECK)),
        ]
        for fin, fout in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(fin, fout, 4, 2, 1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

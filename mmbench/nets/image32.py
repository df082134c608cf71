"""Conv encoder/decoder for 32x32 images (Extended PolyMNIST padded to 32x32): MoPoE's PolyMNIST networks
(``mmbench.nets.polymnist``, after Sutter et al. 2021's code) with the same layers sized for 32x32.

Encoder: Conv C->32->64->128 (k3 s2 p1, ReLU; 32 -> 16 -> 8 -> 4), flatten 2048, Linear 2048->512 + ReLU,
heads mu and logvar. Decoder: Linear latent->2048 + ReLU, 128x4x4, ConvT 128->64->32->C (k3 s2 p1, output
padding 1; 4 -> 8 -> 16 -> 32), no final activation (the likelihood's location, as the 28x28 decoder).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision

IMAGE32_SIZE = 32


class Image32Encoder(nn.Module):
    """(B, C, 32, 32) -> Gaussian q(z|x)."""

    def __init__(self, channels: int, latent_dim: int, hidden: int = 512):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, hidden),
            nn.ReLU(),
        )
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> Gaussian:
        h = self.features(x)
        # fp32 heads under bf16 autocast: products of experts and KL need the range
        return Gaussian(full_precision(self.mu(h)), full_precision(self.logvar(h)).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class Image32Decoder(nn.Module):
    """z (N, D) -> (N, C, 32, 32) location (or logits)."""

    def __init__(self, latent_dim: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 128 * 4 * 4),
            nn.ReLU(),
            nn.Unflatten(1, (128, 4, 4)),
            nn.ConvTranspose2d(128, 64, 3, 2, 1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 3, 2, 1, output_padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

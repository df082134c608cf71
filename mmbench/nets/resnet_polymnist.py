"""The ResNet PolyMNIST networks of MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023, and their code).

Encoder: for each of the two latents (modality-specific w, shared z) its own branch: Conv 3->64 (k3 p1),
ResBlock 64->64, [AvgPool 3/2, ResBlock 64->128], [AvgPool 3/2, ResBlock 128->256] (28 -> 14 -> 7), then
Linear 256*7*7 -> location and -> raw scale. Decoder: Linear -> 256x7x7, ResBlock 256->128, Upsample x2,
ResBlock 128->64, Upsample x2, ResBlock 64->64, LeakyReLU, Conv 64->3. LeakyReLU slope 0.2; residual
branches scaled by 0.1.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)


class ResBlock(nn.Module):
    """x_s + 0.1 * conv(act(conv(act(x)))), with a 1x1 shortcut when the width changes."""

    def __init__(self, fin: int, fout: int):
        super().__init__()
        hidden = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, hidden, 3, padding=1)
        self.conv_1 = nn.Conv2d(hidden, fout, 3, padding=1)
        self.shortcut = nn.Conv2d(fin, fout, 1, bias=False) if fin != fout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + 0.1 * self.conv_1(_act(self.conv_0(_act(x))))


class _Branch(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            ResBlock(64, 64),
            nn.AvgPool2d(3, stride=2, padding=1),
            ResBlock(64, 128),
            nn.AvgPool2d(3, stride=2, padding=1),
            ResBlock(128, 256),
            nn.Flatten(),
        )
        self.loc = nn.Linear(256 * 7 * 7, dim)
        self.raw_scale = nn.Linear(256 * 7 * 7, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.loc(h), self.raw_scale(h)


class ResNetPolyMNISTEncoder(nn.Module):
    """Two branches: returns (loc_w, raw_w, loc_z, raw_z); the model maps raw values to scales."""

    def __init__(self, private_dim: int, shared_dim: int):
        super().__init__()
        self.w = _Branch(private_dim)
        self.z = _Branch(shared_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (*self.w(x), *self.z(x))


class ResNetPolyMNISTDecoder(nn.Module):
    """Latent (w, z) concatenated -> 3x28x28 Laplace location."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc = nn.Linear(latent_dim, 256 * 7 * 7)
        self.body = nn.Sequential(
            ResBlock(256, 128),
            nn.Upsample(scale_factor=2),
            ResBlock(128, 64),
            nn.Upsample(scale_factor=2),
            ResBlock(64, 64),
        )
        self.out = nn.Conv2d(64, 3, 3, padding=1)

    def forward(self, u: Tensor) -> Tensor:
        return self.out(_act(self.body(self.fc(u).view(-1, 256, 7, 7))))

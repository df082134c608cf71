"""The ResNet image encoder/decoder of Soft-IntroVAE (Daniel & Tamar, CVPR 2021; github
taldatech/soft-intro-vae-pytorch, soft_intro_vae/train_soft_intro_vae.py), which the Diff-MVAE appendix
names for CUB (64x64) and CelebAMask-HQ (64x64 / 128x128).

Encoder: Conv 5x5 C->c0 (BN, LeakyReLU 0.2), AvgPool 2; for each next width c_i: ResidualBlock(c_{i-1}, c_i),
AvgPool 2; ResidualBlock(c_last, c_last); flatten (c_last x 4 x 4); Linear -> mu and logvar.
Decoder: Linear z -> c_last x 4 x 4 + ReLU; for each width from the last: ResidualBlock, nearest Upsample x2;
ResidualBlock; Conv 5x5 -> C (no final activation: the likelihood's location or logits).
Widths: (64, 128, 256, 512) at 64x64 and (64, 128, 256, 512, 512) at 128x128, as the reference code's
celeb128 preset (the 64x64 list is that preset one level shorter).
Departure: the reference predicts (mu, logvar) with one Linear and chunks it; here two heads, fp32 and clamped
as every mmbench encoder.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision

# The reference's widths per image size; one halving per width takes the image to 4x4.
SOFTINTRO_WIDTHS: dict[int, tuple[int, ...]] = {64: (64, 128, 256, 512), 128: (64, 128, 256, 512, 512)}


def _widths_and_bottleneck(image_size: int, widths: tuple[int, ...] | None) -> tuple[tuple[int, ...], int]:
    """The widths (the reference's preset when None) and the side of the feature maps after one halving per width."""
    widths = tuple(widths or SOFTINTRO_WIDTHS.get(image_size, ()))
    if not widths or image_size % 2 ** len(widths):
        raise ValueError(
            f"no Soft-IntroVAE widths for {image_size}x{image_size} images: give widths whose count of "
            f"halvings divides the size (presets: {sorted(SOFTINTRO_WIDTHS)})"
        )
    return widths, image_size // 2 ** len(widths)


class SoftIntroResidualBlock(nn.Module):
    """LeakyReLU(BN(conv3(LeakyReLU(BN(conv3(x))))) + shortcut(x)), a 1x1 conv shortcut when widths differ."""

    def __init__(self, fin: int, fout: int):
        super().__init__()
        self.shortcut = nn.Conv2d(fin, fout, 1, bias=False) if fin != fout else nn.Identity()
        self.branch = nn.Sequential(
            nn.Conv2d(fin, fout, 3, padding=1, bias=False),
            nn.BatchNorm2d(fout),
            nn.LeakyReLU(0.2),
            nn.Conv2d(fout, fout, 3, padding=1, bias=False),
            nn.BatchNorm2d(fout),
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class SoftIntroEncoder(nn.Module):
    """(B, C, S, S) images -> Gaussian q(z|x); S = 4 * 2^len(widths)."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, widths: tuple[int, ...] | None = None):
        super().__init__()
        widths, side = _widths_and_bottleneck(image_size, widths)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 5, padding=2, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.LeakyReLU(0.2),
            nn.AvgPool2d(2),
        ]
        for fin, fout in zip(widths, widths[1:]):
            layers += [SoftIntroResidualBlock(fin, fout), nn.AvgPool2d(2)]
        layers += [SoftIntroResidualBlock(widths[-1], widths[-1]), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        flat = widths[-1] * side * side
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

    def forward(self, x: Tensor) -> Gaussian:
        h = self.features(x)
        # fp32 heads under bf16 autocast: products of experts and KL need the range
        return Gaussian(full_precision(self.mu(h)), full_precision(self.logvar(h)).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class SoftIntroDecoder(nn.Module):
    """z (N, D) -> (N, C, S, S): the likelihood's location (or logits), no final activation."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, widths: tuple[int, ...] | None = None):
        super().__init__()
        widths, side = _widths_and_bottleneck(image_size, widths)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, widths[-1] * side * side), nn.ReLU(), nn.Unflatten(1, (widths[-1], side, side))
        )
        layers: list[nn.Module] = []
        fin = widths[-1]
        for fout in reversed(widths):
            layers += [SoftIntroResidualBlock(fin, fout), nn.Upsample(scale_factor=2, mode="nearest")]
            fin = fout
        layers += [SoftIntroResidualBlock(fin, fin), nn.Conv2d(fin, channels, 5, padding=2)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.fc(z))

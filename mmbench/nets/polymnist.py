"""The PolyMNIST networks of MoPoE's reference code (shared by MoPoE, MVTCAE, MVAE, MMVAE there)."""

from __future__ import annotations

from torch import Tensor, nn

from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision


class PolyMNISTEncoder(nn.Module):
    """Conv 3->32->64->128 (k3 s2 p1, ReLU; 28->14->7->4), Linear 2048->512 + ReLU, heads mu and logvar."""

    def __init__(self, latent_dim: int, hidden: int = 512):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2048, hidden),
            nn.ReLU(),
        )
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> Gaussian:
        h = self.features(x)
        # fp32 heads under bf16 autocast: products of experts and KL need the range
        return Gaussian(full_precision(self.mu(h)), full_precision(self.logvar(h)).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class PolyMNISTDecoder(nn.Module):
    """Linear latent->2048 + ReLU, 128x4x4, ConvT 128->64->32->3 (4->7->14->28).

    The raw output is the Laplace location, with no final activation, as in MoPoE's code and MultiVae's
    reproduction of it (a sigmoid there scales the likelihood's gradient by at most 1/4 and, on
    PolyMNIST, keeps the decoders on the background for thousands of steps).
    """

    def __init__(self, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2048),
            nn.ReLU(),
            nn.Unflatten(1, (128, 4, 4)),
            nn.ConvTranspose2d(128, 64, 3, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 3, 2, 1, output_padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

"""MLP encoder/decoder for modalities without a dedicated network (attributes, small vectors, categorical
vectors other than captions)."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision


class MLPEncoder(nn.Module):
    """Flatten, two hidden layers with ReLU, heads mu and logvar. With ``classes`` the input holds category
    indices and is one-hot encoded first (in_shape x classes inputs)."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int, hidden: int = 512, classes: int = 0):
        super().__init__()
        self.classes = classes
        inputs = math.prod(in_shape) * (classes or 1)
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> Gaussian:
        x = F.one_hot(x.long(), self.classes) if self.classes else x
        h = self.body(x.float())
        # fp32 heads under bf16 autocast: products of experts and KL need the range
        return Gaussian(full_precision(self.mu(h)), full_precision(self.logvar(h)).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class MLPDecoder(nn.Module):
    """Two hidden layers with ReLU, output reshaped to out_shape (no final activation); with ``classes``, logits
    of shape (*out_shape, classes) for a categorical likelihood."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], hidden: int = 512, classes: int = 0):
        super().__init__()
        self.out_shape = tuple(out_shape) + ((classes,) if classes else ())
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, math.prod(self.out_shape)),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.out_shape)

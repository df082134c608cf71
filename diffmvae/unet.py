"""Diff-MVAE's UNets: they live in ``mmbench.diffusion.unet`` (shared with the latent score models); this module
re-exports them."""

from mmbench.diffusion.embedding import timestep_embedding
from mmbench.diffusion.unet import CONDITIONINGS, PRESETS, ResBlock, SpatialHead, UNet, UNetConfig, conditioning_parts

__all__ = [
    "CONDITIONINGS",
    "PRESETS",
    "ResBlock",
    "SpatialHead",
    "UNet",
    "UNetConfig",
    "conditioning_parts",
    "timestep_embedding",
]

"""Diffusion shared by every model that uses one: processes, losses and samplers (``processes``), the timestep
embedding (``embedding``), the UNets (``unet``), and the score model over latent vectors (``latent``).

    processes  DDPM (Ho et al. 2020) with DDIM (Song et al. 2021a) and ancestral sampling; the VP-SDE (Song et al.
               2021b) with Euler-Maruyama and predictor-corrector sampling; ``multi_time_loss`` (a time per
               dimension); the inpainting hook ``Condition``; exact Gaussian denoisers for tests
    embedding  ``timestep_embedding``, the sinusoidal embedding of t
    unet       ``UNet``: 2-D over images (Diff-MVAE's decoders), 1-D over latent vectors
    latent     ``LatentScoreModel``: a denoiser (1-D UNet or MLP) + a process + loss + samplers over latents,
               standardised per dimension, with per-group times and conditional (masked) sampling

Part of the core: it imports no machinery layer and no plugin; plugins (``diffmvae``, latent-diffusion models)
import it.
"""

from mmbench.diffusion.embedding import timestep_embedding
from mmbench.diffusion.latent import LatentMLP, LatentScoreConfig, LatentScoreModel
from mmbench.diffusion.processes import (
    DDPM,
    VPSDE,
    WEIGHTINGS,
    Condition,
    DDPMSchedule,
    Denoiser,
    DiffusionProcess,
    ddpm_loss,
    dsm_loss,
    multi_time_loss,
    noise_weight,
    sample_ancestral,
    sample_ddim,
    sample_euler_maruyama,
    score_from_noise_model,
)
from mmbench.diffusion.unet import UNet, UNetConfig

__all__ = [
    "DDPM",
    "VPSDE",
    "WEIGHTINGS",
    "Condition",
    "DDPMSchedule",
    "Denoiser",
    "DiffusionProcess",
    "LatentMLP",
    "LatentScoreConfig",
    "LatentScoreModel",
    "UNet",
    "UNetConfig",
    "ddpm_loss",
    "dsm_loss",
    "multi_time_loss",
    "noise_weight",
    "sample_ancestral",
    "sample_ddim",
    "sample_euler_maruyama",
    "score_from_noise_model",
    "timestep_embedding",
]

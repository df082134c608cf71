"""Diff-MVAE's diffusion processes, losses and samplers: they live in ``mmbench.diffusion.processes`` (shared with
the latent score models); this module re-exports them."""

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
    gaussian_ddpm_eps,
    gaussian_eps,
    gaussian_vp_score,
    multi_time_loss,
    noise_weight,
    sample_ancestral,
    sample_ddim,
    sample_euler_maruyama,
    score_from_noise_model,
)

__all__ = [
    "DDPM",
    "VPSDE",
    "WEIGHTINGS",
    "Condition",
    "DDPMSchedule",
    "Denoiser",
    "DiffusionProcess",
    "ddpm_loss",
    "dsm_loss",
    "gaussian_ddpm_eps",
    "gaussian_eps",
    "gaussian_vp_score",
    "multi_time_loss",
    "noise_weight",
    "sample_ancestral",
    "sample_ddim",
    "sample_euler_maruyama",
    "score_from_noise_model",
]

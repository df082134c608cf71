"""Diff-MVAE and Diff-MVAE*: diffusion decoders inside the subset-mixture ELBO (eq. 23 of the appendix).

    sum_A w_A { E_q(z|x_A) [ sum_{i ff} log p(x_i|z) - sum_{j diff} E_t lambda(t)/2 || grad log p_t(x_jt|x_j, z)
                - s_theta(x_jt, z, t) ||^2 ] - beta KL(q(z|x_A) || p(z)) }                          (eq. 23)

Each modality has exactly one decoder: feed-forward (its likelihood) or a UNet diffusion decoder
conditioned on z. Encoders, subsets and fusion are MoPoE's (mixture over all subsets of products of
experts); the encoder learns through the diffusion loss, since z enters the UNet. Diff-MVAE uses the
VP-SDE with denoising score matching and Euler-Maruyama sampling (1000 steps); Diff-MVAE* uses DDPM
timesteps with the noise-prediction loss and DDIM sampling (50 steps). Diffusion runs on images and masks
scaled to [-1, 1]; samples are mapped back to [0, 1].

The paper's "lambda = 1e-5" (CUB, CelebAMask-HQ) is ``beta`` here: the weight of KL(q(z|x_A) || p(z))
in eq. 23, with every modality's term averaged over its dimensions (``average_over_dims``), the
setting under which the paper also ran MoPoE with beta 1e-5 to make the comparison like for like.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from diffmvae.diffusion import DDPM, VPSDE, WEIGHTINGS, Denoiser, DiffusionProcess
from diffmvae.unet import UNet, UNetConfig, conditioning_parts
from mmbench.config import check_choice, check_range
from mmbench.diffusion.processes import DDPM_TIMESTEPS
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian
from mmbench.mixture import SubsetMixtureConfig, SubsetMixtureVAE
from mmbench.modality import Modality
from mmbench.nets import default_decoder, default_encoder
from mmbench.objectives import Likelihood
from mmbench.registry import register_model
from mmbench.unimodal import decoded_log_prob, decoded_mean, stacked_experts

DIFFUSION_KINDS = ("image", "mask")


def diffusable(m: Modality) -> bool:
    """Whether a diffusion decoder can take modality m: an image or mask (C x H x W, values in [0, 1]; masks in
    {0, 1} diffuse as images do), not categorical. Text and attributes keep their feed-forward decoders."""
    return m.kind in DIFFUSION_KINDS and len(m.shape) == 3 and m.likelihood != "categorical"


@dataclasses.dataclass(frozen=True)
class DiffMVAEConfig(SubsetMixtureConfig):  # prior_expert, estimator, kl_estimator, likelihood_scale: the base's
    """Diff-MVAE (continuous VP-SDE, Euler-Maruyama sampling), eq. 23. Defaults: beta (the paper's lambda) 1e-5
    with dimension-averaged terms, MoPoE's encoders and subsets, latent 512, Adam 5e-4, batch 256; conditioning,
    weighting and free bits from the ablation (docs/benchmarks.md, "Why Diff-MVAE's defaults").

    diffusion:         modalities with a diffusion decoder; ["*"] = every image and mask modality, [] = none.
    unet_base, unet_mults: UNet width and per-level multipliers (28x28 preset: 32, (1, 2, 2)).
    sampler_steps:     Euler-Maruyama steps (Diff-MVAE) or DDIM steps (Diff-MVAE*).
    ddim_eta:          DDIM's eta (Diff-MVAE* only).
    average_over_dims: divide each modality's log-likelihood / score-matching term by its dimension.
    conditioning:      how z enters each UNet: "embedding", "scale_shift", "spatial", or parts joined by "+".
    weighting:         the time weighting lambda(t) of the denoising loss: "variance", "likelihood" or "high_noise".
    free_bits:         KL floor in nats per latent dimension (0: off, eq. 23 exactly).
    logvar_offset:     added to every unimodal expert's log-variance (0: off).
    pad_to:            pad images to this size inside the UNet, outputs cropped back (0: off; 32 for PolyMNIST).
    warmup_epochs:     KL annealing from 0 to beta over this many epochs (0: none, the paper's setting).
    """

    latent_dim: int = 512
    beta: float = 1e-5
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 300
    diffusion: tuple[str, ...] = ("*",)
    unet_base: int = 32
    unet_mults: tuple[int, ...] = (1, 2, 2)
    sampler_steps: int = 1000
    ddim_eta: float = 0.0
    average_over_dims: bool = True
    warmup_epochs: float = 0.0
    conditioning: str = "spatial"
    weighting: str = "high_noise"
    free_bits: float = 3.0
    logvar_offset: float = 0.0
    pad_to: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        conditioning_parts(self.conditioning, field=f"{type(self).__name__}.conditioning")
        check_choice(self, "weighting", WEIGHTINGS)
        check_range(self, "free_bits", lo=0.0)
        check_range(self, "logvar_offset", lo=-20.0, hi=20.0)
        check_range(self, "pad_to", lo=0)
        check_range(self, "sampler_steps", lo=1)
        check_range(self, "warmup_epochs", lo=0.0)
        check_range(self, "ddim_eta", lo=0.0)
        check_range(self, "unet_base", lo=8)


@dataclasses.dataclass(frozen=True)
class DiffMVAEStarConfig(DiffMVAEConfig):
    """Diff-MVAE* (discrete DDPM timesteps, T = 1000 linear betas, DDIM sampling with 50 steps)."""

    sampler_steps: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "sampler_steps", lo=1, hi=DDPM_TIMESTEPS)  # DDIM visits at most the schedule's T steps


class _DiffusionMVAE(SubsetMixtureVAE):
    """Shared body of both variants: eq. 23, MoPoE's subset mixture (``SubsetMixtureVAE``) with a UNet diffusion
    decoder per diffusion modality; subclasses choose the process (``make_process``)."""

    config: DiffMVAEConfig

    def __init__(self, modalities: Sequence[Modality], config: DiffMVAEConfig | None = None):
        super().__init__(modalities, config)
        cfg = self.config
        names = self.modality_names
        every = list(cfg.diffusion) == ["*"]
        wanted = [m.name for m in self.modalities if diffusable(m)] if every else list(cfg.diffusion)
        unknown = [m for m in wanted if m not in names]
        if unknown:
            raise MMBenchError(
                f"{type(self).__name__}.diffusion names unknown modalities {unknown}; modalities: {names}"
            )
        by_name = {m.name: m for m in self.modalities}
        for m in wanted:
            if not diffusable(by_name[m]):
                raise MMBenchError(
                    f"modality {m!r} is marked for a diffusion decoder but is a {by_name[m].kind} "
                    f"of shape {by_name[m].shape}, not an image or mask (C x H x W); remove it from "
                    f"'diffusion'"
                )
        self.diffusion_names = [m for m in names if m in wanted]
        self.encoders = nn.ModuleDict({m.name: default_encoder(m, cfg.latent_dim) for m in self.modalities})
        self.decoders = nn.ModuleDict(
            {
                m.name: UNet(
                    UNetConfig(
                        dims=2,
                        channels=m.shape[0],
                        base=cfg.unet_base,
                        mults=tuple(cfg.unet_mults),
                        cond_dim=cfg.latent_dim,
                        conditioning=cfg.conditioning,
                        pad_to=cfg.pad_to,
                    )
                )
                if m.name in self.diffusion_names
                else default_decoder(m, cfg.latent_dim)
                for m in self.modalities
            }
        )
        self.likelihoods = {m.name: Likelihood(m.likelihood, cfg.likelihood_scale) for m in self.modalities}
        self.process = self.make_process(cfg)

    @staticmethod
    @abc.abstractmethod
    def make_process(config: DiffMVAEConfig) -> DiffusionProcess:
        """The diffusion process of every diffusion decoder (``diffusion.DiffusionProcess``)."""

    # -- encoding -----------------------------------------------------------------------------------
    def experts(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
        experts = stacked_experts(self.encoders, x, names)
        offset = self.config.logvar_offset
        return Gaussian(experts.mu, experts.logvar + offset) if offset else experts

    # -- the per-modality terms of eq. 23 -----------------------------------------------------------
    def eps_model(self, m: str, z: Tensor) -> Denoiser:
        """Modality m's UNet conditioned on z: the noise prediction eps_theta(x_t, t, z), t embedded with the
        process's ``time_scale``."""
        net, scale = self.decoders[m], self.process.time_scale

        def eps(xt: Tensor, t: Tensor) -> Tensor:
            return net(xt, t, z, time_scale=scale)

        return eps

    def diffusion_loss(self, m: str, x0: Tensor, z: Tensor) -> Tensor:
        """Per-example denoising loss of modality m's decoder conditioned on z (x0 in [0, 1], diffused in [-1, 1])."""
        return self.process.loss(self.eps_model(m, z), x0 * 2 - 1, weighting=self.config.weighting)

    def log_likelihoods(self, x: Mapping[str, Tensor], z: Tensor, rows: Tensor) -> dict[str, Tensor]:
        """log p(x_i|z) for feed-forward modalities and minus the score-matching loss for diffusion ones (eq. 23)."""
        out = {}
        for m in self.modality_names:
            target = x[m][rows]
            if m in self.diffusion_names:
                term = -self.diffusion_loss(m, target, z)
            else:
                term = decoded_log_prob(self.decoders[m], self.likelihoods[m], target, z)
            out[m] = term / math.prod(target.shape[1:]) if self.config.average_over_dims else term
        return out

    def log_terms(self, log_likelihood: Mapping[str, Tensor]) -> dict[str, float]:
        """The log's per-modality entries "term/<m>": eq. 23's terms as they enter the ELBO (log-likelihoods and
        minus the denoising losses)."""
        return {f"term/{m}": v.mean().item() for m, v in log_likelihood.items()}

    # -- decoding by sampling -----------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        """Feed-forward means; diffusion modalities are sampled conditioned on z by the process's sampler, the
        x_0 predictions clipped to the image range [-1, 1]."""
        out = {}
        for m in modalities or self.modality_names:
            if m not in self.diffusion_names:
                out[m] = decoded_mean(self.decoders[m], self.likelihoods[m], z)
                continue
            shape = (z.shape[0], *next(mm.shape for mm in self.modalities if mm.name == m))
            noise = torch.randn(shape, generator=generator).to(z.device)
            x = self.process.sample(
                self.eps_model(m, z), noise, steps=self.config.sampler_steps, clip=1.0, generator=generator
            )
            out[m] = ((x + 1) / 2).clamp(0, 1)
        return out


@register_model("diffmvae")
class DiffMVAE(_DiffusionMVAE):
    """Diff-MVAE (Wesego & Rooshenas): score-based (VP-SDE) diffusion decoders in the subset-mixture ELBO, Euler-Maruyama sampling.
    Missing modalities: as MoPoE (``SubsetMixtureVAE``): a row's observed subsets, terms of observed modalities."""

    display_name = "Diff-MVAE"
    Config = DiffMVAEConfig

    @staticmethod
    def make_process(config: DiffMVAEConfig) -> DiffusionProcess:
        return VPSDE()


@register_model("diffmvae_star")
class DiffMVAEStar(_DiffusionMVAE):
    """Diff-MVAE* (Wesego & Rooshenas): DDPM diffusion decoders (discrete timesteps) in the subset-mixture ELBO, DDIM sampling.
    Missing modalities: as MoPoE (``SubsetMixtureVAE``): a row's observed subsets, terms of observed modalities."""

    display_name = "Diff-MVAE*"
    Config = DiffMVAEStarConfig

    @staticmethod
    def make_process(config: DiffMVAEConfig) -> DiffusionProcess:
        return DDPM(eta=config.ddim_eta)

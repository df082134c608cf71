"""The auxiliary score-based prior: a DDPM over latent vectors that replaces N(0, I) for generation.

It is fitted after training on latents a registered model's encoder produces (posterior means of the
full set by default) and used through the contract alone: ``model.generate(n, z=prior.sample(n))``.
Latents are standardised per dimension before the diffusion (and mapped back after sampling); the
denoiser is the 1-D UNet over the latent vector; sampling is DDIM with 50 steps (Diff-MVAE appendix 6.3).
The diffusion itself is ``mmbench.diffusion.LatentScoreModel``'s (net "unet", process "ddpm"); this class adds
its fitting loop, its config and its file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from mmbench.config import build_config, check_range
from mmbench.diffusion import LatentScoreConfig, LatentScoreModel
from mmbench.diffusion.processes import DDPM_TIMESTEPS
from mmbench.errors import MMBenchError
from mmbench.registry import register_prior
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint


@dataclasses.dataclass(frozen=True)
class ScorePriorConfig:
    """base, mults: the 1-D UNet's width and levels; steps: optimiser steps; sampler_steps: DDIM steps (at most
    the schedule's 1000 timesteps)."""

    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-4
    sampler_steps: int = 50

    def __post_init__(self) -> None:
        for f in ("steps", "batch_size"):
            check_range(self, f, lo=1)
        check_range(self, "sampler_steps", lo=1, hi=DDPM_TIMESTEPS)  # DDIM visits at most the schedule's T steps
        check_range(self, "lr", lo=0.0, lo_open=True)


@register_prior("score")
class ScorePrior(LatentScoreModel):
    """Score-based prior (Diff-MVAE): a DDPM over standardised latents, sampled with DDIM."""

    Config = ScorePriorConfig

    def __init__(self, latent_dim: int, config: ScorePriorConfig | None = None):
        config = config or ScorePriorConfig()
        super().__init__(
            latent_dim,
            LatentScoreConfig(
                net="unet",
                base=config.base,
                mults=tuple(config.mults),
                process="ddpm",
                sampler_steps=config.sampler_steps,
            ),
        )
        self.config = config

    def fit(self, latents: Tensor, *, seed: int = 0, progress: bool = True) -> list[float]:
        """Train on latents (N, D); returns the loss per step."""
        if latents.dim() != 2 or latents.shape[1] != self.latent_dim:
            raise MMBenchError(f"latents have shape {tuple(latents.shape)}, expected (N, {self.latent_dim})")
        self.to(latents.device)  # the prior trains where the latents are (the run's device)
        self.fit_standardisation(latents)
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)
        losses = []
        self.train()
        for _ in tqdm(range(self.config.steps), desc="score prior", unit="step", disable=not progress, leave=False):
            rows = torch.randint(0, len(latents), (min(self.config.batch_size, len(latents)),), generator=g)
            loss = self.loss(latents[rows], generator=g).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        self.eval()
        return losses

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            {"latent_dim": self.latent_dim, "config": dataclasses.asdict(self.config), "state_dict": self.state_dict()},
        )

    @classmethod
    def load(cls, path: Path) -> "ScorePrior":
        payload = load_checkpoint(path)
        prior = cls(payload["latent_dim"], build_config(ScorePriorConfig, payload["config"]))
        prior.load_state_dict(payload["state_dict"])
        return prior.eval()

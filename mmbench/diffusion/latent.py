"""A score model over latent vectors: a denoiser network, a diffusion process, its loss and samplers.

Diff-MVAE's auxiliary score prior is one (a DDPM over standardised latents, the 1-D UNet, DDIM); latent-diffusion
models over concatenated unimodal latents (SBM-AE, MLD) are others. Latents may be split into ``groups`` (one per
modality, sizes summing to the latent size): the network then takes one diffusion time per group, (N, groups),
which MLD's multi-time loss needs; a single time per example (N,) is broadcast to every group.

Conditioning on an observed part (``sample(..., observed=, mask=)``; mask True where a dimension is observed):
  "replace": the inpainting sampler (Song et al. 2021b, appendix I.2): after every step the observed dimensions
             are replaced by a fresh draw of q(x_t | x_obs) at the sampler's current time, the network sees the
             joint; any unconditionally trained model serves. Exact only as the steps go to infinity and only
             approximately then (the replaced noise is independent of the unobserved trajectory).
  "clean":   the observed dimensions stay at their clean values throughout and the network is told so by a
             diffusion time of 0 for their groups (MLD's masked sampler); needs a network trained with
             ``loss(..., mask=)`` and per-group times, and a mask made of whole groups.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmbench.config import check_choice, check_range
from mmbench.diffusion.embedding import timestep_embedding
from mmbench.diffusion.processes import (
    DDPM,
    DDPM_TIMESTEPS,
    VPSDE,
    WEIGHTINGS,
    DiffusionProcess,
    multi_time_loss,
)
from mmbench.diffusion.unet import UNet, UNetConfig
from mmbench.errors import MMBenchError

NETS = ("unet", "mlp")
PROCESSES = ("ddpm", "vpsde")
CONDITIONAL_MODES = ("replace", "clean")


class LatentDenoiser(Protocol):
    """eps_theta(x_t, t) over latent vectors (N, D); t: (N,) or (N, groups) in the process's units, embedded with
    the process's ``time_scale``."""

    def __call__(self, x: Tensor, t: Tensor, *, time_scale: float) -> Tensor: ...


@dataclasses.dataclass(frozen=True)
class LatentScoreConfig:
    """net: the denoiser, "unet" (1-D UNet over the latent vector: base, mults) or "mlp" (hidden, depth);
    process: "ddpm" (T = 1000 linear betas, DDIM with eta) or "vpsde" (beta(t) from beta_min to beta_max;
    Euler-Maruyama with corrector_steps Langevin steps of signal-to-noise ratio snr, predictor-corrector when
    > 0); weighting: the loss's time weighting (``noise_weight``);
    standardise: diffuse (z - mean) / std per dimension, mean and std from ``fit_standardisation``;
    sampler_steps: sampler steps when ``sample`` is given none (DDIM: at most the schedule's 1000 timesteps)."""

    net: str = "unet"
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    hidden: int = 512
    depth: int = 3
    process: str = "ddpm"
    eta: float = 0.0
    corrector_steps: int = 0
    weighting: str = "variance"
    standardise: bool = True
    sampler_steps: int = 50
    beta_min: float = 0.1
    beta_max: float = 20.0
    snr: float = 0.16

    def __post_init__(self) -> None:
        check_choice(self, "net", NETS)
        check_choice(self, "process", PROCESSES)
        check_choice(self, "weighting", WEIGHTINGS)
        for f in ("base", "hidden", "depth", "sampler_steps"):
            check_range(self, f, lo=1)
        check_range(self, "eta", lo=0.0)
        check_range(self, "corrector_steps", lo=0)
        check_range(self, "beta_min", lo=0.0, lo_open=True)
        check_range(self, "beta_max", lo=self.beta_min)
        check_range(self, "snr", lo=0.0, lo_open=True)
        if self.process == "ddpm":  # DDIM walks a subset of the schedule's timesteps
            check_range(self, "sampler_steps", lo=1, hi=DDPM_TIMESTEPS)

    def make_process(self) -> DiffusionProcess:
        if self.process == "ddpm":
            return DDPM(eta=self.eta)
        return VPSDE(self.beta_min, self.beta_max, corrector_steps=self.corrector_steps, snr=self.snr)


class LatentMLP(nn.Module):
    """eps_theta(x_t, t) as an MLP: each group's time embedded (sinusoidal, ``emb`` wide), the embeddings
    concatenated and mapped to ``hidden`` by a two-layer MLP, added to every residual block's input;
    blocks h <- h + Linear(SiLU(h + e))."""

    def __init__(self, dim: int, *, hidden: int = 512, depth: int = 3, groups: int = 1, emb: int = 64):
        super().__init__()
        self.groups, self.emb = groups, emb
        self.time = nn.Sequential(nn.Linear(groups * emb, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor, *, time_scale: float | None = None) -> Tensor:
        t = t.reshape(-1, 1).expand(x.shape[0], self.groups) if t.dim() < 2 else t
        e = self.time(torch.cat([timestep_embedding(t[:, k], self.emb, time_scale) for k in range(self.groups)], 1))
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(F.silu(h + e))
        return self.out(F.silu(h))


class LatentScoreModel(nn.Module):
    """A diffusion model over latent vectors z (N, latent_dim): ``loss`` to train it, ``sample`` to draw from it
    (unconditionally, or with an observed part fixed). ``net`` replaces the configured network by any
    ``LatentDenoiser``; ``groups``: the sizes of the latent's parts (one per modality), default one part."""

    def __init__(
        self,
        latent_dim: int,
        config: LatentScoreConfig | None = None,
        *,
        groups: Sequence[int] | None = None,
        net: nn.Module | None = None,
    ):
        super().__init__()
        self.latent_config = c = config or LatentScoreConfig()
        self.latent_dim = latent_dim
        self.groups = tuple(int(g) for g in (groups or (latent_dim,)))
        if min(self.groups) < 1 or sum(self.groups) != latent_dim:
            raise MMBenchError(f"latent groups {list(self.groups)} must be positive and sum to {latent_dim}")
        if net is None and c.net == "unet":
            if len(self.groups) > 1:
                raise MMBenchError("net = 'unet' takes one diffusion time per example; latent groups need net = 'mlp'")
            net = UNet(UNetConfig(dims=1, channels=1, base=c.base, mults=tuple(c.mults)))
        elif net is None:
            net = LatentMLP(latent_dim, hidden=c.hidden, depth=c.depth, groups=len(self.groups))
        self.net = net
        self.process = c.make_process()
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))

    # -- standardisation ------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_standardisation(self, latents: Tensor) -> None:
        """mean and std per dimension from latents (N, D) (std floored at 1e-6); identity when not standardising."""
        self._check(latents, "latents")
        if self.latent_config.standardise:
            self.mean.copy_(latents.mean(0))
            self.std.copy_(latents.std(0).clamp_min(1e-6))

    def normalise(self, z: Tensor) -> Tensor:
        return (z - self.mean) / self.std if self.latent_config.standardise else z

    def denormalise(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean if self.latent_config.standardise else x

    # -- the network ----------------------------------------------------------------------------------
    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        """The network's noise prediction at x_t (standardised units); t: (N,), or (N, groups) per group."""
        if t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]
        return self.net(x, t, time_scale=self.process.time_scale)

    def _per_dim(self, t: Tensor) -> Tensor:
        """(N,) or (N, groups) times -> (N, D), each group's time repeated over its dimensions."""
        sizes = torch.tensor(self.groups, device=t.device)
        t = t.reshape(-1, 1).expand(-1, len(self.groups)) if t.dim() == 1 else t
        return t.repeat_interleave(sizes, dim=1)

    def _group_times(self, t_dim: Tensor) -> Tensor:
        """(N, D) times constant over each group -> (N, groups)."""
        starts = torch.tensor([0, *self.groups[:-1]], device=t_dim.device).cumsum(0)
        return t_dim[:, starts]

    def _group_mask(self, mask: Tensor, n: int) -> Tensor:
        """(D,) or (N, D) mask -> (N, groups), refused unless every group is wholly observed or wholly not."""
        mask = mask.to(torch.bool).expand(n, self.latent_dim)
        parts = torch.split(mask, self.groups, dim=1)
        if any(bool((p.any(1) != p.all(1)).any()) for p in parts):
            raise MMBenchError(f"mask must observe whole latent groups {list(self.groups)} for the 'clean' sampler")
        return torch.stack([p[:, 0] for p in parts], 1)

    # -- training -------------------------------------------------------------------------------------
    def loss(
        self,
        z: Tensor,
        *,
        t: Tensor | None = None,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-example denoising loss (N,) of latents z (N, D) (standardised here).

        Without t and mask: ``process.loss``, t drawn per example (DDPM: Ho et al. 2020 eq. 14 with eq. 17's 1/2;
        VP-SDE: Song et al. 2021b eq. 7 in the noise). With t, (N,) or (N, groups) in the process's units, or a
        mask ((D,) or (N, D), True = observed): ``multi_time_loss`` with each group at its own time, observed
        dimensions kept clean and unscored, and wholly observed groups given time 0 (MLD's multi-time loss)."""
        self._check(z, "latents")
        x = self.normalise(z)
        weighting = self.latent_config.weighting
        if t is None and mask is None:
            return self.process.loss(self.eps, x, weighting=weighting, generator=generator)
        if t is None:
            t = self.process.draw_times((x.shape[0],), generator=generator, dtype=x.dtype)
        if t.shape not in ((x.shape[0],), (x.shape[0], len(self.groups))):
            raise MMBenchError(
                f"t must be (N,) or (N, groups) = ({x.shape[0]},) or ({x.shape[0]}, {len(self.groups)}), "
                f"got {tuple(t.shape)}"
            )
        group_mask = None if mask is None or len(self.groups) == 1 else self._group_mask(mask, x.shape[0])

        def eps(xt: Tensor, t_dim: Tensor) -> Tensor:
            tg = self._group_times(t_dim)
            if group_mask is not None:
                tg = torch.where(group_mask, torch.zeros_like(tg), tg)
            return self.eps(xt, tg)

        return multi_time_loss(
            eps, x, self.process, self._per_dim(t), mask=mask, weighting=weighting, generator=generator
        )

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int | None = None,
        observed: Tensor | None = None,
        mask: Tensor | None = None,
        mode: str = "replace",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n latents (in z's units) from x_T = N(0, I) by the process's sampler (DDIM, Song et al. 2021a eq. 12;
        or Euler-Maruyama/predictor-corrector on the reverse VP-SDE, Song et al. 2021b eq. 6) in ``steps`` steps
        (the config's sampler_steps by default). With ``observed`` (n, D) and ``mask`` ((D,) or (n, D), True =
        observed): the unobserved part given the observed one, by ``mode`` (module docstring); the observed
        dimensions of the result are ``observed``'s."""
        steps = self.latent_config.sampler_steps if steps is None else steps
        noise = torch.randn(n, self.latent_dim, generator=generator).to(self.mean.device)
        if observed is None and mask is None:
            x = self.process.sample(self.eps, noise, steps=steps, generator=generator)
            return self.denormalise(x)
        if observed is None or mask is None:
            raise MMBenchError("conditional sampling needs both observed and mask")
        if mode not in CONDITIONAL_MODES:
            raise MMBenchError(f"conditional sampling mode {mode!r}; known: {', '.join(CONDITIONAL_MODES)}")
        self._check(observed, "observed")
        if observed.shape[0] != n:
            raise MMBenchError(f"observed has {observed.shape[0]} rows for {n} samples")
        x_obs = self.normalise(observed.to(noise.device))
        obs = mask.to(device=noise.device, dtype=torch.bool).expand(n, self.latent_dim)
        eps_model = self.eps
        if mode == "clean":
            group_mask = self._group_mask(obs, n)

            def eps_model(x: Tensor, t: Tensor) -> Tensor:
                tg = t.reshape(-1, 1).expand(-1, len(self.groups))
                return self.eps(x, torch.where(group_mask, torch.zeros_like(tg), tg))

        def condition(x: Tensor, t: float | None) -> Tensor:
            if t is None or mode == "clean":
                return torch.where(obs, x_obs, x)
            tt = torch.full((n, self.latent_dim), t, device=x.device, dtype=torch.float64)
            if isinstance(self.process, DDPM):
                tt = tt.long()
            m, s = (v.to(x.dtype) for v in self.process.marginal(tt))
            fresh = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            return torch.where(obs, m * x_obs + s * fresh, x)

        x = self.process.sample(eps_model, noise, steps=steps, generator=generator, condition=condition)
        return self.denormalise(x)

    def _check(self, z: Tensor, what: str) -> None:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise MMBenchError(f"{what} have shape {tuple(z.shape)}, expected (N, {self.latent_dim})")


__all__ = ["CONDITIONAL_MODES", "LatentDenoiser", "LatentMLP", "LatentScoreConfig", "LatentScoreModel", "NETS"]

"""Diffusion processes, their training losses and samplers, over any tensor shape (images or latent vectors).

Schedules know no network; samplers are functions over a denoiser callable (k-diffusion's habit):
``eps_model(x_t, t) -> predicted noise`` for DDPM/DDIM (t integer timesteps, shape (N,)) and
``score_model(x_t, t) -> score`` for the VP-SDE (t continuous in (0, 1], shape (N,)). Conditioning on z
is the caller's: pass ``lambda x, t: net(x, t, z)``.

Discrete: DDPM (Ho et al. 2020), T = 1000 linear betas, noise-prediction loss (eq. 14), DDIM
(Song et al. 2021a, eq. 12) with eta, or ancestral sampling (Algorithm 2).
Continuous: VP-SDE (Song et al. 2021b, eq. 11), beta(t) = beta_min + t (beta_max - beta_min),
denoising score matching with weighting lambda(t) (eq. 7), Euler-Maruyama reverse sampler, optional
Langevin corrector (predictor-corrector, Algorithm 1).

A model composes a process with its network through ``DiffusionProcess``, which both ``VPSDE`` and ``DDPM``
implement: ``loss`` and ``sample`` over a noise-prediction network, ``marginal`` (the coefficients of
x_t = mean(t) x_0 + std(t) eps, elementwise in t), and ``time_scale``, the factor by which the network's
sinusoidal timestep embedding multiplies the process's t. Both samplers take a ``condition`` hook that
sees x after every step (inpainting: ``mmbench.diffusion.latent``), and ``multi_time_loss`` takes a time per
dimension (per modality).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol

import torch
from torch import Tensor

from mmbench.errors import MMBenchError
from mmbench.objectives import sum_per_example

Denoiser = Callable[[Tensor, Tensor], Tensor]
Condition = Callable[[Tensor, "float | None"], Tensor]
"""``condition(x, t) -> x``: called on the sampler's x at time t (the process's units) before the first step,
after each step and each corrector step; t = None after the last step (x is then clean, t = 0)."""


class DiffusionProcess(Protocol):
    """What a diffusion decoder needs of its process; ``eps_model(x_t, t)`` predicts the noise in x_t.

    time_scale: the timestep embedding's factor on t (1000 for the VP-SDE's t in (0, 1], 1 for DDPM's 0..T-1).
    loss:       per-example denoising loss (N,) of eps_model on x0 (eq. 17's lambda(t)/2 || score error ||^2).
    sample:     x_0 from x_T = noise in ``steps`` steps; ``clip``: x_0 predictions clipped to [-clip, clip];
                ``condition``: the inpainting hook (``Condition``).
    marginal:   (mean(t), std(t)) of p(x_t | x_0) = N(mean x_0, std^2), elementwise in t (any shape).
    g2:         g(t)^2, the diffusion coefficient squared, for the "likelihood" weighting (elementwise in t).
    draw_times: training times of a given shape (t ~ U{0..T-1} or U(t_min, 1)).
    """

    time_scale: ClassVar[float]

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]: ...

    def g2(self, t: Tensor) -> Tensor: ...

    def draw_times(
        self, shape: tuple[int, ...], *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor: ...

    def loss(
        self, eps_model: Denoiser, x0: Tensor, *, weighting: str = "variance", generator: torch.Generator | None = None
    ) -> Tensor: ...

    def sample(
        self,
        eps_model: Denoiser,
        noise: Tensor,
        *,
        steps: int,
        clip: float | None = None,
        generator: torch.Generator | None = None,
        condition: Condition | None = None,
    ) -> Tensor: ...


def _check_steps(steps: int, limit: int | None = None) -> None:
    if not isinstance(steps, int) or steps < 1 or (limit is not None and steps > limit):
        bound = f" and at most {limit}" if limit is not None else ""
        raise MMBenchError(f"sampler steps must be an integer >= 1{bound}, got {steps!r}")


def _expand(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


# -- discrete: DDPM -------------------------------------------------------------------------------------


DDPM_TIMESTEPS = 1000  # T of the linear schedule (Ho et al. 2020): the most steps DDIM can visit


@dataclass(frozen=True)
class DDPMSchedule:
    """betas_t for t = 0..T-1 and the quantities derived from them (names spell the formulas)."""

    betas: Tensor

    @classmethod
    def linear(
        cls, timesteps: int = DDPM_TIMESTEPS, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> "DDPMSchedule":
        if timesteps < 1 or not 0 < beta_start <= beta_end < 1:
            raise MMBenchError(
                f"DDPM schedule needs timesteps >= 1 and 0 < beta_start <= beta_end < 1, got "
                f"{timesteps}, {beta_start}, {beta_end}"
            )
        return cls(torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64))

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(1.0 - self.betas, 0)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(alphas_cumprod_t) x0 + sqrt(1 - alphas_cumprod_t) noise."""
        ab = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
        return _expand(ab.sqrt(), x0) * x0 + _expand((1 - ab).sqrt(), x0) * noise


def ddpm_loss(
    eps_model: Denoiser,
    x0: Tensor,
    schedule: DDPMSchedule,
    *,
    weighting: str = "variance",
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-example noise-prediction loss 1/2 w(t) || eps - eps_theta(x_t, t) ||^2 (summed over dimensions),
    t ~ U{0..T-1}: eq. 17's lambda(t)/2 || score error ||^2 written in the noise, w(t) = lambda(t) / std(t)^2
    (``noise_weight``). "variance" (w = 1) is DDPM's "simple" loss (Ho et al. 2020, eq. 14) with eq. 17's 1/2,
    so that the same beta weighs the KL against the same scale of denoising loss as Diff-MVAE's ``dsm_loss``.
    For the likelihood weighting the discrete step's g(t)^2 is T beta_t (the VP-SDE's beta(t) at t = i/T)."""
    t = _timesteps(t, x0, lambda n: torch.randint(0, schedule.timesteps, (n,), generator=generator))
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    ab = schedule.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
    g2 = schedule.timesteps * schedule.betas.to(x0.device)[t].to(x0.dtype)
    w = noise_weight(weighting, (1 - ab).sqrt(), g2)
    return 0.5 * w * sum_per_example((noise - eps_model(schedule.q_sample(x0, t, noise), t)) ** 2)


@torch.no_grad()
def sample_ddim(
    eps_model: Denoiser,
    noise: Tensor,
    schedule: DDPMSchedule,
    *,
    steps: int = 50,
    eta: float = 0.0,
    clip: float | None = None,
    generator: torch.Generator | None = None,
    condition: Condition | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021a, eq. 12) from x_T = noise over ``steps`` evenly spaced timesteps.
    eta = 0 is deterministic; eta = 1 matches DDPM's ancestral variance.

    clip: for data known to lie in [-clip, clip] (images in [-1, 1]), each step's prediction of x_0 is
    clipped and the noise re-derived from it, as DDPM's image samplers do (Ho et al. 2020's code): early
    on, x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) multiplies the noise model's error by up to
    1/sqrt(abar_T) (about 150), which otherwise drives the trajectory out of range.

    condition: the ``Condition`` hook, called with x and the timestep it is at (None after the last step)."""
    _check_steps(steps, schedule.timesteps)
    if eta < 0:
        raise MMBenchError(f"DDIM eta must be >= 0, got {eta}")
    ab_all = schedule.alphas_cumprod.to(noise.device)
    times = torch.linspace(schedule.timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    x = noise if condition is None else condition(noise, times[0])
    for i, t in enumerate(times):
        ab = ab_all[t].to(x.dtype)
        ab_prev = (
            ab_all[times[i + 1]].to(x.dtype) if i + 1 < len(times) else torch.ones((), dtype=x.dtype, device=x.device)
        )
        eps = eps_model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp_min(0).sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0 and i + 1 < len(times):
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if condition is not None:
            x = condition(x, times[i + 1] if i + 1 < len(times) else None)
    return x


@torch.no_grad()
def sample_ancestral(
    eps_model: Denoiser, noise: Tensor, schedule: DDPMSchedule, *, generator: torch.Generator | None = None
) -> Tensor:
    """DDPM ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_t)."""
    betas = schedule.betas.to(noise.device)
    ab_all = schedule.alphas_cumprod.to(noise.device)
    x = noise
    for t in range(schedule.timesteps - 1, -1, -1):
        beta, ab = betas[t].to(x.dtype), ab_all[t].to(x.dtype)
        eps = eps_model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
        x = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
        if t > 0:
            x = x + beta.sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x


@dataclass(frozen=True)
class DDPM:
    """The discrete process as a ``DiffusionProcess``: the noise-prediction loss (``ddpm_loss``) and DDIM
    sampling (``sample_ddim``) with this ``eta`` over ``schedule`` (T = 1000 linear betas by default)."""

    schedule: DDPMSchedule = field(default_factory=DDPMSchedule.linear)
    eta: float = 0.0
    time_scale: ClassVar[float] = 1.0  # integer timesteps 0..T-1 are embedded as they are

    def __post_init__(self) -> None:
        if self.eta < 0:
            raise MMBenchError(f"DDIM eta must be >= 0, got {self.eta}")

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)) for integer timesteps t of any shape (float64)."""
        ab = self.schedule.alphas_cumprod.to(t.device)[t]
        return ab.sqrt(), (1 - ab).sqrt()

    def g2(self, t: Tensor) -> Tensor:
        """T beta_t: the VP-SDE's beta(t) at t = i/T, the discrete step's g(t)^2 (as ``ddpm_loss``)."""
        return self.schedule.timesteps * self.schedule.betas.to(t.device)[t]

    def draw_times(
        self, shape: tuple[int, ...], *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """t ~ U{0..T-1} (integer; ``dtype`` is ignored)."""
        return torch.randint(0, self.schedule.timesteps, shape, generator=generator)

    def loss(
        self, eps_model: Denoiser, x0: Tensor, *, weighting: str = "variance", generator: torch.Generator | None = None
    ) -> Tensor:
        """``ddpm_loss``: eq. 17 written in the noise, t ~ U{0..T-1}."""
        return ddpm_loss(eps_model, x0, self.schedule, weighting=weighting, generator=generator)

    def sample(
        self,
        eps_model: Denoiser,
        noise: Tensor,
        *,
        steps: int,
        clip: float | None = None,
        generator: torch.Generator | None = None,
        condition: Condition | None = None,
    ) -> Tensor:
        """``sample_ddim`` over ``steps`` of the schedule's timesteps."""
        return sample_ddim(
            eps_model,
            noise,
            self.schedule,
            steps=steps,
            eta=self.eta,
            clip=clip,
            generator=generator,
            condition=condition,
        )


# -- continuous: VP-SDE ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VPSDE:
    """dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,  beta(t) = beta_min + t (beta_max - beta_min), t in [0, 1]
    (Song et al. 2021b, eq. 11). ``sample`` runs Euler-Maruyama with ``corrector_steps`` Langevin corrector
    steps of signal-to-noise ratio ``snr`` per step (0: the predictor alone)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    corrector_steps: int = 0
    snr: float = 0.16

    def __post_init__(self) -> None:
        if not 0 < self.beta_min <= self.beta_max:
            raise MMBenchError(f"VP-SDE needs 0 < beta_min <= beta_max, got {self.beta_min}, {self.beta_max}")
        if not isinstance(self.corrector_steps, int) or self.corrector_steps < 0 or self.snr <= 0:
            raise MMBenchError(
                f"VP-SDE needs corrector_steps >= 0 and snr > 0, got {self.corrector_steps!r}, {self.snr!r}"
            )

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """p_t(x_t | x_0) = N(mean_coeff x_0, std^2): log mean_coeff = -t^2 (b_max - b_min)/4 - t b_min/2."""
        log_mean = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return log_mean.exp(), (1.0 - (2.0 * log_mean).exp()).sqrt()

    # -- DiffusionProcess: the network predicts the noise; the score is -eps / std(t) (score_from_noise_model)
    time_scale: ClassVar[float] = 1000.0  # t in (0, 1] embedded as DDPM's 0..T-1 are

    def g2(self, t: Tensor) -> Tensor:
        """g(t)^2 = beta(t)."""
        return self.beta(t)

    def draw_times(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        t_min: float = 1e-5,
    ) -> Tensor:
        """t ~ U(t_min, 1), as ``dsm_loss`` draws it."""
        return torch.rand(shape, generator=generator, dtype=dtype) * (1 - t_min) + t_min

    def loss(
        self, eps_model: Denoiser, x0: Tensor, *, weighting: str = "variance", generator: torch.Generator | None = None
    ) -> Tensor:
        """``dsm_loss`` (eq. 17) of the score implied by eps_model."""
        return dsm_loss(score_from_noise_model(eps_model, self), x0, self, weighting=weighting, generator=generator)

    def sample(
        self,
        eps_model: Denoiser,
        noise: Tensor,
        *,
        steps: int,
        clip: float | None = None,
        generator: torch.Generator | None = None,
        condition: Condition | None = None,
    ) -> Tensor:
        """``sample_euler_maruyama`` with the score implied by eps_model (its x_0 clipped with ``clip``) and this
        process's corrector steps."""
        score = score_from_noise_model(eps_model, self, clip=clip)
        return sample_euler_maruyama(
            score,
            noise,
            self,
            steps=steps,
            corrector_steps=self.corrector_steps,
            snr=self.snr,
            generator=generator,
            condition=condition,
        )


def score_from_noise_model(eps_model: Denoiser, sde: VPSDE, *, clip: float | None = None) -> Denoiser:
    """s_theta(x, t) = -eps_theta(x, t) / std(t): the network predicts the noise and the division carries the
    score's 1/std(t) scale (Song et al. 2021b's parametrisation for VP models). A network that output the
    score itself would have to reach magnitudes near 1/std(t_min) (~300) at small t, where its errors then
    dominate the last sampler steps.

    clip: for data in [-clip, clip], the implied x_0 = (x - std eps) / mean is clipped and the noise
    re-derived from it, as ``sample_ddim`` does: at t near 1, mean(t) ~ 0.007, so the noise model's error
    reaches x_0 multiplied by ~150 and carries the sampler out of range. Use it for sampling only."""

    def score(x: Tensor, t: Tensor) -> Tensor:
        mean, std = (_expand(v, x) for v in sde.marginal(t))
        eps = eps_model(x, t)
        if clip is not None:
            x0 = ((x - std * eps) / mean).clamp(-clip, clip)
            eps = (x - mean * x0) / std
        return -eps / std

    return score


WEIGHTINGS = ("variance", "likelihood", "high_noise")


def noise_weight(weighting: str, std: Tensor, g2: Tensor) -> Tensor:
    """w(t) = lambda(t) / std(t)^2, the weight on || eps - eps_theta ||^2 equal to eq. 17's lambda(t) on the score
    error (the score error is the noise error over std(t)). The time weightings lambda(t):

    "variance":   lambda = std(t)^2 (Song et al. 2021b; DDPM's simple loss): every t counts alike in the noise.
    "likelihood": lambda = g(t)^2 = beta(t), under which eq. 17 bounds the negative log-likelihood (Song et al.
                  2021c), the weighting the appendix's bound (eq. 17-22) assumes; it favours small t.
    "high_noise": lambda = std(t)^2 / (1 + SNR(t)), SNR = mean(t)^2 / std(t)^2 (P2 weighting, Choi et al. 2022,
                  k = 1, gamma = 1): noise weight std(t)^2, from 0 at t = 0 to 1 at t = T; it moves the loss to
                  large t, where x_t no longer shows the digit and only z can tell it (PDAE's argument).
    """
    if weighting not in WEIGHTINGS:
        raise MMBenchError(f"unknown diffusion loss weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")
    if weighting == "variance":
        return torch.ones_like(std)
    if weighting == "likelihood":
        return g2 / std**2
    return std**2


def _timesteps(t: Tensor | None, x0: Tensor, draw: Callable[[int], Tensor]) -> Tensor:
    if t is None:
        return draw(x0.shape[0]).to(x0.device)
    if t.shape != (x0.shape[0],):
        raise MMBenchError(f"t must have one time per example, shape ({x0.shape[0]},), got {tuple(t.shape)}")
    return t.to(x0.device)


def dsm_loss(
    score_model: Denoiser,
    x0: Tensor,
    sde: VPSDE,
    *,
    weighting: str = "variance",
    t_min: float = 1e-5,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-example denoising score matching (eq. 17 of the Diff-MVAE appendix), t ~ U(t_min, 1):

        lambda(t)/2 || grad log p_t(x_t | x_0) - s_theta(x_t, t) ||^2,   grad log p_t(x_t|x_0) = -noise / std(t),

    lambda(t) = w(t) std(t)^2 by ``noise_weight`` ("variance": std(t)^2, "likelihood": g(t)^2 = beta(t),
    "high_noise": P2). This lambda(t) is the time weighting; the paper's "lambda = 1e-5" is the KL weight
    (``beta`` of the Diff-MVAE configs), a different quantity.
    """
    t = _timesteps(t, x0, lambda n: torch.rand(n, generator=generator, dtype=x0.dtype) * (1 - t_min) + t_min)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    mean, std = sde.marginal(t)
    lam = noise_weight(weighting, std, sde.beta(t)) * std**2
    xt = _expand(mean, x0) * x0 + _expand(std, x0) * noise
    err = score_model(xt, t) + noise / _expand(std, x0)
    return 0.5 * lam * sum_per_example(err**2)


def multi_time_loss(
    eps_model: Denoiser,
    x0: Tensor,
    process: DiffusionProcess,
    t: Tensor,
    *,
    mask: Tensor | None = None,
    weighting: str = "variance",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-example noise-prediction loss with a time per dimension (MLD's multi-time loss, Bounoua et al. 2024):

        1/2 sum_{i unobserved} w(t_i) (eps_i - eps_theta(x_t, t)_i)^2,   x_t,i = mean(t_i) x0_i + std(t_i) eps_i,

    DDPM's eq. 14 (Ho et al. 2020) and eq. 17 written in the noise (``noise_weight``) with t_i in place of one t.
    x0: (N, D); t: (N, D) times in the process's units, passed to eps_model as they are; mask: (D,) or (N, D),
    True where x0 is observed: those dimensions stay clean in x_t and are not scored. With every t_i equal and no
    mask it is ``process.loss`` at that t, on the same noise draw (``ddpm_loss``/``dsm_loss`` with ``t=``)."""
    if x0.dim() != 2 or t.shape != x0.shape:
        raise MMBenchError(
            f"multi-time loss needs x0 (N, D) and t of its shape, got {tuple(x0.shape)}, {tuple(t.shape)}"
        )
    t = t.to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    mean, std = (v.to(x0.dtype) for v in process.marginal(t))
    xt = mean * x0 + std * noise
    g2 = process.g2(t).to(x0.dtype)
    if mask is not None:  # observed: clean, unscored, and weighted as if std = 1 (a time of 0 gives std = 0)
        observed = mask.to(device=x0.device, dtype=torch.bool).expand_as(x0)
        xt = torch.where(observed, x0, xt)
        std, g2 = torch.where(observed, torch.ones_like(std), std), torch.where(observed, torch.ones_like(g2), g2)
    err = noise - eps_model(xt, t)
    if mask is not None:
        err = torch.where(observed, torch.zeros_like(err), err)
    return 0.5 * (noise_weight(weighting, std, g2) * err**2).sum(1)


@torch.no_grad()
def sample_euler_maruyama(
    score_model: Denoiser,
    noise: Tensor,
    sde: VPSDE,
    *,
    steps: int = 1000,
    t_min: float = 1e-3,
    corrector_steps: int = 0,
    snr: float = 0.16,
    generator: torch.Generator | None = None,
    condition: Condition | None = None,
) -> Tensor:
    """Reverse-time SDE dx = [-1/2 beta x - beta s(x, t)] dt + sqrt(beta) dw-bar from t = 1 to t_min
    (Euler-Maruyama predictor, Song et al. 2021b, eq. 6), with ``corrector_steps`` Langevin corrector steps per
    step (predictor-corrector, Algorithm 1 with Algorithm 5's step size). The last step returns the noise-free
    mean. condition: the ``Condition`` hook, called with x and the time it is at (None after the last step)."""
    _check_steps(steps)
    if corrector_steps < 0:
        raise MMBenchError(f"corrector_steps must be >= 0, got {corrector_steps}")
    times = torch.linspace(1.0, t_min, steps + 1, dtype=noise.dtype, device=noise.device)
    at = times.tolist() if condition is not None else []
    x = noise if condition is None else condition(noise, at[0])
    for i in range(steps):
        t, dt = times[i], times[i + 1] - times[i]  # dt < 0
        vec_t = t.expand(x.shape[0])
        for _ in range(corrector_steps):
            score = score_model(x, vec_t)
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            eps = 2 * (snr * z.flatten(1).norm(dim=-1).mean() / score.flatten(1).norm(dim=-1).mean()) ** 2
            x = x + eps * score + (2 * eps).sqrt() * z
            if condition is not None:
                x = condition(x, at[i])
        beta = sde.beta(t)
        mean = x - (-0.5 * beta * x - beta * score_model(x, vec_t)) * (-dt)
        if i + 1 < steps:
            x = mean + (beta * (-dt)).sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        else:
            x = mean
        if condition is not None:
            x = condition(x, at[i + 1] if i + 1 < steps else None)
    return x


def gaussian_vp_score(mu: Tensor, var: Tensor, sde: VPSDE) -> Denoiser:
    """The exact score of p_t when p_0 = N(mu, diag(var)): -(x - m(t) mu) / (m(t)^2 var + std(t)^2)."""

    def score(x: Tensor, t: Tensor) -> Tensor:
        m, s = sde.marginal(t)
        m, s = _expand(m, x), _expand(s, x)
        return -(x - m * mu) / (m**2 * var + s**2)

    return score


def gaussian_ddpm_eps(mu: Tensor, var: Tensor, schedule: DDPMSchedule) -> Denoiser:
    """The exact noise prediction when p_0 = N(mu, diag(var)): eps* = -sqrt(1 - ab_t) * score_t(x)."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        ab = _expand(schedule.alphas_cumprod.to(x.device)[t].to(x.dtype), x)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * var + 1 - ab)

    return eps


def gaussian_eps(mu: Tensor, cov: Tensor, process: DiffusionProcess) -> Denoiser:
    """The exact noise prediction when p_0 = N(mu, cov) (full covariance) and dimension i is at time t_i:
    x_t = M x_0 + S eps with M = diag(mean(t_i)), S = diag(std(t_i)), so p_t = N(M mu, M cov M + S^2) and
    eps*(x_t) = E[eps | x_t] = S (M cov M + S^2)^-1 (x_t - M mu). t: (N,) or (N, D); a dimension at std 0 is clean."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        t = t.reshape(-1, 1).expand(x.shape) if t.dim() == 1 else t
        m, s = (v.to(x.dtype) for v in process.marginal(t))
        cov_t = m[:, :, None] * cov.to(x.dtype) * m[:, None, :] + torch.diag_embed(s**2)
        return s * torch.linalg.solve(cov_t, (x - m * mu.to(x.dtype)).unsqueeze(-1)).squeeze(-1)

    return eps


__all__ = [
    "DDPM",
    "WEIGHTINGS",
    "Condition",
    "DDPMSchedule",
    "Denoiser",
    "DiffusionProcess",
    "VPSDE",
    "ddpm_loss",
    "dsm_loss",
    "multi_time_loss",
    "gaussian_ddpm_eps",
    "gaussian_eps",
    "gaussian_vp_score",
    "noise_weight",
    "sample_ancestral",
    "sample_ddim",
    "sample_euler_maruyama",
    "score_from_noise_model",
]

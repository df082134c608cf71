"""MLD's default sampler: reverse Euler-Maruyama steps of the VP-SDE on a grid of ``grid`` times with RePaint's
jumps back (Lugmayr et al. 2022): every ``jump_length`` grid steps the trajectory is re-noised ``jump_length`` steps
forward, ``jump_n_sample - 1`` times, and walked down again, so the unobserved part keeps being harmonised with the
observed one (clean, at time 0, as MLD's training). MLD's code: src/components/mm_sde.py (``get_schedule_jump`` with
n_sample = 1, start_resampling = grid; ``mod_repaint``, ``do_reverse_diffusion``, ``do_diffusion``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from mmbench.diffusion.processes import VPSDE
from mmbench.errors import MMBenchError


def repaint_schedule(grid: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The grid indices the sampler visits, from ``grid`` to 0 (MLD's ``get_schedule_jump(...) + 1``): a step to a
    smaller index is a reverse step, to a larger one a forward (re-noising) step. grid 250, jumps 10 x 10: 4,571
    entries, 2,410 reverse and 2,160 forward steps."""
    if grid < 1 or jump_length < 1 or jump_n_sample < 1:
        raise MMBenchError(
            f"RePaint needs grid, jump_length and jump_n_sample >= 1, got {grid}, {jump_length}, {jump_n_sample}"
        )
    jumps = {j: jump_n_sample - 1 for j in range(0, grid - jump_length, jump_length)}
    t, ts = grid, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0 and t <= grid - jump_length:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                ts.append(t)
    ts.append(-1)
    return [v + 1 for v in ts]


@torch.no_grad()
def sample_repaint(
    eps_model: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,
    sde: VPSDE,
    *,
    observed: Tensor,
    mask: Tensor,
    grid: int = 250,
    jump_length: int = 10,
    jump_n_sample: int = 10,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_0 from x_T = noise with the observed dimensions (``mask`` True, (D,) or (N, D)) held at ``observed``.

    Reverse step at grid time t = i / grid, dt = 1 / grid: x <- x + dt (beta(t) x / 2 + beta(t) s(x, t))
    + sqrt(beta(t) dt) z, s = -eps_model(x, t) / std(t) on the unobserved dimensions (no noise on the last step),
    observed dimensions reset to ``observed``; forward step: x <- x - dt beta(t) x / 2 + sqrt(beta(t) dt) z.
    eps_model(x, t) gets t (N,) and sees the observed dimensions clean (its own concern: MLD gives them time 0)."""
    obs = mask.to(device=noise.device, dtype=torch.bool).expand_as(noise)
    x0 = observed.to(noise)
    x = noise
    dt = 1.0 / grid
    schedule = repaint_schedule(grid, jump_length, jump_n_sample)

    def randn() -> Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)

    for last, cur in zip(schedule[:-1], schedule[1:]):
        t = torch.full((x.shape[0],), last / grid, dtype=x.dtype, device=x.device)
        beta = sde.beta(t)[:, None]
        if cur < last:
            x = torch.where(obs, x0, x)
            std = sde.marginal(t)[1][:, None]
            score = -eps_model(x, t) / std
            x = x + dt * (0.5 * beta * x + beta * score)
            if last > 1:
                x = x + (beta * dt).sqrt() * randn()
            x = torch.where(obs, x0, x)
        else:
            x = x - 0.5 * dt * beta * x + (beta * dt).sqrt() * randn()
    return x

"""Diffusion samplers against steps x one bare UNet forward (issue 14's P3 goal: within 1.10x).

    python benchmarks/sampler_overhead.py [--batch 64] [--ddim-steps 50] [--em-steps 1000] [--repeats 3]

For Diff-MVAE* (DDIM, --ddim-steps) and Diff-MVAE (Euler-Maruyama, --em-steps), each with the 28x28 UNet
preset (base 32) conditioned on z: the wall time of decoding one modality from z (``decode``, the sampler
with its clipping and noise) against steps x the median time of one forward of the same UNet at the same
batch, measured alternately in one process. Medians of --repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from subset_scaling import polymnist_shaped

from mmbench.config import build_config
from mmbench.registry import MODELS

GOAL = 1.10


@torch.no_grad()
def forward_time(net, x, t, z, repeats: int = 20) -> float:
    net(x, t, z)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net(x, t, z)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--em-steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    data = polymnist_shaped(args.batch, 2)
    print(f"B={args.batch}, UNet base 32, {torch.get_num_threads()} threads, median of {args.repeats}")
    print("| sampler | steps | ours s | steps x forward s | ratio | goal | pass |")
    print("|---|---|---|---|---|---|---|")
    for name, steps in (("diffmvae_star", args.ddim_steps), ("diffmvae", args.em_steps)):
        cls = MODELS.get(name)
        torch.manual_seed(0)
        model = cls(data.modalities, build_config(cls.Config, {"sampler_steps": steps})).eval()
        z = torch.randn(args.batch, model.config.latent_dim)
        x = torch.randn(args.batch, 3, 28, 28)
        t = torch.full((args.batch,), 500) if name == "diffmvae_star" else torch.full((args.batch,), 0.5)
        net = model.decoders["m0"]
        ours, floor = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            model.decode(z, ["m0"], generator=torch.Generator().manual_seed(r))
            ours.append(time.perf_counter() - t0)
            floor.append(steps * forward_time(net, x, t, z))
        o, f = statistics.median(ours), statistics.median(floor)
        sampler = "DDIM (Diff-MVAE*)" if name == "diffmvae_star" else "Euler-Maruyama (Diff-MVAE)"
        print(
            f"| {sampler} | {steps} | {o:.2f} | {f:.2f} | {o / f:.2f}x | {GOAL}x | "
            f"{'pass' if o / f <= GOAL else 'FAIL'} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-step time of the subset-mixture objective against the number of modalities (issue 14's P2 goal).

    python benchmarks/subset_scaling.py [--model mopoe] [--modalities 2 5 7 10] [--batch 256] [--repeats 5]

For each M, on PolyMNIST-shaped tuples (random pixels: cost does not depend on the digits) with the model's
PolyMNIST networks (latent 512), three steps are timed, alternating within one process, and the medians of
--repeats are printed as a table:
  bare:        every encoder and every decoder once on the batch, a Laplace reconstruction loss, backward,
               Adam step: the floor the objective should stay near;
  exact:       the model's step with kl_estimator = "exact" (KL over all 2^M - 1 subset posteriors);
  stratified:  the model's step with kl_estimator = "stratified" (each row's KL for its own subset).
Ratios: each against bare at the same M, and each against itself at the smallest M. Goal (issue 14):
stratified within 1.15x of bare at every M, and at most 5.5x from the smallest M to M = 10.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from mmbench.config import build_config
from mmbench.data.base import MultimodalDataset
from mmbench.modality import Modality
from mmbench.registry import MODELS


def polymnist_shaped(n: int, modalities: int) -> MultimodalDataset:
    g = torch.Generator().manual_seed(0)
    mods = [Modality(f"m{i}", (3, 28, 28), "image", "laplace") for i in range(modalities)]
    return MultimodalDataset(mods, {m.name: torch.rand(n, *m.shape, generator=g) for m in mods},
                             torch.randint(0, 10, (n,), generator=g), "polymnist-shaped")


def model_step(model, batch, opt) -> None:
    opt.zero_grad(set_to_none=True)
    model.loss(batch).loss.backward()
    opt.step()


def bare_step(model, batch, opt) -> None:
    """Every encoder and decoder of the model's UnimodalParts once: z = mu + noise, Laplace reconstruction."""
    parts = model.parts
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for m in model.modality_names:
        q = parts.encoders[m](batch["x"][m])
        z = q.mu + torch.randn_like(q.mu) * (0.5 * q.logvar).exp()
        loss = loss + (parts.decoders[m](z) - batch["x"][m]).abs().sum() / len(z)
    loss.backward()
    opt.step()


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mopoe", help="a model with PolyMNIST parts and kl_estimator (default mopoe)")
    p.add_argument("--modalities", type=int, nargs="+", default=[2, 5, 7, 10])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    cls = MODELS.get(args.model)
    print(f"{args.model}, B={args.batch}, latent 512, {torch.get_num_threads()} threads, median of {args.repeats} "
          "alternating steps after one warm-up each")
    print("| M | bare s | exact s | stratified s | exact/bare | stratified/bare | exact vs M0 | stratified vs M0 |")
    print("|---|---|---|---|---|---|---|---|")
    first: dict[str, float] = {}
    for m in args.modalities:
        data = polymnist_shaped(args.batch, m)
        batch = data.batch(torch.arange(args.batch))
        cases = {}
        for name, kl in (("exact", "exact"), ("stratified", "stratified")):
            torch.manual_seed(0)
            model = cls(data.modalities, build_config(cls.Config, {"kl_estimator": kl, "batch_size": args.batch}))
            cases[name] = (model_step, model, torch.optim.Adam(model.parameters(), lr=1e-4))
        cases["bare"] = (bare_step, cases["stratified"][1], torch.optim.Adam(cases["stratified"][1].parameters(), lr=1e-4))
        times: dict[str, list[float]] = {k: [] for k in cases}
        for k, (fn, model, opt) in cases.items():
            fn(model, batch, opt)  # warm-up
        for _ in range(args.repeats):
            for k, (fn, model, opt) in cases.items():
                times[k].append(timed(fn, model, batch, opt))
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            first.setdefault(k, v)
        print(f"| {m} | {med['bare']:.3f} | {med['exact']:.3f} | {med['stratified']:.3f} | "
              f"{med['exact'] / med['bare']:.2f}x | {med['stratified'] / med['bare']:.2f}x | "
              f"{med['exact'] / first['exact']:.1f}x | {med['stratified'] / first['stratified']:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

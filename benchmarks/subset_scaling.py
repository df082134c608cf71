"""Training-step time of the subset-mixture objective against the number of modalities (issue 14's P2 goal).

    python benchmarks/subset_scaling.py [--model mopoe|diffmvae_star] [--modalities 2 5 7 10] [--batch 256]
                                        [--repeats 5] [--memory] [--set FIELD=VALUE ...]

For each M, on PolyMNIST-shaped tuples (random pixels: cost does not depend on the digits) with the model's
PolyMNIST networks (latent 512; Diff-MVAE*: its UNets), three steps are timed, alternating within one
process, and the medians of --repeats are printed as a table:
  bare:        every encoder and every decoder once on the batch (a Laplace reconstruction loss, or the
               diffusion loss of each UNet once), backward, Adam step: the floor the objective should stay near;
  exact:       the model's step with kl_estimator = "exact" (KL over all 2^M - 1 subset posteriors);
  stratified:  the model's step with kl_estimator = "stratified" (each row's KL for its own subset).
Ratios: each against bare at the same M, and each against itself at the smallest M. Goal (issue 14):
stratified within 1.15x of bare at every M, and at most 5.5x from the smallest M to M = 10. --memory adds
the peak resident memory (MB) of a fresh process that builds that case's model alone and takes two steps.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mmbench.config import build_config
from mmbench.data.base import MultimodalDataset
from mmbench.modality import Modality
from mmbench.optim import adam
from mmbench.registry import MODELS
from mmbench.sweeps.files import parse_value
from mmbench.training.memory_format import apply_memory_format, resolve_memory_format, to_memory_format


def polymnist_shaped(n: int, modalities: int) -> MultimodalDataset:
    g = torch.Generator().manual_seed(0)
    mods = [Modality(f"m{i}", (3, 28, 28), "image", "laplace") for i in range(modalities)]
    return MultimodalDataset(
        mods,
        {m.name: torch.rand(n, *m.shape, generator=g) for m in mods},
        torch.randint(0, 10, (n,), generator=g),
        "polymnist-shaped",
    )


def model_step(model, batch, opt) -> None:
    opt.zero_grad(set_to_none=True)
    model.loss(batch).loss.backward()
    opt.step()


def bare_step(model, batch, opt) -> None:
    """Every encoder and decoder of the model once: z = mu + noise, then a Laplace reconstruction, or for a
    diffusion decoder its denoising loss at one t per row (one UNet pass)."""
    nets = getattr(model, "parts", model)
    diffusion = set(getattr(model, "diffusion_names", ()))
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for m in model.modality_names:
        x = batch["x"][m]
        q = nets.encoders[m](x)
        z = q.mu + torch.randn_like(q.mu) * (0.5 * q.logvar).exp()
        if m in diffusion:
            loss = loss + model.diffusion_loss(m, x, z).mean()
        else:
            loss = loss + (nets.decoders[m](z) - x).abs().sum() / len(z)
    loss.backward()
    opt.step()


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def as_trained(model, batch):
    """The model and batch in the layout mmbench's trainer uses on the CPU (``memory_format = "auto"``) and the
    trainer's Adam (``mmbench.optim.adam``) at lr 1e-4."""
    layout = resolve_memory_format("auto", torch.device("cpu"))
    apply_memory_format(model, layout)
    return adam(model.parameters(), 1e-4), to_memory_format(batch, layout)


def build_cases(name: str, m: int, batch_size: int, overrides: dict, only: str | None = None):
    """{case: (step function, model, optimiser)} and the batch, as the trainer runs them (``as_trained``);
    ``only`` builds one case (bare shares the stratified model)."""
    data = polymnist_shaped(batch_size, m)
    batch = data.batch(torch.arange(batch_size))
    cls = MODELS.get(name)
    cases = {}
    wanted = {"exact"} if only == "exact" else {"stratified"} if only else {"exact", "stratified"}
    for case, kl in (("exact", "exact"), ("stratified", "stratified")):
        if case not in wanted:
            continue
        torch.manual_seed(0)
        model = cls(
            data.modalities, build_config(cls.Config, {**overrides, "kl_estimator": kl, "batch_size": batch_size})
        )
        opt, trained_batch = as_trained(model, batch)
        cases[case] = (model_step, model, opt)
    if "stratified" in cases:
        strat = cases["stratified"][1]
        cases["bare"] = (bare_step, strat, cases["stratified"][2])
    return trained_batch, cases


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    through fork and exec, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(name: str, case: str, m: int, batch_size: int, sets: list[str]) -> float:
    """Peak resident memory of a fresh process that builds the case and takes two steps."""
    cmd = [sys.executable, __file__, "--model", name, "--batch", str(batch_size), "--probe", case, str(m)]
    cmd += [a for s in sets for a in ("--set", s)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mopoe", help="a model with kl_estimator (mopoe, diffmvae_star, diffmvae)")
    p.add_argument("--modalities", type=int, nargs="+", default=[2, 5, 7, 10])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory", action="store_true", help="also measure each case's peak memory (subprocesses)")
    p.add_argument("--memory-only", action="store_true", help="measure peak memory only, no step times")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    p.add_argument("--probe", nargs=2, metavar=("CASE", "M"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.probe:
        batch, cases = build_cases(args.model, int(args.probe[1]), args.batch, overrides, only=args.probe[0])
        fn, model, opt = cases[args.probe[0]]
        fn(model, batch, opt)
        fn(model, batch, opt)
        print(peak_rss_mb())
        return 0
    if args.memory_only:
        print(
            f"{args.model} {overrides or ''}, B={args.batch}: peak resident MB of a process that builds one case "
            "and takes two steps"
        )
        print("| M | bare MB | exact MB | stratified MB |\n|---|---|---|---|")
        for m in args.modalities:
            print(
                f"| {m} |"
                + "".join(
                    f" {peak_memory_mb(args.model, k, m, args.batch, args.set):.0f} |"
                    for k in ("bare", "exact", "stratified")
                ),
                flush=True,
            )
        return 0
    print(
        f"{args.model} {overrides or ''}, B={args.batch}, latent 512, {torch.get_num_threads()} threads, median of "
        f"{args.repeats} alternating steps after one warm-up each"
    )
    mem_head = " bare MB | exact MB | stratified MB |" if args.memory else ""
    print(
        "| M | bare s | exact s | stratified s | exact/bare | stratified/bare | exact vs M0 | stratified vs M0 |"
        + mem_head
    )
    print("|---|---|---|---|---|---|---|---|" + "---|" * (3 if args.memory else 0))
    first: dict[str, float] = {}
    for m in args.modalities:
        batch, cases = build_cases(args.model, m, args.batch, overrides)
        times: dict[str, list[float]] = {k: [] for k in cases}
        for k, (fn, model, opt) in cases.items():
            fn(model, batch, opt)  # warm-up
        for _ in range(args.repeats):
            for k, (fn, model, opt) in cases.items():
                times[k].append(timed(fn, model, batch, opt))
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            first.setdefault(k, v)
        mem = ""
        if args.memory:
            del cases
            mem = "".join(
                f" {peak_memory_mb(args.model, k, m, args.batch, args.set):.0f} |"
                for k in ("bare", "exact", "stratified")
            )
        print(
            f"| {m} | {med['bare']:.3f} | {med['exact']:.3f} | {med['stratified']:.3f} | "
            f"{med['exact'] / med['bare']:.2f}x | {med['stratified'] / med['bare']:.2f}x | "
            f"{med['exact'] / first['exact']:.1f}x | {med['stratified'] / first['stratified']:.1f}x |" + mem,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

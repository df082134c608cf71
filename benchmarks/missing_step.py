"""A training step on a batch with missing modalities against the complete batch, same size (issue 21: <= 1.1x).

    OMP_NUM_THREADS=1 python benchmarks/missing_step.py [--batch 64] [--modalities 5] [--rates 0 0.25 0.5]
        [--models mopoe mvtcae] [--repeats 7]

Each model (default config, PolyMNIST-shaped data, as the trainer runs it on the CPU: ``subset_scaling.as_trained``)
takes optimiser steps on one batch: complete (no mask), and with ``batch["mask"]`` at each missing rate (each row
drops each modality with that probability, one kept; rate 0 is an all-True mask, which ``batch_masks`` reads as
complete, so it is the complete step). Missing rows hold NaN. The steps alternate case by case after one warm-up
each; the table gives the medians of the process's CPU time per step (robust to other processes on a shared
machine; run with OMP_NUM_THREADS=1) and masked / complete.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from subset_scaling import as_trained, model_step, polymnist_shaped  # noqa: E402

from mmbench.config import build_config  # noqa: E402
from mmbench.registry import MODELS  # noqa: E402

GOAL = 1.1


def masks_at(rate: float, b: int, names: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(len(names), b, generator=g) >= rate
    first = torch.randint(0, len(names), (b,), generator=g)
    keep[first, torch.arange(b)] = True  # every row keeps one modality at least
    return {m: keep[i] for i, m in enumerate(names)}


def with_missing(batch: dict, masks: dict) -> dict:
    """The batch with NaN in the missing rows (in the same memory layout) and its masks."""
    x = {m: v.masked_fill(~masks[m].view(-1, *[1] * (v.dim() - 1)), torch.nan) for m, v in batch["x"].items()}
    return {**batch, "x": x, "mask": masks}


def timed(fn) -> float:
    """CPU seconds of this process (with one thread, the step's own time, not what other processes take)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--modalities", type=int, default=5)
    p.add_argument("--rates", type=float, nargs="*", default=[0.0, 0.25, 0.5])
    p.add_argument("--models", nargs="*", default=["mopoe", "mvtcae"])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch}, M={args.modalities}, "
        f"median CPU s of {args.repeats} alternating steps"
    )
    print("| model | missing rate | observed | complete s/step | masked s/step | masked/complete | goal | pass |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for name in args.models:
        data = polymnist_shaped(args.batch, args.modalities)
        cls = MODELS.get(name)
        torch.manual_seed(0)
        model = cls(data.modalities, build_config(cls.Config, {"batch_size": args.batch}))
        opt, batch = as_trained(model, data.batch(torch.arange(args.batch)))
        names = model.modality_names
        cases = [("complete", batch)] + [
            (rate, with_missing(batch, masks_at(rate, args.batch, names))) for rate in args.rates
        ]
        runs = [lambda b=b: model_step(model, b, opt) for _, b in cases]
        for run in runs:
            run()
        times = [[] for _ in runs]
        for _ in range(args.repeats):
            for run, t in zip(runs, times):
                t.append(timed(run))
        medians = [statistics.median(t) for t in times]
        for (rate, b), med in zip(cases[1:], medians[1:]):
            ratio = med / medians[0]
            ok = ok and ratio <= GOAL
            seen = torch.stack(list(b["mask"].values())).double().mean().item()
            print(
                f"| {name} | {rate:g} | {seen:.2f} | {medians[0]:.3f} | {med:.3f} | {ratio:.2f}x | <= {GOAL}x | "
                f"{'pass' if ratio <= GOAL else 'FAIL'} |",
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

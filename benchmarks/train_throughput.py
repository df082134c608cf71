"""Training throughput per model, device and precision: images/s of the trainer, and the speed-up over the CPU.

    python benchmarks/train_throughput.py [--models mopoe diffmvae_star] [--modalities 5] [--batch 256]
                                          [--steps 20] [--repeats 3] [--devices cpu cuda] [--precisions fp32 bf16]
                                          [--set FIELD=VALUE ...]

Each case trains the model with mmbench's trainer (``mmbench.training.trainer.train``, no checkpoint) for --steps
optimiser steps on PolyMNIST-shaped tuples (M modalities of 3x28x28, random pixels: throughput does not
depend on the digits) after 3 warm-up steps, --repeats times; the table gives the median images/s
(tuples x modalities per second), s/step, and the ratio to the same model's CPU fp32 median measured in
this run. Devices that are not on this machine are listed as skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from mmbench.config import build_config
from mmbench.data.base import MultimodalDataset
from mmbench.device import cuda_count
from mmbench.modality import Modality
from mmbench.registry import MODELS
from mmbench.sweeps.overrides import apply_to_table, parse_overrides
from mmbench.training.options import RunOptions
from mmbench.training.trainer import train


def polymnist_shaped(n: int, modalities: int) -> MultimodalDataset:
    g = torch.Generator().manual_seed(0)
    mods = [Modality(f"m{i}", (3, 28, 28)) for i in range(modalities)]
    return MultimodalDataset(
        mods,
        {m.name: torch.rand(n, *m.shape, generator=g) for m in mods},
        torch.randint(0, 10, (n,), generator=g),
        "polymnist-shaped",
    )


def images_per_s(
    name: str, device: torch.device, precision: str, data: MultimodalDataset, batch: int, steps: int, overrides: dict
) -> tuple[float, float]:
    cls = MODELS.get(name)
    warmup = 3
    placed = data.to(device)
    warm = build_config(
        cls.Config, {**overrides, "batch_size": batch, "max_steps": warmup, "epochs": 10**6, "precision": precision}
    )
    torch.manual_seed(0)
    train(
        cls(data.modalities, warm),
        placed,
        device=device,
        options=RunOptions(tensorboard=False),
        progress=False,
        log=lambda s: None,
    )  # warm-up: allocator, cuDNN autotuning, first-call overheads
    config = build_config(
        cls.Config, {**overrides, "batch_size": batch, "max_steps": steps, "epochs": 10**6, "precision": precision}
    )
    torch.manual_seed(0)
    result = train(
        cls(data.modalities, config),
        placed,
        device=device,
        options=RunOptions(tensorboard=False),
        progress=False,
        log=lambda s: None,
    )
    return result.examples_per_s * len(data.modalities), result.s_per_step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mopoe", "diffmvae_star"])
    p.add_argument("--modalities", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="config override for every model")
    args = p.parse_args(argv)
    overrides = apply_to_table({}, parse_overrides(args.set or []), "config")
    data = polymnist_shaped(args.batch * 4, args.modalities)
    print(
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {cuda_count()} GPU(s)"
        + (f" ({torch.cuda.get_device_name(0)})" if cuda_count() else "")
        + f", {torch.get_num_threads()} CPU threads; "
        f"M={args.modalities}, B={args.batch}, {args.steps} steps, median of {args.repeats}"
    )
    print(
        f"| {'model':<14} | {'device':<6} | {'precision':<9} | {'images/s':>10} | {'s/step':>8} | {'vs CPU fp32':>11} |"
    )
    print(f"|{'-' * 16}|{'-' * 8}|{'-' * 11}|{'-' * 12}|{'-' * 10}|{'-' * 13}|")
    for name in args.models:
        cpu_ref = None
        for dev in args.devices:
            if dev.startswith("cuda") and not cuda_count():
                print(f"| {name:<14} | {dev:<6} | {'-':<9} | {'skipped: no CUDA device here':>46} |")
                continue
            device = torch.device(dev)
            for precision in args.precisions:
                runs = [
                    images_per_s(name, device, precision, data, args.batch, args.steps, overrides)
                    for _ in range(args.repeats)
                ]
                ips = statistics.median(r[0] for r in runs)
                sps = statistics.median(r[1] for r in runs)
                if dev == "cpu" and precision == "fp32":
                    cpu_ref = ips
                ratio = f"{ips / cpu_ref:.1f}x" if cpu_ref else "-"
                print(
                    f"| {name:<14} | {dev:<6} | {precision:<9} | {ips:>10.1f} | {sps:>8.3f} | {ratio:>11} |", flush=True
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Flags that several commands share, and how a run folder or run id on the command line becomes a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.errors import MMBenchError, did_you_mean
from mmbench.storage.names import name_problem


def epilog(example: str, section: str) -> str:
    """A --help epilog: an example command line and the README section that explains it."""
    return f'example:\n  {example}\n\nmore: README, section "{section}"'


def add_progress_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_device_flag(sp: argparse.ArgumentParser, default: str | None = None) -> None:
    sp.add_argument(
        "--device",
        default=default,
        help="auto | cpu | cuda | cuda:N (auto: CUDA when available)"
        + (f"; default {default}" if default else "; default: a sweep file's [run] device, else auto"),
    )


def add_run_flags(sp: argparse.ArgumentParser) -> None:
    """--device, --nproc, --checkpoint-every, --memory-format: a run's RunOptions."""
    add_device_flag(sp)
    sp.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="data-parallel processes on this node, one per GPU (DDP; gloo on the CPU); default 1",
    )
    sp.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="optimiser steps between checkpoints (default 500; one is always written at the end)",
    )
    sp.add_argument(
        "--memory-format",
        choices=["auto", "channels_last", "contiguous"],
        default=None,
        help="layout of convolution kernels and image batches (auto: channels-last on the CPU, "
        "where it is faster; same values either way); default auto",
    )


def run_flags(args: argparse.Namespace) -> dict:
    """The RunOptions given on the command line (None where a flag was left out)."""
    return {
        "device": args.device,
        "nproc": args.nproc,
        "checkpoint_every": args.checkpoint_every,
        "memory_format": args.memory_format,
    }


def add_run_argument(sp: argparse.ArgumentParser, holding: str) -> None:
    """RUN: a run folder, or a run id looked up under --runs."""
    sp.add_argument("run", help=f"a run folder (RUNS/<run_id>) holding {holding}, or a run id with --runs")
    sp.add_argument(
        "--runs", default="results/runs", help="runs folder a run id is looked up in (default results/runs)"
    )


def run_folder(args: argparse.Namespace) -> Path:
    """The run folder RUN names: the folder itself, else RUNS/RUN, else a unique run id prefix under RUNS.

    A run id is looked up under RUNS only when it is a plain name: one that would leave RUNS (``..``, an absolute
    path, a path separator) and is no folder itself is refused in one line."""
    given = Path(args.run)
    if given.is_dir():
        return given
    runs = Path(args.runs)
    problem = name_problem(args.run)
    if problem:  # a mistyped folder, or a name that would leave RUNS: never joined to it
        raise MMBenchError(
            f"no run folder {given}, and RUN = {args.run!r} is no run id to look up under {runs}: {problem}"
        )
    if (runs / args.run).is_dir():
        return runs / args.run
    if runs.is_dir():
        matches = sorted(p for p in runs.iterdir() if p.is_dir() and p.name.startswith(args.run))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise MMBenchError(
                f"run {args.run!r} matches several runs under {runs}: {', '.join(p.name for p in matches[:5])}"
            )
        known = [p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
        raise MMBenchError(f"no run folder {given} and no run {args.run!r} under {runs}{did_you_mean(args.run, known)}")
    raise MMBenchError(f"no run folder {given} (and no runs folder {runs} to look the id up in; give --runs DIR)")

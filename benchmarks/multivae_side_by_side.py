"""mmbench against MultiVae: training-step time with identical network modules (issue 14's P1 goal: <= 0.8x).

    bash benchmarks/setup_multivae.sh                      # once: the peer's own environment
    benchmarks/.venv-multivae/bin/python benchmarks/multivae_side_by_side.py [--batch 256] [--modalities 5]
        [--models mopoe mvtcae mmvaeplus] [--scaling 2 3 4 5 6 7 8 9 10] [--repeats 3] [--limit 60]

Each case builds the mmbench model with its default config (the paper's PolyMNIST preset) and MultiVae's
model on deep copies of the very same encoder and decoder modules (``multivae_models.build_multivae``: same
layers, same initial weights), then times optimiser steps on the same PolyMNIST-shaped batch, alternating the
two in one process after one warm-up step each. mmbench's side runs as its trainer does on the CPU
(channels-last layout, fused Adam: ``subset_scaling.as_trained``), MultiVae's as its trainer does (the
modules as built, torch.optim.Adam), both at lr 1e-4. The table gives the medians and ours/theirs; beside
them the floor, one step of only the network passes the objective needs on mmbench's modules and layout
(``floor_step``), and MultiVae on channels-last copies of the modules (what its user gets by converting
the networks by hand), so the table separates what the layout gives from what the objective's code gives.
--scaling repeats MoPoE for each M with both of mmbench's KL estimators (exact, the default, and
stratified); MultiVae's first step is first tried in a child process, and an M where it does not finish
within --limit seconds is reported as such (and so is every larger M).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from multivae_models import build_multivae  # noqa: E402
from subset_scaling import as_trained, bare_step, model_step, polymnist_shaped  # noqa: E402

from baselines.mmvaeplus import softmax_scale  # noqa: E402
from mmbench.config import build_config  # noqa: E402
from mmbench.registry import MODELS  # noqa: E402
from mmbench.training.memory_format import apply_memory_format, to_memory_format  # noqa: E402

GOAL = 0.8


def pair(model: str, m: int, batch_size: int, overrides: dict | None = None, peer_layout: bool = False):
    """(mmbench model, its optimiser, its batch), (MultiVae step, its optimiser, its batch)[, (MultiVae step on
    channels-last copies of the modules, its optimiser, its batch)].

    mmbench's side is as its trainer runs it on this device: the layout of ``RunOptions.memory_format = "auto"``
    (channels-last on the CPU) and ``mmbench.optim.adam`` (fused where torch has the kernel), at the same lr as
    MultiVae's side, which gets the modules as built (contiguous) and torch.optim.Adam (MultiVae's trainer's
    default). ``peer_layout`` adds MultiVae on channels-last copies of the same modules: what a MultiVae user
    would get by converting their networks by hand, so the table shows how much of the ratio is the layout.
    """
    data = polymnist_shaped(batch_size, m)
    batch = data.batch(torch.arange(batch_size))
    cls = MODELS.get(model)
    torch.manual_seed(0)
    ours = cls(data.modalities, build_config(cls.Config, {**(overrides or {}), "batch_size": batch_size}))
    nets = getattr(ours, "parts", ours)
    encoders = {k: copy.deepcopy(v) for k, v in nets.encoders.items()}
    decoders = {k: copy.deepcopy(v) for k, v in nets.decoders.items()}
    opt, our_batch = as_trained(ours, batch)
    theirs, step = build_multivae(model, m, ours.config.latent_dim, encoders, decoders)
    cases = [(ours, opt, our_batch), (step, torch.optim.Adam(theirs.parameters(), lr=1e-4), batch)]
    if peer_layout:
        cl = torch.channels_last
        theirs_cl, step_cl = build_multivae(
            model,
            m,
            ours.config.latent_dim,
            {k: apply_memory_format(copy.deepcopy(v), cl) for k, v in encoders.items()},
            {k: apply_memory_format(copy.deepcopy(v), cl) for k, v in decoders.items()},
        )
        cases.append((step_cl, torch.optim.Adam(theirs_cl.parameters(), lr=1e-4), to_memory_format(batch, cl)))
    return cases


def floor_step(name: str, model, batch, opt) -> None:
    """The passes the objective cannot do without, once each, then backward and the optimiser step.
    MoPoE, MVTCAE: every encoder and decoder once (``subset_scaling.bare_step``). MMVAE+: every encoder once,
    then every modality's decoder from every modality's sample (M^2 decodes: each sample z_r reconstructs
    every modality, with w_r for its own and a w drawn from the auxiliary prior for the others)."""
    if name != "mmvaeplus":
        return bare_step(model, batch, opt)
    opt.zero_grad(set_to_none=True)
    x, names = batch["x"], model.modality_names
    samples = {}
    for m in names:
        lw, rw, lz, rz = model.encoders[m](x[m])
        samples[m] = (lw + torch.randn_like(lw) * softmax_scale(rw), lz + torch.randn_like(lz) * softmax_scale(rz))
    loss = 0.0
    for r in names:
        w_r, z_r = samples[r]
        for d in names:
            w = w_r if d == r else torch.randn_like(w_r)
            loss = loss + (model.decoders[d](torch.cat([w, z_r], -1)) - x[d]).abs().sum() / len(z_r)
    loss.backward()
    opt.step()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def side_by_side(
    model: str,
    m: int,
    batch_size: int,
    repeats: int,
    overrides: dict | None = None,
    with_floor: bool = False,
    peer_layout: bool = False,
):
    """Medians of (mmbench, MultiVae[, floor][, MultiVae channels-last]) step seconds, alternating step by step."""
    cases = pair(model, m, batch_size, overrides, peer_layout)
    (ours, opt, our_batch), (step, their_opt, batch) = cases[:2]
    runs = [lambda: model_step(ours, our_batch, opt), lambda: step(batch["x"], their_opt)]
    if with_floor:
        runs.append(lambda: floor_step(model, ours, our_batch, opt))
    if peer_layout:
        step_cl, opt_cl, batch_cl = cases[2]
        runs.append(lambda: step_cl(batch_cl["x"], opt_cl))
    times = [[] for _ in runs]
    for run in runs:
        run()
    for _ in range(repeats):
        for run, t in zip(runs, times):
            t.append(timed(run))
    return tuple(statistics.median(t) for t in times)


def multivae_finishes(m: int, batch_size: int, limit: float) -> bool:
    """Whether MultiVae's MoPoE takes one step at this M within ``limit`` seconds (in a child process)."""
    try:
        subprocess.run(
            [sys.executable, __file__, "--probe", str(m), "--batch", str(batch_size)],
            check=True,
            timeout=limit,
            capture_output=True,
        )
        return True
    except subprocess.TimeoutExpired:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--modalities", type=int, default=5)
    p.add_argument("--models", nargs="*", default=["mopoe", "mvtcae", "mmvaeplus"])
    p.add_argument("--scaling", type=int, nargs="*", default=[2, 3, 4, 5, 6, 7, 8, 9, 10])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=float, default=60.0, help="seconds MultiVae's first step may take (scaling)")
    p.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        _, (step, opt, batch) = pair("mopoe", args.probe, args.batch)
        step(batch["x"], opt)
        return 0
    from importlib.metadata import version

    print(
        f"mmbench vs multivae {version('multivae')}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"B={args.batch}, identical network modules, median of {args.repeats} alternating steps"
    )
    print(
        "| case | mmbench s/step | MultiVae s/step | ratio | goal | pass | floor s/step | floor/MultiVae "
        "| MultiVae channels-last s/step | mmbench/that |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        ours, theirs, floor, theirs_cl = side_by_side(
            model, args.modalities, args.batch, args.repeats, with_floor=True, peer_layout=True
        )
        r = ours / theirs
        print(
            f"| {model}, M={args.modalities} | {ours:.3f} | {theirs:.3f} | {r:.2f}x | <= {GOAL}x | "
            f"{'pass' if r <= GOAL else 'FAIL'} | {floor:.3f} | {floor / theirs:.2f}x | {theirs_cl:.3f} | "
            f"{ours / theirs_cl:.2f}x |",
            flush=True,
        )
    if args.scaling:
        print("\n| M | mmbench exact s | mmbench stratified s | MultiVae s | exact/MultiVae | stratified/MultiVae |")
        print("|---|---|---|---|---|---|")
        finishes = True
        for m in args.scaling:
            finishes = finishes and multivae_finishes(m, args.batch, args.limit)
            exact, theirs = side_by_side("mopoe", m, args.batch, args.repeats) if finishes else (None, None)
            if not finishes:
                (ours, opt, batch), _ = pair("mopoe", m, args.batch)
                model_step(ours, batch, opt)
                exact = statistics.median(timed(lambda: model_step(ours, batch, opt)) for _ in range(args.repeats))
            (strat, opt, batch), _ = pair("mopoe", m, args.batch, {"kl_estimator": "stratified"})
            model_step(strat, batch, opt)
            stratified = statistics.median(timed(lambda: model_step(strat, batch, opt)) for _ in range(args.repeats))
            their_cell = f"{theirs:.3f}" if finishes else f"no step within {args.limit:.0f} s"
            ratios = f"{exact / theirs:.2f}x | {stratified / theirs:.2f}x" if finishes else "- | -"
            print(f"| {m} | {exact:.3f} | {stratified:.3f} | {their_cell} | {ratios} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

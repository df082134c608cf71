"""The trainer: Adam over epochs (or a step budget) on a device, in fp32 or bf16, alone or data-parallel (DDP),
with step checkpoints that resume mid-epoch exactly, a training log, a NaN guard and a progress bar.

Exact resume: a checkpoint holds the weights, the optimiser, the step, the epoch and the position inside
it, the data-order generator's state at the start of that epoch (so the epoch's permutation is drawn
again and its first ``position`` batches skipped), every rank's torch RNG states (CPU and CUDA), the
running sums of the epoch's loss terms (per rank), the history and the training seconds. A run resumed from
it computes what the uninterrupted run computes: bit for bit on the CPU with the same world size; on GPUs up
to the non-deterministic kernels of cuDNN and atomics-based reductions (autotuning is on for speed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from mmbench.data.base import MultimodalDataset
from mmbench.device import autocast, synchronize
from mmbench.errors import MMBenchError
from mmbench.model import MultimodalVAE
from mmbench.storage.checkpoint import checkpoint_exists, load_checkpoint, save_model
from mmbench.training.distributed import DistEnv, all_gather_objects, all_reduce_sum, shard
from mmbench.training.log import TrainLog
from mmbench.training.memory_format import apply_memory_format, resolve_memory_format, to_memory_format
from mmbench.training.options import RunOptions


class NonFiniteLossError(MMBenchError):
    """The loss became NaN or infinite; the message names the step and the last finite checkpoint."""


@dataclass
class TrainResult:
    """What a training run did: optimiser steps, epochs completed, wall seconds of training (summed over
    resumed sessions; checkpoint writes excluded), mean loss terms per epoch, and this session's throughput
    (examples/s over the global batch, s/step; 0 when the session took no step)."""

    steps: int
    epochs: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    examples_per_s: float = 0.0
    s_per_step: float = 0.0


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class _Sums:
    """Running sums of the loss terms weighted by rows, reduced over ranks when read."""

    def __init__(self, state: dict | None = None):
        self.values: dict[str, float] = dict((state or {}).get("values", {}))
        self.rows = (state or {}).get("rows", 0)

    def add(self, terms: dict[str, float], rows: int) -> None:
        for k, v in terms.items():
            self.values[k] = self.values.get(k, 0.0) + v * rows
        self.rows += rows

    def means(self, env: DistEnv) -> dict[str, float]:
        keys = sorted(self.values)
        t = torch.tensor([self.values[k] for k in keys] + [float(self.rows)], dtype=torch.float64)
        t = all_reduce_sum(t, env)
        return {k: float(t[i] / max(float(t[-1]), 1.0)) for i, k in enumerate(keys)}

    def state(self) -> dict:
        return {"values": dict(self.values), "rows": self.rows}


def train(
    model: MultimodalVAE,
    data: MultimodalDataset,
    *,
    seed: int = 0,
    checkpoint: Path | None = None,
    options: RunOptions | None = None,
    device: torch.device | str = "cpu",
    env: DistEnv | None = None,
    progress: bool = True,
    log=print,
    started: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` for config.epochs (stopping early at config.max_steps if set).

    ``device`` is where the model, the optimiser state and the batches live (``data`` already placed there,
    or with its ``batch_device`` set); the model's kernels and every batch's images are put in the layout of
    options.memory_format (``mmbench.training.memory_format``). In a data-parallel run (``env`` with world_size > 1 and the process
    group joined) each rank takes its slice of every global batch of config.batch_size rows. With
    ``checkpoint`` the state is saved every options.checkpoint_every steps and at the end (rank 0; the
    previous checkpoint kept) and a run finds and resumes from it; the log goes beside it. ``started`` is
    called once, before the first step, with the step training starts from (0, or the resumed checkpoint's).
    """
    cfg = model.config
    options = options or RunOptions()
    env = env or DistEnv()
    device = torch.device(device)
    if set(model.modality_names) - set(data.modality_names):
        raise MMBenchError(f"model modalities {model.modality_names} are not all in dataset {data.modality_names}")
    if env.distributed and cfg.batch_size < env.world_size:
        raise MMBenchError(
            f"batch_size {cfg.batch_size} is smaller than the {env.world_size} processes of the run; "
            "each process needs one row of every batch at least"
        )
    model.to(device)
    layout = resolve_memory_format(options.memory_format, device)
    apply_memory_format(model, layout)
    generator = torch.Generator().manual_seed(seed)  # the data order: the same on every rank
    torch.manual_seed(seed + env.rank)  # the model's own noise: one stream per rank
    optimizer = model.make_optimizer()
    epoch, position, steps, history, seconds_before = 0, 0, 0, [], 0.0
    sums = _Sums()
    epoch_order_state = generator.get_state()
    if checkpoint is not None and checkpoint_exists(checkpoint):
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, steps, history = state["epoch"], state["steps"], state["history"]
        position, seconds_before = state.get("position", 0), state.get("seconds", 0.0)
        rank_sums = state.get("sums") or [None]
        sums = _Sums(rank_sums[env.rank] if len(rank_sums) == env.world_size else None)
        generator.set_state(state["generator"])
        epoch_order_state = state.get("epoch_generator", state["generator"])
        rng = state.get("rng") or [{"cpu": state["torch_rng"]}]
        if len(rng) != env.world_size:
            log(
                f"warning: checkpoint was written by {len(rng)} process(es), this run has {env.world_size}; "
                "the data slices and noise streams change, so the resumed run is not bit-identical"
            )
        _set_rng_state(rng[env.rank % len(rng)], device)
        if env.is_main:
            log(f"resuming from {checkpoint} at epoch {epoch}, batch {position} (step {steps})")

    if started is not None:
        started(steps)
    per_epoch = data.num_batches(cfg.batch_size)
    last_rows = len(data) - (per_epoch - 1) * cfg.batch_size
    dropped = 1 if env.distributed and last_rows < env.world_size else 0  # see the loop: too small to split
    total = cfg.epochs * (per_epoch - dropped)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    net = model
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    trainlog = (
        TrainLog(Path(checkpoint).parent, steps, tensorboard=options.tensorboard)
        if checkpoint is not None and env.is_main
        else None
    )
    session_steps, session_examples, session_seconds = 0, 0, 0.0
    window_start, window_steps, window_examples = time.perf_counter(), 0, 0
    t0 = time.perf_counter()

    def save() -> None:
        nonlocal t0, seconds_before, session_seconds, window_start
        synchronize(device)
        now = time.perf_counter()
        seconds_before += now - t0
        session_seconds += now - t0
        rng = all_gather_objects(_rng_state(device), env)
        rank_sums = all_gather_objects(sums.state(), env)
        if checkpoint is not None and env.is_main:
            save_model(
                checkpoint,
                model,
                {
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "position": position,
                    "steps": steps,
                    "history": history,
                    "sums": rank_sums,
                    "generator": generator.get_state(),
                    "epoch_generator": epoch_order_state,
                    "rng": rng,
                    "seconds": seconds_before,
                    "world_size": env.world_size,
                },
                keep_previous=True,
            )
        t0 = time.perf_counter()
        window_start += t0 - now  # checkpoint writes do not count against throughput

    model.train()
    bar = tqdm(
        total=total,
        initial=min(steps, total),
        desc=f"train {model.registry_name}",
        unit="step",
        disable=not progress or not env.is_main,
        dynamic_ncols=True,
    )
    window = _Sums()
    saved_step = steps
    try:
        while epoch < cfg.epochs and steps < total:
            if position == 0:
                epoch_order_state = generator.get_state()
            generator.set_state(epoch_order_state)
            order = torch.randperm(len(data), generator=generator)
            for i in range(position, per_epoch):
                rows = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                mine = shard(rows, env)
                position = i + 1
                if env.distributed and len(rows) < env.world_size:
                    continue  # a last batch too small to give every rank a row is dropped on every rank
                batch = to_memory_format(data.batch(mine), layout)
                model.begin_step(steps, per_epoch)
                with autocast(device, cfg.precision):
                    out = net(batch)
                loss = out.loss.float()
                finite = bool(torch.isfinite(loss))
                if env.distributed:  # every rank stops together when one rank's slice is not finite
                    finite = all_reduce_sum(torch.tensor([float(not finite)]), env).item() == 0
                if not finite:
                    raise NonFiniteLossError(
                        f"loss is {loss.item() if not torch.isfinite(loss) else 'not finite on another rank'} "
                        f"at step {steps} (epoch {epoch}); "
                        + (f"last good state is in {checkpoint}" if checkpoint else "no checkpoint was kept")
                        + "; try a smaller lr"
                        + (' or precision = "fp32"' if cfg.precision != "fp32" else "")
                    )
                optimizer.zero_grad(set_to_none=True)
                # DDP averages gradients over ranks; weighting by the slice's share keeps uneven slices exact.
                (loss * (len(mine) * env.world_size / len(rows)) if env.distributed else loss).backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                steps += 1
                session_steps += 1
                session_examples += len(rows)
                window_steps += 1
                window_examples += len(rows)
                terms = {"loss": loss.item(), **out.terms}
                sums.add(terms, len(mine))
                window.add(terms, len(mine))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{terms['loss']:.1f}")
                if steps % options.log_every == 0 or steps >= total:
                    synchronize(device)
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    entry = {
                        "step": steps,
                        "epoch": epoch,
                        **window.means(env),
                        "lr": optimizer.param_groups[0]["lr"],
                        "examples_per_s": window_examples / elapsed,
                        "s_per_step": elapsed / window_steps,
                    }
                    if trainlog is not None:
                        trainlog.write(entry)
                    window = _Sums()
                    window_start, window_steps, window_examples = time.perf_counter(), 0, 0
                if steps >= total:
                    break
                if steps % options.checkpoint_every == 0:
                    save()
                    saved_step = steps
            if position == per_epoch or steps >= total:  # an epoch ends (or the step budget ends it early)
                epoch += 1
                position = 0
                history.append({"epoch": epoch, "steps": steps, **sums.means(env)})
                sums = _Sums()
        if steps != saved_step:
            save()
    finally:
        bar.close()
        if trainlog is not None:
            trainlog.close()
    model.eval()
    # every session that took a step ended with save(), which added its time to seconds_before
    return TrainResult(
        steps,
        epoch,
        seconds_before,
        history,
        examples_per_s=session_examples / session_seconds if session_steps else 0.0,
        s_per_step=session_seconds / session_steps if session_steps else 0.0,
    )

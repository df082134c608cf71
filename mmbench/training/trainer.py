"""The trainer: Adam over epochs (or a step budget) on a device, in fp32 or bf16, alone or data-parallel (DDP),
with step checkpoints that resume mid-epoch exactly, a training log, a NaN guard and a progress bar.

Exact resume: a checkpoint holds the weights, the optimiser and the train state (``mmbench.training.state``):
the step, the epoch and the position inside it, the data-order generator's state at the start of that epoch
(so the epoch's permutation is drawn again and its first ``position`` batches skipped), every rank's torch RNG
states (CPU and CUDA), the running sums of the epoch's loss terms (per rank), the history and the training
seconds. A run resumed from it computes what the uninterrupted run computes: bit for bit on the CPU with the
same world size; on GPUs up to the non-deterministic kernels of cuDNN and atomics-based reductions (autotuning
is on for speed). Checkpoints of older layouts are migrated when read (``state.migrate_checkpoint``).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from mmbench.data.base import MultimodalDataset
from mmbench.device import autocast, synchronize
from mmbench.errors import MMBenchError
from mmbench.model import MultimodalVAE
from mmbench.storage.checkpoint import checkpoint_exists, save_model
from mmbench.training.distributed import DistEnv, all_reduce_sum, shard
from mmbench.training.log import TrainLog
from mmbench.training.memory_format import apply_memory_format, resolve_memory_format, to_memory_format
from mmbench.training.options import RunOptions
from mmbench.training.state import TermSums, TrainState, read_train_checkpoint

logger = logging.getLogger(__name__)


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
    log: Callable[[str], None] | None = None,
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
    log = log or logger.info
    cfg = model.config
    options = options or RunOptions()
    env = env or DistEnv()
    device = torch.device(device)
    _check_fits(model, data, env)
    model.to(device)
    layout = resolve_memory_format(options.memory_format, device)
    apply_memory_format(model, layout)
    state = TrainState.start(seed)  # the data order: the same on every rank
    torch.manual_seed(seed + env.rank)  # the model's own noise: one stream per rank
    optimizer = model.make_optimizer()
    if checkpoint is not None and checkpoint_exists(checkpoint):
        _resume(checkpoint, model, optimizer, state, env, device, log)
    if started is not None:
        started(state.steps)
    per_epoch, total = _schedule(data, cfg, env)
    net = _data_parallel(model, env, device)
    trainlog = (
        TrainLog(Path(checkpoint).parent, state.steps, tensorboard=options.tensorboard)
        if checkpoint is not None and env.is_main
        else None
    )
    clock = _Clock()
    model.train()
    bar = tqdm(
        total=total,
        initial=min(state.steps, total),
        desc=f"train {model.registry_name}",
        unit="step",
        disable=not progress or not env.is_main,
        dynamic_ncols=True,
    )
    saved_step = state.steps
    try:
        while state.epoch < cfg.epochs and state.steps < total:
            order = state.epoch_order(len(data))
            for i in range(state.position, per_epoch):
                rows = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                state.position = i + 1
                if env.distributed and len(rows) < env.world_size:
                    continue  # a last batch too small to give every rank a row is dropped on every rank
                mine = shard(rows, env)
                batch = to_memory_format(data.batch(mine), layout)
                model.begin_step(state.steps, per_epoch)
                with autocast(device, cfg.precision):
                    out = net(batch)
                loss = out.loss.float()
                _stop_unless_finite(loss, state, env, checkpoint, cfg.precision)
                # DDP averages gradients over ranks; weighting by the slice's share keeps uneven slices exact.
                _descend(model, optimizer, loss * (len(mine) * env.world_size / len(rows)) if env.distributed else loss)
                state.steps += 1
                terms = {"loss": loss.item(), **out.terms}
                state.sums.add(terms, len(mine))
                clock.count(len(rows), terms, len(mine))
                bar.update(1)
                bar.set_postfix(epoch=state.epoch, loss=f"{terms['loss']:.1f}")
                if state.steps % options.log_every == 0 or state.steps >= total:
                    _log_window(trainlog, clock, state, optimizer, env, device)
                if state.steps >= total:
                    break
                if state.steps % options.checkpoint_every == 0:
                    _save(checkpoint, model, optimizer, state, clock, env, device)
                    saved_step = state.steps
            state.end_epoch(env)  # every batch of the epoch taken, or the step budget ended it early
        if state.steps != saved_step:
            _save(checkpoint, model, optimizer, state, clock, env, device)
    finally:
        bar.close()
        if trainlog is not None:
            trainlog.close()
    model.eval()
    # every session that took a step ended with a save, which added its time to state.seconds
    return TrainResult(state.steps, state.epoch, state.seconds, state.history, **clock.throughput())


def _check_fits(model: MultimodalVAE, data: MultimodalDataset, env: DistEnv) -> None:
    """MMBenchError unless ``data`` has the model's modalities and every rank gets a row of each batch."""
    if set(model.modality_names) - set(data.modality_names):
        raise MMBenchError(f"model modalities {model.modality_names} are not all in dataset {data.modality_names}")
    if env.distributed and model.config.batch_size < env.world_size:
        raise MMBenchError(
            f"batch_size {model.config.batch_size} is smaller than the {env.world_size} processes of the run; "
            "each process needs one row of every batch at least"
        )


def _schedule(data: MultimodalDataset, cfg, env: DistEnv) -> tuple[int, int]:
    """(batches an epoch, optimiser steps of the run): config.epochs epochs, less a last batch too small to give
    every rank a row (skipped by the loop), at most config.max_steps."""
    per_epoch = data.num_batches(cfg.batch_size)
    last_rows = len(data) - (per_epoch - 1) * cfg.batch_size
    dropped = 1 if env.distributed and last_rows < env.world_size else 0
    total = cfg.epochs * (per_epoch - dropped)
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


def _data_parallel(model: MultimodalVAE, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in DDP in a data-parallel run (its gradients averaged over the ranks), else itself."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _resume(
    path: Path,
    model: MultimodalVAE,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    env: DistEnv,
    device: torch.device,
    log,
) -> None:
    """Restore a checkpoint in two halves: the model's weights, then the training state (optimiser, train state,
    this rank's RNG states); checkpoints of older layouts are migrated first."""
    payload = read_train_checkpoint(path)
    try:
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:  # another model's or config's
        text = " ".join(str(exc).split())
        raise MMBenchError(
            f"checkpoint {path}: fields 'state_dict' and 'optimizer' do not fit this run's model "
            f"({text[:240] or type(exc).__name__}); it is another run's checkpoint, so move it away to start over"
        ) from None
    if payload["world_size"] != env.world_size:
        log(
            f"warning: checkpoint was written by {payload['world_size']} process(es), this run has "
            f"{env.world_size}; the data slices and noise streams change, so the resumed run is not bit-identical"
        )
    state.load_state_dict(payload, env, device)
    if env.is_main:
        log(f"resuming from {path} at epoch {state.epoch}, batch {state.position} (step {state.steps})")


def _stop_unless_finite(
    loss: torch.Tensor, state: TrainState, env: DistEnv, checkpoint: Path | None, precision: str
) -> None:
    """NonFiniteLossError when the loss is NaN or infinite; in a data-parallel run on every rank together when one
    rank's is (a collective call)."""
    finite = bool(torch.isfinite(loss))
    if env.distributed:
        finite = all_reduce_sum(torch.tensor([float(not finite)]), env).item() == 0
    if not finite:
        raise NonFiniteLossError(
            f"loss is {loss.item() if not torch.isfinite(loss) else 'not finite on another rank'} "
            f"at step {state.steps} (epoch {state.epoch}); "
            + (f"last good state is in {checkpoint}" if checkpoint else "no checkpoint was kept")
            + "; try a smaller lr"
            + (' or precision = "fp32"' if precision != "fp32" else "")
        )


def _descend(model: MultimodalVAE, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step down ``loss``'s gradient, its norm clipped to config.grad_clip when that is set."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if model.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), model.config.grad_clip)
    optimizer.step()


class _Clock:
    """This session's training steps, examples (global batch rows) and seconds, and the same for the log window
    (with its loss terms); ``paused()`` stops both clocks while a checkpoint is written."""

    def __init__(self) -> None:
        self.steps, self.examples, self.seconds = 0, 0, 0.0
        self.lap_start = time.perf_counter()
        self._open_window()

    def _open_window(self) -> None:
        self.window, self.window_steps, self.window_examples = TermSums(), 0, 0
        self.window_start = time.perf_counter()

    def count(self, examples: int, terms: dict[str, float], rows: int) -> None:
        """One step over ``examples`` rows of the global batch, ``rows`` of them this rank's."""
        self.steps += 1
        self.examples += examples
        self.window_steps += 1
        self.window_examples += examples
        self.window.add(terms, rows)

    def close_window(self, device: torch.device, env: DistEnv) -> tuple[dict[str, float], dict[str, float]]:
        """(mean loss terms over every rank, {"examples_per_s", "s_per_step"}) of the window, and a new window.
        A collective call in a data-parallel run."""
        synchronize(device)
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        speed = {"examples_per_s": self.window_examples / elapsed, "s_per_step": elapsed / self.window_steps}
        means = self.window.means(env)
        self._open_window()
        return means, speed

    @contextmanager
    def paused(self, device: torch.device) -> Iterator[float]:
        """The clocks stop inside (checkpoint writes are not training); yields the seconds trained since the last
        pause (the device synchronised first), which this session's seconds now include."""
        synchronize(device)
        now = time.perf_counter()
        trained = now - self.lap_start
        self.seconds += trained
        yield trained
        self.lap_start = time.perf_counter()
        self.window_start += self.lap_start - now

    def throughput(self) -> dict[str, float]:
        """{"examples_per_s", "s_per_step"} of this session up to its last pause; 0 when it took no step."""
        if not self.steps:
            return {"examples_per_s": 0.0, "s_per_step": 0.0}
        return {"examples_per_s": self.examples / self.seconds, "s_per_step": self.seconds / self.steps}


def _log_window(
    trainlog: TrainLog | None,
    clock: _Clock,
    state: TrainState,
    optimizer: torch.optim.Optimizer,
    env: DistEnv,
    device: torch.device,
) -> None:
    """One line of the training log: the steps since the last line (every rank calls it; rank 0 writes)."""
    means, speed = clock.close_window(device, env)
    entry = {"step": state.steps, "epoch": state.epoch, **means, "lr": optimizer.param_groups[0]["lr"], **speed}
    if trainlog is not None:
        trainlog.write(entry)


def _save(
    path: Path | None,
    model: MultimodalVAE,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    clock: _Clock,
    env: DistEnv,
    device: torch.device,
) -> None:
    """A step checkpoint: the model's payload, the optimiser's and the train state's, written by rank 0 (every rank
    calls it: the train state gathers the ranks' RNG states and sums) with the previous one kept; the time of the
    write is not training time."""
    with clock.paused(device) as trained:
        state.seconds += trained
        entries = state.state_dict(env, device)
        if path is not None and env.is_main:
            save_model(path, model, {"optimizer": optimizer.state_dict(), **entries}, keep_previous=True)

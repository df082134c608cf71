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
from typing import Any, Callable, Iterator, Protocol

import torch
from tqdm import tqdm

from mmbench.data.base import MultimodalDataset
from mmbench.device import autocast, synchronize
from mmbench.errors import MMBenchError
from mmbench.model import MultimodalVAE
from mmbench.optim import module_parameters
from mmbench.stages import REUSE_OFF, Stage, check_stages
from mmbench.storage.checkpoint import checkpoint_exists, save_model
from mmbench.training.distributed import DistEnv, all_gather_objects, all_reduce_sum, shard
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
    resumed sessions; checkpoint writes excluded), mean loss terms per epoch, this session's throughput
    (examples/s over the global batch, s/step; 0 when the session took no step) and, for a model trained in
    stages, each stage's cost: [{"name", "steps", "epochs", "seconds", "reused": the stored result's id or None}]."""

    steps: int
    epochs: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    examples_per_s: float = 0.0
    s_per_step: float = 0.0
    stages: list[dict] = field(default_factory=list)


class StageStore(Protocol):
    """Finished reusable stages shared between runs (``mmbench.runs.stages.RunStages`` implements it)."""

    def find(self, stage: Stage, *, claim: bool = False) -> str | None:
        """The id of a stored result of ``stage`` this run loads instead of training it, or None; with ``claim``,
        None only once this run holds the claim to train it (another job's training of it is waited for)."""

    def load(self, stage: Stage, result_id: str) -> dict:
        """The payload (``stage_payload``'s layout) of stored result ``result_id``."""

    def publish(self, stage: Stage, payload: dict, cost: dict) -> str:
        """Store the result of ``stage`` that this run trained (releasing its claim); returns its id."""

    def reclaim(self, stage: Stage) -> None:
        """Hold the claim of ``stage`` again when resuming in its middle, unless another live job holds it."""

    def close(self) -> None:
        """Release every claim this run still holds."""


STAGE_SEED_STRIDE = 1000  # stage k's noise streams start from seed + k * STAGE_SEED_STRIDE + rank


@dataclass(frozen=True)
class _Leg:
    """One stage of the run: its index, the ``Stage`` (None: the whole model of an unstaged one) and its budget
    (epochs, lr, batch_size, max_steps: the model's config, or the stage's ``StageConfig``)."""

    index: int
    stage: Stage | None
    budget: Any

    @property
    def name(self) -> str:
        return self.stage.name if self.stage is not None else ""


def _legs(model: MultimodalVAE) -> list[_Leg]:
    if not model.stages:
        return [_Leg(0, None, model.config)]
    check_stages(type(model))
    return [_Leg(k, s, model.stage_config(s)) for k, s in enumerate(model.stages)]


@dataclass
class _StageAt:
    """A checkpoint's ``stage`` entry: the stage's index and name, whether it is done (its boundary checkpoint,
    written after ``end_stage``), the run's steps and training seconds when it began, and the costs of the
    stages done. A checkpoint without one (an unstaged model's, or an older trainer's) is stage 0, not done."""

    index: int = 0
    name: str = ""
    done: bool = False
    offset: int = 0
    seconds: float = 0.0
    costs: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, payload: dict | None, legs: list[_Leg], path: Path | None) -> "_StageAt":
        entry = (payload or {}).get("stage")
        if entry is None:
            return cls()
        at = cls(
            int(entry["index"]),
            str(entry["name"]),
            bool(entry["done"]),
            int(entry["offset"]),
            float(entry["seconds"]),
            [dict(c) for c in entry["costs"]],
        )
        if at.index >= len(legs) or legs[at.index].name != at.name:
            raise MMBenchError(
                f"checkpoint {path}: field 'stage' is stage {at.index} {at.name!r}, which this model does not have "
                f"(its stages: {[leg.name for leg in legs]}); it is another run's checkpoint, so move it away"
            )
        return at

    def entry(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "done": self.done,
            "offset": self.offset,
            "seconds": self.seconds,
            "costs": [dict(c) for c in self.costs],
        }


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
    store: StageStore | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` for config.epochs (stopping early at config.max_steps if set).

    ``device`` is where the model, the optimiser state and the batches live (``data`` already placed there,
    or with its ``batch_device`` set); the model's kernels and every batch's images are put in the layout of
    options.memory_format (``mmbench.training.memory_format``). In a data-parallel run (``env`` with world_size > 1 and the process
    group joined) each rank takes its slice of every global batch of config.batch_size rows. With
    ``checkpoint`` the state is saved every options.checkpoint_every steps and at the end (rank 0; the
    previous checkpoint kept) and a run finds and resumes from it; the log goes beside it. ``started`` is
    called once, before the first step, with the step training starts from (0, or the resumed checkpoint's).

    A model with ``stages`` trains them in order, each with its own budget (its ``StageConfig``), a fresh
    optimiser over its modules' parameters (the others frozen while it trains), and noise re-seeded from ``seed``
    and the stage's index; ``begin_stage`` before its first step, ``end_stage`` after its last, then a boundary
    checkpoint. Steps and the log count across stages (log lines and history entries carry "stage"); epochs count
    within a stage. ``store`` shares finished reusable stages between runs: a stored result is loaded instead of
    training the stage, and a stage trained here is published to it.
    """
    log = log or logger.info
    options = options or RunOptions()
    env = env or DistEnv()
    device = torch.device(device)
    legs = _legs(model)
    _check_fits(model, data, env, legs)
    model.to(device)
    layout = resolve_memory_format(options.memory_format, device)
    apply_memory_format(model, layout)
    state = TrainState.start(seed)  # the data order: the same on every rank
    torch.manual_seed(seed + env.rank)  # the model's own noise: one stream per rank
    payload = None
    if checkpoint is not None and checkpoint_exists(checkpoint):
        payload = _resume_weights(checkpoint, model, env, log)
    at = _StageAt.of(payload, legs, checkpoint)
    if payload is not None and at.done:  # at a boundary: the next stage starts afresh
        state.load_state_dict(payload, env, device)
    steps_now = payload["steps"] if payload is not None else 0
    if payload is not None and env.is_main:
        stage = f"stage {at.name!r} " + ("done, " if at.done else "") if at.name else ""
        log(
            f"resuming from {checkpoint} at {stage}epoch {payload['epoch']}, batch {payload['position']} "
            f"(step {steps_now})"
        )
    if started is not None:
        started(steps_now)
    trainlog = (
        TrainLog(Path(checkpoint).parent, steps_now, tensorboard=options.tensorboard)
        if checkpoint is not None and env.is_main
        else None
    )
    run = _Run(model, data, checkpoint, options, env, device, layout, trainlog, _Clock(), progress, store, log)
    costs = at.costs  # each stage's cost joins it as the stage ends
    frozen = _Frozen(model)
    try:
        for leg in legs[at.index + 1 if at.done else at.index :]:
            resume = payload if payload is not None and not at.done and leg.index == at.index else None
            if leg.stage is not None and resume is None:
                state = state.next_stage(seed + leg.index)
                torch.manual_seed(seed + STAGE_SEED_STRIDE * leg.index + env.rank)
                at = _StageAt(leg.index, leg.name, False, state.steps, state.seconds, costs)
                if _reuse(run, leg, state, at):
                    continue
            elif (
                resume is not None
                and store is not None
                and leg.stage is not None
                and leg.stage.reusable
                and not env.distributed
            ):
                store.reclaim(leg.stage)  # its claim from before the interruption, so that no other run trains it
            state = _train_leg(run, leg, state, at, resume, frozen)
    finally:
        if store is not None:
            store.close()
        frozen.restore()
        if trainlog is not None:
            trainlog.close()
    model.eval()
    # every session that took a step ended with a save, which added its time to state.seconds
    epochs = sum(c["epochs"] for c in costs) if legs[0].stage is not None else state.epoch
    return TrainResult(state.steps, epochs, state.seconds, state.history, **run.clock.throughput(), stages=costs)


@dataclass
class _Run:
    """What every stage of one ``train`` call shares."""

    model: MultimodalVAE
    data: MultimodalDataset
    checkpoint: Path | None
    options: RunOptions
    env: DistEnv
    device: torch.device
    layout: Any
    trainlog: TrainLog | None
    clock: "_Clock"
    progress: bool
    store: StageStore | None
    log: Callable[[str], None]


def _train_leg(run: _Run, leg: _Leg, state: TrainState, at: _StageAt, resume: dict | None, frozen) -> TrainState:
    """Train one stage (or the whole unstaged model) from ``state`` (or from the checkpoint ``resume``, a run
    stopped inside it) to the end of its budget; a staged one then ends with ``end_stage`` and a boundary
    checkpoint, and publishes its result when it is reusable."""
    model, data, env, device, options, cfg = run.model, run.data, run.env, run.device, run.options, leg.budget
    checkpoint, clock = run.checkpoint, run.clock
    if leg.stage is None:
        params = list(model.parameters())
        optimizer = model.make_optimizer()
    else:
        model.begin_stage(leg.stage)
        params = module_parameters(model, leg.stage.modules, model.registry_name or type(model).__name__)
        frozen.only(params)
        optimizer = model.make_optimizer(params, cfg.lr)
    entry = (lambda s: _stage_entry(at, leg, s, done=False)) if leg.stage is not None else None
    if resume is not None:
        _resume_training(checkpoint, resume, optimizer, state, env, device)
    per_epoch, total = _schedule(data, cfg, env)
    offset = at.offset
    net = _data_parallel(model, env, device)
    model.train()
    bar = tqdm(
        total=total,
        initial=min(state.steps - offset, total),
        desc=f"train {model.registry_name}" + (f" {leg.name}" if leg.stage is not None else ""),
        unit="step",
        disable=not run.progress or not env.is_main,
        dynamic_ncols=True,
    )
    saved_step = state.steps
    try:
        while state.epoch < cfg.epochs and state.steps - offset < total:
            order = state.epoch_order(len(data))
            for i in range(state.position, per_epoch):
                rows = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                state.position = i + 1
                if env.distributed and len(rows) < env.world_size:
                    continue  # a last batch too small to give every rank a row is dropped on every rank
                mine = shard(rows, env)
                batch = to_memory_format(data.batch(mine), run.layout)
                model.begin_step(state.steps - offset, per_epoch)
                with autocast(device, model.config.precision):
                    out = net(batch)
                loss = out.loss.float()
                _stop_unless_finite(loss, state, env, checkpoint, model.config.precision)
                # DDP averages gradients over ranks; weighting by the slice's share keeps uneven slices exact.
                _descend(
                    model,
                    optimizer,
                    loss * (len(mine) * env.world_size / len(rows)) if env.distributed else loss,
                    params,
                )
                state.steps += 1
                terms = {"loss": loss.item(), **out.terms}
                state.sums.add(terms, len(mine))
                clock.count(len(rows), terms, len(mine))
                bar.update(1)
                bar.set_postfix(epoch=state.epoch, loss=f"{terms['loss']:.4g}")
                if state.steps % options.log_every == 0 or state.steps - offset >= total:
                    _log_window(run.trainlog, clock, state, optimizer, env, device, leg.name)
                if state.steps - offset >= total:
                    break
                if state.steps % options.checkpoint_every == 0:
                    _save(checkpoint, model, optimizer, state, clock, env, device, entry)
                    saved_step = state.steps
            state.end_epoch(env)  # every batch of the epoch taken, or the step budget ended it early
            if leg.stage is not None:
                state.history[-1]["stage"] = leg.name
        if leg.stage is None:
            if state.steps != saved_step:
                _save(checkpoint, model, optimizer, state, clock, env, device)
            return state
        changed = _end_stage(model, leg.stage, data)
        _save(checkpoint, model, optimizer, state, clock, env, device, lambda s: _stage_entry(at, leg, s, done=True))
    finally:
        bar.close()
    cost = at.costs[-1]
    if run.store is not None and leg.stage.reusable and env.is_main:
        run.store.publish(leg.stage, stage_payload(model, leg.stage, changed), cost)
    return state


def _stage_entry(at: _StageAt, leg: _Leg, state: TrainState, *, done: bool) -> dict:
    """The checkpoint's ``stage`` entry now; at a boundary (``done``) the stage's cost joins ``at.costs``."""
    if done:
        cost = {
            "name": leg.name,
            "steps": state.steps - at.offset,
            "epochs": state.epoch,
            "seconds": state.seconds - at.seconds,
            "reused": None,
        }
        at.costs[:] = [c for c in at.costs if c["name"] != leg.name] + [cost]
        at.done = True
    return at.entry()


def _reuse(run: _Run, leg: _Leg, state: TrainState, at: _StageAt) -> bool:
    """Load a stored result of a reusable stage instead of training it, when the store has one this run may use
    (the stage's ``reuse`` not "off"); then the stage is done with 0 steps and a boundary checkpoint is written."""
    stage = leg.stage
    if run.store is None or not stage.reusable or leg.budget.reuse == REUSE_OFF:
        return False
    with run.clock.stopped():
        found = run.store.find(stage, claim=not run.env.distributed)  # data-parallel ranks would time out waiting
    if run.env.distributed:  # rank 0's answer, so that every rank loads the same result or none
        found = all_gather_objects(found, run.env)[0]
    if found is None:
        return False
    load_stage_payload(run.model, stage, run.store.load(stage, found), f"stored stage result {found!r}")
    cost = {"name": stage.name, "steps": 0, "epochs": 0, "seconds": 0.0, "reused": found}
    at.costs[:] = [c for c in at.costs if c["name"] != stage.name] + [cost]
    at.done = True
    optimizer = run.model.make_optimizer(module_parameters(run.model, stage.modules), leg.budget.lr)
    _save(run.checkpoint, run.model, optimizer, state, run.clock, run.env, run.device, lambda s: at.entry())
    if run.env.is_main:
        run.log(f"stage {stage.name!r}: loaded the stored result {found} instead of training it")
    return True


def _end_stage(model: MultimodalVAE, stage: Stage, data: MultimodalDataset) -> dict[str, torch.Tensor]:
    """``model.end_stage`` in eval mode without gradients; the buffers outside the stage's modules it changed."""
    inside = tuple(f"{m}." for m in stage.modules)
    before = {n: b.detach().clone() for n, b in model.named_buffers() if not n.startswith(inside)}
    model.eval()
    with torch.no_grad():
        model.end_stage(stage, data)
    model.train()
    return {
        n: b.detach().cpu().clone()
        for n, b in model.named_buffers()
        if not n.startswith(inside) and (n not in before or not _same_tensor(before[n], b))
    }


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))


def stage_payload(model: MultimodalVAE, stage: Stage, buffers: dict[str, torch.Tensor]) -> dict:
    """A finished stage's result as stored for reuse: {"modules": {name: state_dict}} of the stage's modules and
    {"buffers": {name: tensor}}, the buffers outside them that ``end_stage`` set."""
    modules = {
        m: {k: v.detach().cpu().clone() for k, v in model.get_submodule(m).state_dict().items()} for m in stage.modules
    }
    return {"modules": modules, "buffers": dict(buffers)}


def load_stage_payload(model: MultimodalVAE, stage: Stage, payload: dict, what: str) -> None:
    """Put ``stage_payload``'s result into ``model``; refused in one line naming ``what`` when it does not fit."""
    try:
        for m in stage.modules:
            model.get_submodule(m).load_state_dict(payload["modules"][m])
        for name, value in payload["buffers"].items():
            buffer = model.get_buffer(name)
            if buffer.shape != value.shape:
                raise ValueError(f"buffer {name!r} has shape {tuple(value.shape)}, the model's {tuple(buffer.shape)}")
            with torch.no_grad():
                buffer.copy_(value)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        raise MMBenchError(
            f"{what} does not fit this model's stage {stage.name!r} ({text}); a config field it depends on is "
            "missing from the stage's key, or the model's code changed: train it with reuse = \"off\""
        ) from None


class _Frozen:
    """Which parameters train: during a stage only its modules' (the others' requires_grad off), all of them
    again when training ends (each as it was before)."""

    def __init__(self, model: MultimodalVAE) -> None:
        self.flags = [(p, p.requires_grad) for p in model.parameters()]

    def only(self, params: list[torch.nn.Parameter]) -> None:
        mine = {id(p) for p in params}
        for p, flag in self.flags:
            p.requires_grad_(flag and id(p) in mine)

    def restore(self) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)


def _check_fits(model: MultimodalVAE, data: MultimodalDataset, env: DistEnv, legs: list[_Leg]) -> None:
    """MMBenchError unless ``data`` has the model's modalities and every rank gets a row of each batch."""
    if set(model.modality_names) - set(data.modality_names):
        raise MMBenchError(f"model modalities {model.modality_names} are not all in dataset {data.modality_names}")
    for leg in legs:
        if env.distributed and leg.budget.batch_size < env.world_size:
            where = f"stage {leg.name!r}'s " if leg.stage is not None else ""
            raise MMBenchError(
                f"{where}batch_size {leg.budget.batch_size} is smaller than the {env.world_size} processes of the "
                "run; each process needs one row of every batch at least"
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
    """``model`` wrapped in DDP in a data-parallel run (its gradients averaged over the ranks), else itself. Wrapped
    anew for each stage, after the other stages' parameters are frozen: DDP then syncs only this stage's, so no
    ``find_unused_parameters`` is needed (tests/test_training_device.py checks it against one process)."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _resume_weights(path: Path, model: MultimodalVAE, env: DistEnv, log) -> dict:
    """The first half of a restore: the checkpoint (older layouts migrated) read and the model's weights loaded;
    the training state is the second half (``_resume_training``)."""
    payload = read_train_checkpoint(path)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:  # another model's or config's
        raise _not_this_run(path, exc) from None
    if payload["world_size"] != env.world_size:
        log(
            f"warning: checkpoint was written by {payload['world_size']} process(es), this run has "
            f"{env.world_size}; the data slices and noise streams change, so the resumed run is not bit-identical"
        )
    return payload


def _resume_training(
    path: Path | None,
    payload: dict,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    env: DistEnv,
    device: torch.device,
) -> None:
    """The second half of a restore: the optimiser's state, the train state and this rank's RNG states."""
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise _not_this_run(path, exc) from None
    state.load_state_dict(payload, env, device)


def _not_this_run(path: Path | None, exc: Exception) -> MMBenchError:
    text = " ".join(str(exc).split())
    return MMBenchError(
        f"checkpoint {path}: fields 'state_dict' and 'optimizer' do not fit this run's model "
        f"({text[:240] or type(exc).__name__}); it is another run's checkpoint, so move it away to start over"
    )


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


def _descend(
    model: MultimodalVAE, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.nn.Parameter]
) -> None:
    """One optimiser step down ``loss``'s gradient, the norm of ``params``' gradients (those the optimiser steps)
    clipped to config.grad_clip when that is set."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if model.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, model.config.grad_clip)
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

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The clocks stop inside and count nothing (waiting for another job's stage result is not training)."""
        start = time.perf_counter()
        yield
        waited = time.perf_counter() - start
        self.lap_start += waited
        self.window_start += waited

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
    stage: str = "",
) -> None:
    """One line of the training log: the steps since the last line (every rank calls it; rank 0 writes); a staged
    model's lines name the stage."""
    means, speed = clock.close_window(device, env)
    entry = {"step": state.steps, "epoch": state.epoch, **means, "lr": optimizer.param_groups[0]["lr"], **speed}
    if stage:
        entry["stage"] = stage
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
    stage: Callable[[TrainState], dict] | None = None,
) -> None:
    """A step checkpoint: the model's payload, the optimiser's and the train state's, written by rank 0 (every rank
    calls it: the train state gathers the ranks' RNG states and sums) with the previous one kept; the time of the
    write is not training time. A staged model's adds the entry ``stage`` (given the state, its seconds counted)."""
    with clock.paused(device) as trained:
        state.seconds += trained
        entries = state.state_dict(env, device)
        if stage is not None:
            entries["stage"] = stage(state)
        if path is not None and env.is_main:
            save_model(path, model, {"optimizer": optimizer.state_dict(), **entries}, keep_previous=True)

"""One run: check the machine, load data, build the model, train on the run's device (resuming from a checkpoint;
DDP when several processes), evaluate, write the record."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from mmbench.config import build_config, config_to_dict
from mmbench.data.base import MultimodalDataset
from mmbench.device import check_precision, configure, describe, device_info
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext
from mmbench.metrics.runner import evaluate
from mmbench.registry import DATASETS, MODELS
from mmbench.runs.locks import RunLock, owner_id
from mmbench.runs.spec import RunSpec
from mmbench.storage.atomic import atomic_write_json
from mmbench.storage.checkpoint import checkpoint_exists
from mmbench.storage.provenance import provenance
from mmbench.storage.records import RECORD, SCHEMA, RunRecord, load_record, write_record
from mmbench.training.distributed import DistEnv, destroy_process_group, init_process_group, launch_local, rank_device
from mmbench.training.log import read_log
from mmbench.training.options import RunOptions
from mmbench.training.throughput import GenerationMeter
from mmbench.training.trainer import train

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def load_split(spec: RunSpec, split: str) -> MultimodalDataset:
    adapter = DATASETS.get(spec.dataset)
    try:
        return adapter.load(split=split, **spec.dataset_options)
    except TypeError as exc:
        raise MMBenchError(f"bad options for dataset {spec.dataset!r} ({spec.dataset_options}): {exc}") from exc


def dataset_release(spec: RunSpec) -> str:
    """The adapter's name for the files a run read (``release(**options)``, e.g. PolyMNIST's "published" or
    "offline build, ..."), "" when the adapter does not say."""
    adapter = DATASETS.get(spec.dataset)
    release = getattr(adapter, "release", None)
    return str(release(**spec.dataset_options)) if callable(release) else ""


def load_trained_run(run_dir: Path, purpose: str, device: torch.device | str = "cpu"):
    """(model on ``device``, spec) of a run folder with a trained checkpoint; ``purpose`` completes the
    refusal's sentence."""
    from mmbench.storage.checkpoint import load_model

    run_dir = Path(run_dir)
    if not (run_dir / "spec.json").is_file():
        raise MMBenchError(f"{run_dir} is not a run folder (no spec.json); pass a folder under the runs folder")
    if not checkpoint_exists(run_dir / CHECKPOINT):
        raise MMBenchError(
            f"run {run_dir.name} has no encoder checkpoint ({CHECKPOINT}); {purpose} needs a "
            "trained model, so train the run first (mmbench sweep submit / mmbench train)"
        )
    spec = RunSpec.from_dict(json.loads((run_dir / "spec.json").read_text()))
    model, _ = load_model(run_dir / CHECKPOINT, device)
    return model, spec


def run_status(run_dir: Path) -> str:
    """finished | failed | partial (a checkpoint, no record) | pending."""
    if (run_dir / RECORD).is_file():
        return load_record(run_dir / RECORD).status
    return "partial" if checkpoint_exists(run_dir / CHECKPOINT) else "pending"


def check_machine(spec: RunSpec, options: RunOptions) -> torch.device:
    """This machine's device for the run, checked with its processes and the precision the config asks for."""
    device = options.resolve()
    check_precision(build_config(MODELS.get(spec.model).Config, spec.config).precision, device)
    return device


def prepare(spec: RunSpec, options: RunOptions) -> torch.device:
    """Check everything the run needs before any file is written: names, config, dataset, metrics, and this
    machine's device, precision support and processes. Returns the device."""
    spec.validate()
    return check_machine(spec, options)


def execute(
    spec: RunSpec,
    runs_dir: Path,
    *,
    options: RunOptions | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    job: dict | None = None,
) -> RunRecord | None:
    """Run ``spec`` under runs_dir/<run_id>/ and return its record; a finished run is not run again.

    With options.nproc > 1 the run is started in that many local processes (DDP); in a process that is
    one rank of a data-parallel run (torchrun's or SLURM's environment) it trains its slice, and only rank 0
    evaluates, writes the record and returns it (the other ranks return None). A failure is recorded (status
    "failed", reason) rather than lost; an interruption (Ctrl-C, SIGTERM) leaves the run partial, to resume.
    The run's lock is held throughout: RunLocked when another live job trains it. ``job`` (the scheduler's
    facts: executor, restarts) goes into the record.
    """
    log = log or logger.info
    options = options or RunOptions()
    device = prepare(spec, options)
    env = DistEnv.from_environ()
    run_dir = Path(runs_dir) / spec.run_id
    if run_status(run_dir) == "finished":
        log(f"{spec.run_id}: finished before, skipped")
        return load_record(run_dir / RECORD)
    with RunLock(run_dir, heartbeat=env.is_main):
        if run_status(run_dir) == "finished":  # finished by another job while this one waited
            log(f"{spec.run_id}: finished before, skipped")
            return load_record(run_dir / RECORD)
        if options.nproc > 1 and not env.distributed:
            launch_local(_execute_rank, options.nproc, (spec, Path(runs_dir), options, progress, job))
            return load_record(run_dir / RECORD)
        return _execute(
            spec,
            Path(runs_dir),
            options,
            rank_device(device, env),
            env,
            progress and env.is_main,
            log if env.is_main else _quiet,
            job,
        )


EXECUTIONS = "executions.jsonl"


def _append_execution(run_dir: Path, job: dict, step: int) -> None:
    """One line of RUN/executions.jsonl: who starts training the run now, from which step."""
    entry = {
        **job,
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "from_step": step,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(run_dir / EXECUTIONS, "a") as f:
        f.write(json.dumps(entry) + "\n")


def executions(run_dir: Path) -> list[dict]:
    """Every start of a run's training: job owner, restarts, host, pid, the step it resumed from."""
    return read_log(Path(run_dir) / EXECUTIONS)


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0: rank 0 speaks for the run."""


def _execute_rank(spec: RunSpec, runs_dir: Path, options: RunOptions, progress: bool, job: dict | None) -> None:
    """One process of ``launch_local``: the environment names its rank."""
    env = DistEnv.from_environ()
    device = rank_device(options.resolve(), env)
    if device.type == "cpu":  # the node's cores shared between its processes, not oversubscribed
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.nproc))
    _execute(spec, runs_dir, options, device, env, progress and env.is_main, print if env.is_main else _quiet, job)


def _execute(
    spec: RunSpec,
    runs_dir: Path,
    options: RunOptions,
    device: torch.device,
    env: DistEnv,
    progress: bool,
    log,
    job: dict | None = None,
) -> RunRecord | None:
    run_dir = runs_dir / spec.run_id
    spec_dict = spec.to_dict()
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "spec.json", spec_dict)
    t0 = time.perf_counter()
    cls = MODELS.get(spec.model)
    config = build_config(cls.Config, spec.config)
    record = {
        "schema": SCHEMA,
        "run_id": spec.run_id,
        "spec": spec_dict,
        "status": "failed",
        "failure": None,
        "metrics": [],
        "provenance": provenance(),
        "options": dataclasses.asdict(options),
        "job": {"owner": owner_id(), **(job or {})},
    }
    interrupted = False
    written = None
    # who trains this run, from which step (the trainer knows it once it has read the checkpoint): one line per
    # start, requeues included
    started = (lambda step: _append_execution(run_dir, record["job"], step)) if env.is_main else None
    try:
        init_process_group(env, device)
        configure(device, config.precision)
        info = device_info(device, env.world_size)
        record["device"], record["device_info"] = describe(info), info
        train_data = load_split(spec, "train").to(device)
        test_data = load_split(spec, "test").to(device)
        record["config"] = config_to_dict(config)
        record["n_modalities"] = len(train_data.modalities)
        record["data"] = {"release": dataset_release(spec), "train": len(train_data), "test": len(test_data)}
        torch.manual_seed(spec.seed)
        model = cls(train_data.modalities, config)
        log(
            f"{spec.run_id}: {spec.model} on {spec.dataset} ({len(train_data)} train, {len(test_data)} test, "
            f"M={len(train_data.modalities)}, seed {spec.seed}) on {record['device']}, {config.precision}"
        )
        result = train(
            model,
            train_data,
            seed=spec.seed,
            checkpoint=run_dir / CHECKPOINT,
            options=options,
            device=device,
            env=env,
            progress=progress,
            log=log,
            started=started,
        )
        record["train"] = {
            "steps": result.steps,
            "epochs": result.epochs,
            "seconds": result.seconds,
            "history": result.history,
            "examples_per_s": result.examples_per_s,
            "s_per_step": result.s_per_step,
        }
        if not env.is_main:
            return None
        t1 = time.perf_counter()
        ctx = EvalContext(
            train_data, test_data, Path(runs_dir) / ".cache", seed=spec.seed, progress=progress, device=device
        )
        with GenerationMeter(model, device) as meter:
            rows = evaluate(model, ctx, spec.metrics, spec.metric_options)
        record["metrics"] = [r.to_dict() for r in rows]
        record["generation"] = meter.summary()
        record["timings"] = {
            "train_s": result.seconds,
            "eval_s": time.perf_counter() - t1,
            "total_s": time.perf_counter() - t0,
        }
        record["status"] = "finished"
    except MMBenchError as exc:
        record["failure"] = str(exc)
        raise
    except Exception as exc:
        record["failure"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        raise
    except BaseException:  # Ctrl-C, SIGTERM turned into SystemExit: the run stays partial and resumes
        interrupted = True
        raise
    finally:
        if env.is_main and not interrupted:
            record["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            written = RunRecord.from_dict(record, run_dir / RECORD)  # checked as every reader checks it
            write_record(run_dir, written)
        if env.distributed:
            destroy_process_group()
    return written

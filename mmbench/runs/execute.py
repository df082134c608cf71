"""One run: check the machine, load data, build the model, train on the run's device (resuming from a checkpoint;
DDP when several processes), evaluate, write the record.

A write that fails for the disk (``storage.atomic.WriteError``: disk full, quota, I/O error) of any file of the run
(spec.json, lock.json, a checkpoint, train_log.jsonl, executions.jsonl, record.json), or an OSError of the disk
elsewhere in the run, is not the run's failure: no "failed" record is written, the run keeps its last good
checkpoint (and any earlier record) and stays partial, to resume on the next submit. The reason is appended to
executions.jsonl (best effort: the disk may refuse that too) as a line with "stopped", which ``stop_reason``
reads and ``sweep status`` shows, and the WriteError goes up to the command (one line, exit status 2).
"""

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
from mmbench.data.missing import apply_missing, parse_options, save_or_check_masks, split_options
from mmbench.device import check_precision, configure, describe, device_info, machine_cores, use_threads
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext
from mmbench.metrics.runner import evaluate
from mmbench.missing import check_supports_missing
from mmbench.registry import DATASETS, MODELS, PRIORS
from mmbench.runs.locks import RunLock, owner_id, read_lock
from mmbench.runs.spec import SPEC, RunSpec, check_metrics_support_missing
from mmbench.runs.stages import RunStages
from mmbench.storage.atomic import WriteError, append_line, atomic_write_json, is_disk_error
from mmbench.storage.checkpoint import checkpoint_exists
from mmbench.storage.provenance import provenance
from mmbench.storage.records import RECORD, SCHEMA, RunRecord, load_record, write_record
from mmbench.training.distributed import DistEnv, destroy_process_group, init_process_group, launch_local, rank_device
from mmbench.training.log import LOG_FILE, read_log
from mmbench.training.options import RunOptions
from mmbench.training.state import read_train_checkpoint
from mmbench.training.throughput import GenerationMeter
from mmbench.training.trainer import train

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def load_split(spec: RunSpec, split: str, *, masks: bool = True) -> MultimodalDataset:
    """A split as the run's dataset options give it: the adapter's load, then the masks of the missing-data options
    (``mmbench.data.missing``); a test or validation split they do not mask keeps only its complete tuples (an
    adapter's own masks, ``allow_missing``, removed). ``masks=False``: the adapter's data as loaded."""
    adapter = DATASETS.get(spec.dataset)
    options, _ = split_options(spec.dataset_options)
    where = f"dataset {spec.dataset!r}"
    try:
        data = adapter.load(split=split, **options)
    except TypeError as exc:
        raise MMBenchError(f"bad options for dataset {spec.dataset!r} ({spec.dataset_options}): {exc}") from exc
    if not masks:
        return data
    missing = parse_options(spec.dataset_options, where)
    if split != "train" and not missing.splits(split):
        return data.complete()  # evaluation splits stay complete unless the options mask them
    return apply_missing(data, split, missing, where)


def dataset_release(spec: RunSpec) -> str:
    """The adapter's name for the files a run read (``release(**options)``, e.g. PolyMNIST's "published" or
    "offline build, ..."), "" when the adapter does not say."""
    adapter = DATASETS.get(spec.dataset)
    release = getattr(adapter, "release", None)
    return str(release(**split_options(spec.dataset_options)[0])) if callable(release) else ""


def read_spec(run_dir: Path) -> RunSpec:
    """The spec of a run folder (``RunSpec.load`` of its spec.json); a folder without one is not a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / SPEC).exists():
        raise MMBenchError(f"{run_dir} is not a run folder (no {SPEC}); pass a folder under the runs folder")
    return RunSpec.load(run_dir / SPEC)


def load_trained_run(run_dir: Path, purpose: str, device: torch.device | str = "cpu"):
    """(model on ``device``, spec) of a run folder with a trained checkpoint; ``purpose`` completes the
    refusal's sentence. The spec and the checkpoint are validated, and must be of one run (the same model)."""
    from mmbench.storage.checkpoint import load_model

    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    if not checkpoint_exists(run_dir / CHECKPOINT):
        raise MMBenchError(
            f"run {run_dir.name} has no encoder checkpoint ({CHECKPOINT}); {purpose} needs a "
            "trained model, so train the run first (mmbench sweep submit / mmbench train)"
        )
    model, payload = load_model(run_dir / CHECKPOINT, device)
    if payload["model"] != spec.model:
        raise MMBenchError(
            f"run spec {run_dir / SPEC}: field 'model' is {spec.model!r} but {run_dir / CHECKPOINT} holds a "
            f"{payload['model']!r} model: the folder mixes two runs' files"
        )
    return model, spec


def read_run_record(run_dir: Path, spec: RunSpec) -> RunRecord:
    """The record of a run folder whose spec is ``spec``: validated (``load_record``) and of the same run (its spec's
    model, dataset, options, config and seed are spec.json's)."""
    run_dir = Path(run_dir)
    if not (run_dir / RECORD).exists():
        raise MMBenchError(
            f"run {run_dir.name} has no record: its training has not finished; finish it first "
            "(mmbench sweep submit / mmbench train)"
        )
    record = load_record(run_dir / RECORD)
    mine = {
        "model": spec.model,
        "dataset": spec.dataset,
        "dataset_options": spec.dataset_options,
        "config": spec.config,
        "seed": spec.seed,
    }
    for key, value in mine.items():
        theirs = record.spec.get(key)
        if key in ("dataset_options", "config"):
            theirs = theirs or {}
        if theirs != value:
            raise MMBenchError(
                f"run record {run_dir / RECORD}: field 'spec.{key}' is {_short(theirs)} but {run_dir / SPEC} says "
                f"{_short(value)}: the two files are of different runs"
            )
    return record


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def load_run_split(
    spec: RunSpec, model, split: str, spec_path: Path | str = SPEC, *, masks: bool = True
) -> MultimodalDataset:
    """``load_split`` of a trained run's spec, checked to hold the modalities its model was trained on (a spec.json
    naming another dataset, or other options of it, is refused in one line naming ``spec_path``)."""
    data = load_split(spec, split, masks=masks)
    theirs = [(m.name, tuple(m.shape)) for m in data.modalities]
    mine = [(m.name, tuple(m.shape)) for m in model.modalities]
    if theirs != mine:
        raise MMBenchError(
            f"run spec {spec_path}: field 'dataset' ({spec.dataset} with {spec.dataset_options}) gives modalities "
            f"{_modalities(theirs)} but the run's model was trained on {_modalities(mine)}: the folder mixes two "
            "runs' files"
        )
    return data


def load_eval_train(spec: RunSpec, model, spec_path: Path | str = SPEC) -> MultimodalDataset:
    """The training split as evaluation reads it (metrics fit their instruments on it, a prior is fitted on its
    latents): the tuples that observe every modality before the missing-data options' masks, the same at every
    missing rate (all of them for complete data)."""
    return load_run_split(spec, model, "train", spec_path, masks=False).complete()


def _modalities(items) -> str:
    return ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in items)


def load_fitted_prior(run_dir: Path, kind: str, model, device: torch.device):
    """The prior ``mmbench prior fit`` saved beside a run (``prior-<kind>.pt``) on ``device``; refused in one line
    naming the file when it is missing, unreadable, or fitted on another run (another latent size)."""
    cls = PRIORS.get(kind)  # a registered name, before it is part of a path
    path = Path(run_dir) / f"prior-{kind}.pt"
    if not path.is_file():
        raise MMBenchError(f"{path} does not exist; fit it first: mmbench prior fit {run_dir} --prior {kind}")
    try:
        prior = cls.load(path)
    except MMBenchError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise MMBenchError(f"prior {path} is not a {kind!r} prior this mmbench can load ({text})") from None
    dim = getattr(prior, "latent_dim", model.latent_dim)
    if dim != model.latent_dim:
        raise MMBenchError(
            f"prior {path}: field 'latent_dim' is {dim} but the run's model has {model.latent_dim}: it was fitted on "
            "another run; fit it again: mmbench prior fit"
        )
    return prior.to(device)


def run_status(run_dir: Path) -> str:
    """finished | failed | partial (a checkpoint, no record) | pending. Why a run stopped short is ``stop_reason``."""
    if (run_dir / RECORD).exists():
        return load_record(run_dir / RECORD).status
    return "partial" if checkpoint_exists(run_dir / CHECKPOINT) else "pending"


def check_resumable(spec: RunSpec, run_dir: Path) -> None:
    """Read what resuming ``spec``'s run in ``run_dir`` reads (its record, lock, training log, executions and
    checkpoint), so that a malformed one is refused in one line naming it before any work or any file is written
    (and, in an inline sweep, before any run starts). A partial run's checkpoint is thus read twice, here and by the
    trainer: a resume's cost, not a run's."""
    run_dir = Path(run_dir)
    if run_status(run_dir) == "finished":
        return
    read_lock(run_dir)
    read_log(run_dir / LOG_FILE)
    executions(run_dir)
    if checkpoint_exists(run_dir / CHECKPOINT):
        payload = read_train_checkpoint(run_dir / CHECKPOINT)
        if payload.get("model", spec.model) != spec.model:
            raise MMBenchError(
                f"checkpoint {run_dir / CHECKPOINT}: field 'model' is {payload['model']!r} but the run is a "
                f"{spec.model!r} run: it is another run's checkpoint, so move it away to start over"
            )


def check_stage_reuse(spec: RunSpec, runs_dir: Path) -> None:
    """Refuse in one line, before any file of the run is written, an explicit ``reuse`` id of one of the model's
    stages that names no stored result under ``runs_dir`` or one trained under another key (``runs.stages``)."""
    cls = MODELS.get(spec.model)
    if cls.stages:
        RunStages(runs_dir, spec, build_config(cls.Config, spec.config)).check_explicit(cls.stages)


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
    "failed", reason) rather than lost; an interruption (Ctrl-C, SIGTERM) leaves the run partial, to resume, and so
    does a failed write (``WriteError``, raised with the reason noted in executions.jsonl: module docstring).
    The run's lock is held throughout: RunLocked when another live job trains it. ``job`` (the scheduler's
    facts: executor, restarts) goes into the record.
    """
    log = log or logger.info
    options = options or RunOptions()
    device = prepare(spec, options)
    env = DistEnv.from_environ()
    run_dir = Path(runs_dir) / spec.run_id
    check_resumable(spec, run_dir)
    if run_status(run_dir) == "finished":
        log(f"{spec.run_id}: finished before, skipped")
        return load_record(run_dir / RECORD)
    check_stage_reuse(spec, Path(runs_dir))
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
EXECUTION_FIELDS = (("owner", "str"), ("from_step", "int"))  # what every line of it holds


def _append_execution(run_dir: Path, job: dict, step: int, stopped: str = "") -> None:
    """One line of RUN/executions.jsonl: who starts training the run now, from which step; with ``stopped``, that
    this start ended without a record, and why (a failed write)."""
    entry = {
        **job,
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "from_step": step,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **({"stopped": stopped} if stopped else {}),
    }
    append_line(run_dir / EXECUTIONS, json.dumps(entry))


def _note_stop(run_dir: Path, job: dict, step: int, error: WriteError, log) -> None:
    """``_append_execution`` of a start that a failed write ended; best effort (the disk may refuse it too)."""
    where = error.path.relative_to(run_dir) if error.path.is_relative_to(run_dir) else error.path
    try:
        _append_execution(run_dir, job, step, f"{error.reason} writing {where}")
    except (WriteError, OSError) as exc:
        log(f"warning: could not note in {run_dir / EXECUTIONS} why the run stopped ({exc})")


def stop_reason(run_dir: Path) -> str:
    """Why the run's last start ended without a record (a failed write: "disk full (ENOSPC) writing ..."), from its
    executions log; "" when it did not (or the run started again since)."""
    entries = executions(run_dir)
    return str(entries[-1].get("stopped") or "") if entries else ""


def executions(run_dir: Path) -> list[dict]:
    """Every start of a run's training: job owner, restarts, host, pid, the step it resumed from (each line
    checked: ``read_log``); a start that a failed write ended has a second line with "stopped", the reason."""
    return read_log(Path(run_dir) / EXECUTIONS, what="executions log", required=EXECUTION_FIELDS)


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0: rank 0 speaks for the run."""


def _execute_rank(spec: RunSpec, runs_dir: Path, options: RunOptions, progress: bool, job: dict | None) -> None:
    """One process of ``launch_local``: the environment names its rank."""
    env = DistEnv.from_environ()
    device = rank_device(options.resolve(), env)
    if device.type == "cpu":  # the node's cores shared between its processes, not oversubscribed
        use_threads(max(1, machine_cores() // options.nproc))
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
    stopped: WriteError | None = None  # a failed write: the run stays partial, no record
    written = None
    session = {"from_step": 0}

    # who trains this run, from which step (the trainer knows it once it has read the checkpoint): one line per
    # start, requeues included
    def started(step: int) -> None:
        session["from_step"] = step
        _append_execution(run_dir, record["job"], step)

    try:
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / SPEC, spec_dict)
        init_process_group(env, device)
        configure(device, config.precision)
        info = device_info(device, env.world_size)
        record["device"], record["device_info"] = describe(info), info
        where = f"dataset {spec.dataset!r}"
        missing = parse_options(spec.dataset_options, where)
        full_train = load_split(spec, "train", masks=False)
        train_data = apply_missing(full_train, "train", missing, where)
        test_data = load_split(spec, "test")
        if train_data.incomplete:
            check_supports_missing(cls, f"run {spec.run_id} ({where} with {spec.dataset_options})")
        if test_data.incomplete:
            check_metrics_support_missing(spec)
        if env.is_main:
            save_or_check_masks(run_dir, {"train": train_data.mask, "test": test_data.mask})
        # what the metrics fit their instruments on (coherence's classifiers, the probe): the complete tuples of the
        # training split, the same at every missing rate
        eval_train = full_train.complete().to(device)
        train_data, test_data = train_data.to(device), test_data.to(device)
        record["config"] = config_to_dict(config)
        record["n_modalities"] = len(train_data.modalities)
        record["data"] = {"release": dataset_release(spec), "train": len(train_data), "test": len(test_data)}
        record["observed"] = train_data.observed_fraction()
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
            started=started if env.is_main else None,
            store=RunStages(runs_dir, spec, config, train_data.modalities, log) if cls.stages else None,
        )
        record["train"] = {
            "steps": result.steps,
            "epochs": result.epochs,
            "seconds": result.seconds,
            "history": result.history,
            "examples_per_s": result.examples_per_s,
            "s_per_step": result.s_per_step,
        }
        if cls.stages:
            record["stages"] = result.stages
        if not env.is_main:
            return None
        t1 = time.perf_counter()
        ctx = EvalContext(
            eval_train, test_data, Path(runs_dir) / ".cache", seed=spec.seed, progress=progress, device=device
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
    except Exception as exc:
        if not is_disk_error(exc):
            record["failure"] = str(exc) if isinstance(exc, MMBenchError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, MMBenchError):
                record["traceback"] = traceback.format_exc()
            raise
        stopped = _as_write_error(exc, run_dir)
        raise _partial(stopped, spec.run_id) from None
    except BaseException:  # Ctrl-C, SIGTERM turned into SystemExit: the run stays partial and resumes
        interrupted = True
        raise
    finally:
        if env.is_main and not interrupted and stopped is None:
            record["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            written = RunRecord.from_dict(record, run_dir / RECORD)  # checked as every reader checks it
            try:
                write_record(run_dir, written)
            except WriteError as exc:
                stopped = exc
        if stopped is not None and env.is_main:
            _note_stop(run_dir, record["job"], session["from_step"], stopped, log)
        if env.distributed:
            destroy_process_group()
    if stopped is not None:  # the record's own write failed
        raise _partial(stopped, spec.run_id)
    return written


def _as_write_error(exc: Exception, run_dir: Path) -> WriteError:
    """A disk's OSError raised outside mmbench's writers, as the WriteError of the file it names (or the run)."""
    if isinstance(exc, WriteError):
        return exc
    return WriteError(getattr(exc, "filename", None) or run_dir, exc)


def _partial(error: WriteError, run_id: str) -> WriteError:
    return error.with_hint(
        f"run {run_id} is left partial with its last good checkpoint; free space (or fix the disk) and submit it "
        "again to resume it"
    )

"""One run: load data, build the model, train (resuming from a checkpoint), evaluate, write the record."""

from __future__ import annotations

import datetime as dt
import json
import time
import traceback
from pathlib import Path

import torch

from mmbench.checkpoint import atomic_write_json
from mmbench.config import build_config, config_to_dict
from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.evaluate import evaluate
from mmbench.metrics.base import EvalContext
from mmbench.provenance import device_name, provenance
from mmbench.registry import DATASETS, MODELS
from mmbench.results import RECORD, read_record, write_record
from mmbench.runspec import RunSpec
from mmbench.train import train

CHECKPOINT = "checkpoint.pt"


def load_split(spec: RunSpec, split: str) -> MultimodalDataset:
    adapter = DATASETS.get(spec.dataset)
    try:
        return adapter.load(split=split, **spec.dataset_options)
    except TypeError as exc:
        raise MMBenchError(f"bad options for dataset {spec.dataset!r} ({spec.dataset_options}): {exc}") from exc


def load_trained_run(run_dir: Path, purpose: str):
    """(model, spec) of a run folder with a trained checkpoint; ``purpose`` completes the refusal's sentence."""
    from mmbench.checkpoint import load_model

    run_dir = Path(run_dir)
    if not (run_dir / "spec.json").is_file():
        raise MMBenchError(f"{run_dir} is not a run folder (no spec.json); pass a folder under the runs folder")
    if not (run_dir / CHECKPOINT).is_file():
        raise MMBenchError(f"run {run_dir.name} has no encoder checkpoint ({CHECKPOINT}); {purpose} needs a "
                           "trained model, so train the run first (mmbench sweep submit / mmbench train)")
    spec = RunSpec.from_dict(json.loads((run_dir / "spec.json").read_text()))
    model, _ = load_model(run_dir / CHECKPOINT)
    return model, spec


def run_status(run_dir: Path) -> str:
    """finished | failed | partial (a checkpoint, no record) | pending."""
    if (run_dir / RECORD).is_file():
        return read_record(run_dir / RECORD)["status"]
    return "partial" if (run_dir / CHECKPOINT).is_file() else "pending"


def execute(spec: RunSpec, runs_dir: Path, *, progress: bool = True, log=print) -> dict:
    """Run ``spec`` under runs_dir/<run_id>/ and return its record; a finished run is not run again.

    A failure is recorded (status "failed", reason) rather than lost; the record is written atomically.
    """
    run_dir = Path(runs_dir) / spec.run_id
    if run_status(run_dir) == "finished":
        log(f"{spec.run_id}: finished before, skipped")
        return read_record(run_dir / RECORD)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "spec.json", spec.to_dict())
    t0 = time.perf_counter()
    record = {"run_id": spec.run_id, "spec": spec.to_dict(), "status": "failed", "failure": None, "metrics": [],
              "provenance": provenance(), "device": device_name()}
    try:
        train_data = load_split(spec, "train")
        test_data = load_split(spec, "test")
        cls = MODELS.get(spec.model)
        config = build_config(cls.Config, spec.config)
        record["config"] = config_to_dict(config)
        record["n_modalities"] = len(train_data.modalities)
        torch.manual_seed(spec.seed)
        model = cls(train_data.modalities, config)
        log(f"{spec.run_id}: {spec.model} on {spec.dataset} ({len(train_data)} train, {len(test_data)} test, "
            f"M={len(train_data.modalities)}, seed {spec.seed})")
        result = train(model, train_data, seed=spec.seed, checkpoint=run_dir / CHECKPOINT, progress=progress, log=log)
        record["train"] = {"steps": result.steps, "epochs": result.epochs, "seconds": result.seconds,
                           "history": result.history}
        t1 = time.perf_counter()
        ctx = EvalContext(train_data, test_data, Path(runs_dir) / ".cache", seed=spec.seed, progress=progress)
        rows = evaluate(model, ctx, spec.metrics, spec.metric_options)
        record["metrics"] = [r.to_dict() for r in rows]
        record["timings"] = {"train_s": result.seconds, "eval_s": time.perf_counter() - t1,
                             "total_s": time.perf_counter() - t0}
        record["status"] = "finished"
    except MMBenchError as exc:
        record["failure"] = str(exc)
        raise
    except Exception as exc:
        record["failure"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        raise
    finally:
        record["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        write_record(run_dir, record)
    return record

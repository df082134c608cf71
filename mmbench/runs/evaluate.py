"""``mmbench eval RUN``: the evaluation protocol on a finished run, without retraining.

Unconditional generation from the model's own prior ("gaussian": N(0, I), MMVAE+'s Laplace) and from every
fitted prior asked for (``prior-<kind>.pt`` beside the run, from ``mmbench prior fit``); conditional
generation for each number of observed modalities; every metric named (default: the run's), on the run's
device. The rows replace the record's rows with the same (metric, target, given, n_given, prior) and are
written atomically; a refusal leaves the record as it was. Each evaluation is logged in the record with its
seconds and peak memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import resource
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from mmbench.device import resolve_device
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.metrics.runner import build_metrics, run_metrics
from mmbench.runs.execute import load_eval_train, load_fitted_prior, load_run_split, load_trained_run, read_run_record
from mmbench.runs.spec import SPEC
from mmbench.storage.records import RECORD, load_record, write_record

logger = logging.getLogger(__name__)


def prior_samplers(run_dir: Path, kinds: Sequence[str], model, device: torch.device) -> dict:
    """{"gaussian": None, kind: sampler(n, generator) -> z} for the fitted priors beside the run."""
    samplers: dict = {"gaussian": None}
    for kind in kinds:
        prior = load_fitted_prior(run_dir, kind, model, device)
        samplers[kind] = lambda n, g, prior=prior: prior.sample(n, generator=g)
    return samplers


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def metrics_for(
    spec,
    metrics: Sequence[str] | None = None,
    *,
    options: dict | None = None,
    n_samples: int | None = None,
    fid_weights: str | None = None,
) -> list[tuple[str, object]]:
    """The metrics an evaluation of a run's ``spec`` runs (default: the run's), built with the run's options
    overridden by ``options`` ({metric: {key: value}}), ``n_samples`` and ``fid_weights`` for FID."""
    names = list(metrics) if metrics else list(spec.metrics)
    if not names:
        raise MMBenchError(f"run {spec.run_id} names no metrics; say which: mmbench eval RUN --metrics fid ...")
    stray = sorted(set(options or {}) - set(names))
    if stray:
        raise MMBenchError(f"options given for metrics {stray} that this evaluation does not run ({names})")
    merged = {m: {**spec.metric_options.get(m, {}), **(options or {}).get(m, {})} for m in names}
    if n_samples is not None and "fid" in merged:
        merged["fid"]["n_samples"] = n_samples
    if fid_weights is not None and "fid" in merged:
        merged["fid"]["weights"] = fid_weights
    return build_metrics(names, merged)


def evaluate_loaded(
    run_dir: Path,
    model,
    spec,
    train,
    test,
    built,
    *,
    priors: Sequence[str] = (),
    device: torch.device,
    unconditional_only: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[MetricRow]:
    """Run built metrics on a run's loaded model and splits, and add the rows to its record; returns them."""
    log = log or logger.info
    run_dir = Path(run_dir)
    ctx = EvalContext(
        train,
        test,
        run_dir.parent / ".cache",
        seed=spec.seed,
        progress=progress,
        device=device,
        priors=prior_samplers(run_dir, priors, model, device),
        unconditional_only=unconditional_only,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    provenance: dict = {}
    rows = run_metrics(model, ctx, built, provenance)
    seconds = time.perf_counter() - t0
    record = load_record(run_dir / RECORD).with_rows(rows)  # read now: another command may have added rows
    evaluation = {
        "metrics": [name for name, _ in built],
        "priors": ["gaussian", *priors],
        "seconds": seconds,
        "peak_memory_mb": peak_memory_mb(device),
        "device": str(device),
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_record(
        run_dir,
        dataclasses.replace(
            record,
            metric_provenance={**(record.metric_provenance or {}), **provenance},
            evaluations=(*(record.evaluations or ()), evaluation),
        ),
    )
    log(f"evaluated {run_dir.name} in {seconds:.1f} s, peak memory {peak_memory_mb(device):.0f} MB")
    return rows


def evaluate_run(
    run_dir: Path,
    metrics: Sequence[str] | None = None,
    *,
    n_samples: int | None = None,
    priors: Sequence[str] = (),
    fid_weights: str | None = None,
    device: str = "auto",
    unconditional_only: bool = False,
    options: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[MetricRow]:
    """Evaluate a finished run and add the rows to its record; returns them. ``options`` ({metric: {key: value}})
    override the run's metric options for this evaluation. Every option and weights file is checked before the
    data is loaded or anything runs."""
    log = log or logger.info
    run_dir = Path(run_dir)
    where = resolve_device(device)
    model, spec = load_trained_run(run_dir, "evaluating it", where)
    read_run_record(run_dir, spec)  # a record of this run that this mmbench can read, before any work
    built = metrics_for(spec, metrics, options=options, n_samples=n_samples, fid_weights=fid_weights)
    for kind in priors:  # every fitted prior asked for, before the data is loaded
        load_fitted_prior(run_dir, kind, model, where)
    train = load_eval_train(spec, model, run_dir / SPEC).to(where)
    test = load_run_split(spec, model, "test", run_dir / SPEC).to(where)
    return evaluate_loaded(
        run_dir,
        model,
        spec,
        train,
        test,
        built,
        priors=priors,
        device=where,
        unconditional_only=unconditional_only,
        progress=progress,
        log=log,
    )

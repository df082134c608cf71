"""Sweep files (TOML) -> run specs -> an executor.

    [sweep]                      name, models, seeds, runs_dir (default results/runs)
    [dataset]                    name and the adapter's options (root, modalities, ...)
    [config]                     overrides for every model;  [config.<model>] for one model
    [grid]                       lists whose cartesian product makes the runs: any config field,
                                 or "dataset.<option>" (e.g. "dataset.modalities" = [2, 3, 4, 5])
    [evaluate]                   metrics = [...];  [evaluate.<metric>] options of one metric
    [run]                        how runs execute, not part of their ids (``RunOptions``): device,
                                 nproc, checkpoint_every, log_every, tensorboard
    [executor]                   name = "inline" (more executors come with SLURM support)

Relative paths (dataset.root, sweep.runs_dir) are taken from the current folder.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mmbench.errors import MMBenchError
from mmbench.run import execute, prepare, run_status
from mmbench.runoptions import RunOptions
from mmbench.runspec import RunSpec

EXECUTORS = ("inline",)
TABLES = {"sweep", "dataset", "config", "grid", "evaluate", "run", "executor"}
SWEEP_KEYS = {"name", "models", "seeds", "runs_dir"}


@dataclass
class Sweep:
    name: str
    specs: list[RunSpec]
    executor: str
    runs_dir: Path
    executor_options: dict = field(default_factory=dict)
    options: RunOptions = field(default_factory=RunOptions)


def parse_value(text: str) -> Any:
    """A --set value as TOML (numbers, booleans, lists, quoted strings), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(doc: dict, overrides: list[str]) -> dict:
    """Apply ``table.key=value`` overrides (``--set dataset.root=DIR``) to a parsed sweep file."""
    for item in overrides:
        if "=" not in item:
            raise MMBenchError(f"--set {item!r}: expected KEY=VALUE, e.g. dataset.root=data/polymnist")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = doc
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise MMBenchError(f"--set {item!r}: {p!r} is not a table")
        node[parts[-1]] = parse_value(value.strip())
    return doc


def load_sweep(path: Path, overrides: list[str] | None = None, executor: str | None = None,
               runs_dir: Path | None = None, run_options: dict | None = None) -> Sweep:
    """Parse and validate a sweep file; ``run_options`` (from command-line flags) override its [run] table."""
    path = Path(path)
    if not path.is_file():
        raise MMBenchError(f"sweep file {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MMBenchError(f"sweep file {path} is not valid TOML: {exc}") from None
    doc = apply_overrides(doc, overrides or [])
    where = f"sweep file {path}"

    unknown = sorted(set(doc) - TABLES)
    if unknown:
        raise MMBenchError(f"{where}: unknown table(s) {unknown}; allowed: {sorted(TABLES)}")
    sweep = _table(doc, "sweep", where)
    bad = sorted(set(sweep) - SWEEP_KEYS)
    if bad:
        raise MMBenchError(f"{where}: [sweep] has unknown key(s) {bad}; allowed: {sorted(SWEEP_KEYS)}")
    models = sweep.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise MMBenchError(f"{where}: [sweep] models must be a non-empty list of model names")
    seeds = sweep.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise MMBenchError(f"{where}: [sweep] seeds must be a non-empty list of integers")

    dataset = dict(_table(doc, "dataset", where))
    if "name" not in dataset:
        raise MMBenchError(f"{where}: [dataset] needs a name, e.g. name = \"polymnist\"")
    dataset_name = dataset.pop("name")

    config = dict(doc.get("config", {}))
    per_model = {m: config.pop(m) for m in list(config) if isinstance(config[m], dict)}
    stray = sorted(set(per_model) - set(models))
    if stray:
        raise MMBenchError(f"{where}: [config.{stray[0]}] names a model the sweep does not run; models: {models}")

    grid = doc.get("grid", {})
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise MMBenchError(f"{where}: [grid] {k} must be a non-empty list of values")

    evaluate = dict(doc.get("evaluate", {}))
    metrics = evaluate.pop("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise MMBenchError(f"{where}: [evaluate] metrics must be a list of metric names")
    metric_options = {k: v for k, v in evaluate.items() if isinstance(v, dict)}
    stray = sorted(set(evaluate) - set(metric_options))
    if stray:
        raise MMBenchError(f"{where}: [evaluate] has unknown key(s) {stray}; use metrics = [...] and [evaluate.<metric>]")

    executor_table = dict(doc.get("executor", {}))
    executor = executor or executor_table.pop("name", "inline")
    executor_table.pop("name", None)
    if executor not in EXECUTORS:
        raise MMBenchError(f"unknown executor {executor!r}; available: {', '.join(EXECUTORS)}")

    options = run_options_from(dict(doc.get("run", {})), where, run_options)

    name = sweep.get("name", path.stem)
    specs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        ds_opts = dict(dataset)
        cfg_point = {}
        for k, v in point.items():
            if k.startswith("dataset."):
                ds_opts[k.split(".", 1)[1]] = v
            else:
                cfg_point[k] = v
        if "root" in ds_opts:
            ds_opts["root"] = str(Path(ds_opts["root"]).expanduser().resolve())
        for model in models:
            for seed in seeds:
                cfg = {**config, **per_model.get(model, {}), **cfg_point}
                specs.append(RunSpec(model, dataset_name, ds_opts, cfg, seed, tuple(metrics), metric_options, name))
    for spec in specs:
        spec.validate()
    runs = Path(runs_dir or sweep.get("runs_dir", "results/runs")).expanduser().resolve()
    return Sweep(name, specs, executor, runs, executor_table, options)


def run_options_from(table: dict, where: str, overrides: dict | None = None) -> RunOptions:
    """RunOptions from a [run] table (unknown keys refused by name), command-line values taking precedence."""
    allowed = [f.name for f in dataclasses.fields(RunOptions)]
    bad = sorted(set(table) - set(allowed))
    if bad:
        raise MMBenchError(f"{where}: [run] has unknown key(s) {bad}; allowed: {allowed}")
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return RunOptions(**table)


def _table(doc: dict, name: str, where: str) -> dict:
    t = doc.get(name)
    if not isinstance(t, dict):
        raise MMBenchError(f"{where}: missing table [{name}]")
    return t


def submit(sweep: Sweep, *, progress: bool = True, log=print) -> list[dict]:
    """Run every spec of the sweep with its executor; finished runs are skipped, partial ones resume.

    A failing run is recorded and the sweep goes on; the caller sees the failures in the records. What this
    machine cannot run (device, precision, processes) is refused for the whole sweep before any run starts.
    """
    for spec in sweep.specs:
        prepare(spec, sweep.options)
    records = []
    for i, spec in enumerate(sweep.specs, 1):
        log(f"[{i}/{len(sweep.specs)}] {spec.run_id}")
        try:
            records.append(execute(spec, sweep.runs_dir, options=sweep.options, progress=progress, log=log))
        except Exception as exc:  # recorded by execute; the sweep continues
            log(f"{spec.run_id}: failed: {exc}")
            records.append({"run_id": spec.run_id, "status": "failed", "failure": str(exc)})
    return records


def status(sweep: Sweep) -> list[tuple[str, str, str]]:
    """(run_id, model, status) per spec."""
    return [(s.run_id, s.model, run_status(sweep.runs_dir / s.run_id)) for s in sweep.specs]

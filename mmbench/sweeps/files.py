"""Sweep files (TOML) -> run specs -> an executor.

    [sweep]                      name, models, seeds, runs_dir (default results/runs)
    [dataset]                    name and the adapter's options (root, modalities, ...)
    [config]                     overrides for every model;  [config.<model>] for one model, also
                                 winning over [grid] (a model that pins a grid field runs once)
    [grid]                       lists whose cartesian product makes the runs: any config field,
                                 or "dataset.<option>" (e.g. "dataset.modalities" = [2, 3, 4, 5])
    [evaluate]                   metrics = [...];  [evaluate.<metric>] options of one metric
    [run]                        how runs execute, not part of their ids (``RunOptions``): device,
                                 nproc, checkpoint_every, log_every, tensorboard
    [executor]                   name = "inline" | "local" | "slurm" and the resources of a cluster job
                                 (partition, gpus_per_node, tasks_per_node, cpus_per_task, mem_gb,
                                 timeout_min, account, qos, constraint, array_parallelism, setup,
                                 additional, max_num_timeout, nodes, signal_delay_s): mmbench.sweeps.executors

Relative paths (dataset.root, dataset.missing, sweep.runs_dir) are taken from the current folder. Command-line ``--set`` values
win over every table of the file where they apply (``mmbench.sweeps.overrides``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mmbench.data.missing import resolve_paths
from mmbench.errors import MMBenchError, did_you_mean
from mmbench.resources import sweep_file
from mmbench.runs.spec import RunSpec
from mmbench.storage.names import check_name
from mmbench.sweeps.executors import ExecutorSpec, check_resources, executor_from_table
from mmbench.sweeps.overrides import (  # noqa: F401 (parse_value: API)
    apply_to_sweep,
    flat_sections,
    parse_overrides,
    parse_value,
    stage_names,
)
from mmbench.training.options import RunOptions

TABLES = {"sweep", "dataset", "config", "grid", "evaluate", "run", "executor"}  # as mmbench.sweeps.overrides.TABLES
SWEEP_KEYS = {"name", "models", "seeds", "runs_dir"}


@dataclass
class Sweep:
    """A parsed, validated sweep file: its runs, where they execute and with which run options."""

    name: str
    specs: list[RunSpec]
    executor: ExecutorSpec
    runs_dir: Path
    options: RunOptions = field(default_factory=RunOptions)
    source: str = ""  # the sweep file as submitted (its path and --set overrides in a header), kept by submit
    from_cli: dict = field(default_factory=dict)  # run id -> the run's values that came from --set
    cli_settings: dict = field(default_factory=dict)  # 'table.key' -> value set by --set outside config/dataset/grid

    def save_source(self, folder: Path) -> None:
        """Keep the sweep file beside the sweep's jobs (``RUNS/.sweeps/<name>/sweep.toml``) for the report."""
        if self.source:
            from mmbench.storage.atomic import atomic_write_bytes

            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / "sweep.toml", self.source.encode())


def apply_overrides(doc: dict, overrides: list[str]) -> dict:
    """``table.key=value`` overrides applied to a sweep document with the command line winning (``mmbench.sweeps.overrides``)."""
    return apply_to_sweep(doc, parse_overrides(overrides)).doc


def read_sweep_document(path: Path) -> tuple[Path, str, dict]:
    """(the file, its text, its parsed tables) of a sweep file given by path or packaged name."""
    path = sweep_file(path)
    text = path.read_text()
    try:
        return path, text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MMBenchError(f"sweep file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise MMBenchError(f"sweep file {path} is not valid TOML: its values are nested too deeply") from None


def resolved_document(path: Path, overrides: list[str] | None = None) -> dict:
    """A sweep file's tables with the command line's ``--set`` items applied (``mmbench show sweep``)."""
    _, _, doc = read_sweep_document(path)
    return apply_to_sweep(doc, parse_overrides(overrides or [])).doc


def load_sweep(
    path: Path,
    overrides: list[str] | None = None,
    executor: str | None = None,
    runs_dir: Path | None = None,
    run_options: dict | None = None,
    *,
    check_data: bool = True,
) -> Sweep:
    """Parse and validate a sweep file (a path, or the name of a packaged one); ``run_options`` (from
    command-line flags) override its [run] table. ``check_data=False`` (status, cancel, logs, plan) leaves the
    dataset's folder unchecked."""
    path, text, doc = read_sweep_document(path)
    header = [f"# sweep file {path.resolve()}"] + [f"# --set {o}" for o in overrides or []]
    return sweep_from_doc(
        doc,
        f"sweep file {path}",
        overrides,
        executor,
        runs_dir,
        run_options,
        default_name=path.stem,
        source="\n".join(header) + "\n" + text,
        check_data=check_data,
    )


def sweep_from_doc(
    doc: dict,
    where: str,
    overrides: list[str] | None = None,
    executor: str | None = None,
    runs_dir: Path | None = None,
    run_options: dict | None = None,
    *,
    default_name: str = "sweep",
    source: str = "",
    check_data: bool = True,
) -> Sweep:
    """A validated Sweep from a parsed sweep document and the command line's ``--set`` items and flags."""
    unknown = sorted(set(doc) - TABLES)
    if unknown:
        raise MMBenchError(
            f"{where}: unknown table(s) {unknown}; allowed: {sorted(TABLES)}" + did_you_mean(unknown[0], TABLES)
        )
    for name in TABLES & set(doc):
        if not isinstance(doc[name], dict):
            raise MMBenchError(f"{where}: {name} = {doc[name]!r} must be a table [{name}]")
    cli = apply_to_sweep(doc, parse_overrides(overrides or []))
    doc = cli.doc
    _check_flags_against_set(cli, run_options, executor)
    sweep = _table(doc, "sweep", where)
    bad = sorted(set(sweep) - SWEEP_KEYS)
    if bad:
        raise MMBenchError(
            f"{where}: [sweep] has unknown key(s) {bad}; allowed: {sorted(SWEEP_KEYS)}"
            + did_you_mean(bad[0], SWEEP_KEYS)
        )
    models = sweep.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise MMBenchError(f"{where}: [sweep] models must be a non-empty list of model names")
    seeds = sweep.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise MMBenchError(f"{where}: [sweep] seeds must be a non-empty list of integers")

    dataset = dict(_table(doc, "dataset", where))
    if "name" not in dataset:
        raise MMBenchError(f'{where}: [dataset] needs a name, e.g. name = "polymnist"')
    dataset_name = dataset.pop("name")

    config = dict(doc.get("config", {}))
    stages = stage_names()
    per_model = {
        m: config.pop(m) for m in list(config) if isinstance(config[m], dict) and m not in stages - set(models)
    }
    config = flat_sections(config)  # [config.STAGE]: a stage section of every model
    per_model = {m: flat_sections(table) for m, table in per_model.items()}
    stray = sorted(set(per_model) - set(models))
    if stray:
        raise MMBenchError(
            f"{where}: [config.{stray[0]}] names a model the sweep does not run; models: {models}"
            + did_you_mean(stray[0], models)
        )

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
        raise MMBenchError(
            f"{where}: [evaluate] has unknown key(s) {stray}; use metrics = [...] and [evaluate.<metric>]"
        )

    executor_spec = executor_from_table(dict(doc.get("executor", {})), where, executor)
    options = run_options_from(dict(doc.get("run", {})), where, run_options)
    check_resources(executor_spec, options, where)

    name = check_name(sweep.get("name", default_name), f"{where}: [sweep] name")
    specs, from_cli = [], {}
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
            ds_opts["root"] = str(user_path(ds_opts["root"], f"{where}: [dataset] root"))
        ds_opts = resolve_paths(ds_opts)  # mask files (dataset.missing), as root
        for model in models:
            for seed in seeds:
                cfg = {**config, **cfg_point, **per_model.get(model, {})}
                spec = RunSpec(model, dataset_name, ds_opts, cfg, seed, tuple(metrics), metric_options, name)
                specs.append(spec)
                from_cli[id(spec)] = cli.for_run(model, cfg, ds_opts)
    if not specs:
        raise MMBenchError(f"{where}: the sweep has no runs")
    for spec in specs:
        spec.validate(check_data=check_data)
    unique = {s.run_id: s for s in specs}  # a model whose [config.<model>] pins a grid field runs once per value
    from_cli = {run_id: from_cli[id(s)] for run_id, s in unique.items()}
    specs = list(unique.values())
    runs = user_path(runs_dir or sweep.get("runs_dir", "results/runs"), f"{where}: [sweep] runs_dir")
    return Sweep(name, specs, executor_spec, runs, options, source, from_cli, dict(cli.other))


def train_sweep(
    model: str,
    dataset: str,
    data_root: str | None,
    modalities: int,
    seed: int,
    metrics: list[str],
    overrides: list[str],
    run_flags: dict,
) -> Sweep:
    """``mmbench train``: one run through the sweep grammar. Bare ``FIELD=VALUE`` items are config fields;
    ``config.``, ``dataset.``, ``evaluate.`` and ``run.`` keys work as in a sweep file. A flag and a --set of the
    same value must agree; grids, seeds, models and executors belong in a sweep file."""
    items = [o if "=" in o and o.split("=", 1)[0].strip().split(".")[0] in TABLES else f"config.{o}" for o in overrides]
    for o in parse_overrides(items):
        if o.path[0] in ("grid", "sweep", "executor"):
            raise MMBenchError(
                f"--set {o.text!r}: train runs one model once; grids, seeds and executors belong in "
                f"a sweep file (mmbench sweep submit FILE --set {o.text})"
            )
    dataset_table: dict = {"name": dataset}
    given = {
        "dataset.root": str(user_path(data_root, "--data-root")) if data_root else None,
        "dataset.modalities": modalities or None,
    }
    cli = {o.key: o.value for o in parse_overrides(items)}
    for key, value in given.items():
        if value is None:
            continue
        mine = cli.get(key)
        same = str(user_path(mine, "--set dataset.root")) if key == "dataset.root" and mine is not None else mine
        if mine is not None and same != value:
            flag = "--data-root" if key == "dataset.root" else "--modalities"
            raise MMBenchError(f"{flag} and --set {key}={mine} disagree; give one")
        dataset_table[key.split(".", 1)[1]] = value
    doc = {
        "sweep": {"name": "train", "models": [model], "seeds": [seed]},
        "dataset": dataset_table,
        "evaluate": {"metrics": list(metrics)},
        "executor": {"name": "inline"},
    }
    return sweep_from_doc(doc, "mmbench train", items, None, None, run_flags, default_name="train")


def user_path(value: object, what: str) -> Path:
    """A path the user gave (``~`` expanded, relative to the current folder) made absolute; one line naming ``what``
    when it is not a string or names no possible path (an unknown ``~user``, a NUL character)."""
    if not isinstance(value, (str, Path)):
        raise MMBenchError(f"{what} = {value!r} must be a path (a string)")
    try:
        return Path(value).expanduser().resolve()
    except (RuntimeError, ValueError, OSError) as exc:
        raise MMBenchError(f"{what} = {str(value)!r} is not a usable path ({exc})") from None


def data_problems(sweep: Sweep) -> list[str]:
    """What ``submit`` would refuse about the sweep's dataset folders (one line each), without loading them."""
    problems = []
    for spec in {json.dumps(s.dataset_options, sort_keys=True): s for s in sweep.specs}.values():
        try:
            spec.validate()
        except MMBenchError as exc:
            problems.append(str(exc))
    return sorted(set(problems))


def _check_flags_against_set(cli, run_options: dict | None, executor: str | None) -> None:
    """A flag (--device, --executor, ...) and a --set of the same key must agree: neither is silently lost."""
    flags = {f"run.{k}": v for k, v in (run_options or {}).items() if v is not None}
    if executor is not None:
        flags["executor.name"] = executor
    for key, flag_value in flags.items():
        if key in cli.other and cli.other[key] != flag_value:
            flag = "--executor" if key == "executor.name" else "--" + key.split(".", 1)[1].replace("_", "-")
            raise MMBenchError(f"{flag} {flag_value} and --set {key}={cli.other[key]} disagree; give one")


def run_options_from(table: dict, where: str, overrides: dict | None = None) -> RunOptions:
    """RunOptions from a [run] table (unknown keys refused by name), command-line values taking precedence."""
    allowed = [f.name for f in dataclasses.fields(RunOptions)]
    bad = sorted(set(table) - set(allowed))
    if bad:
        raise MMBenchError(
            f"{where}: [run] has unknown key(s) {bad}; allowed: {allowed}" + did_you_mean(bad[0], allowed)
        )
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return RunOptions(**table)


def _table(doc: dict, name: str, where: str) -> dict:
    t = doc.get(name)
    if not isinstance(t, dict):
        raise MMBenchError(f"{where}: missing table [{name}]")
    return t

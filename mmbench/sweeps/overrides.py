"""The one override grammar of the command line: ``--set KEY=VALUE`` with a dotted key into a sweep file's tables.

    config.beta=0.5                   a config field of every model
    config.mopoe.beta=0.5             a config field of one model
    dataset.root=DIR                  a dataset adapter option
    grid.beta=[0.5,1]                 a grid axis (a non-empty list)
    grid."dataset.modalities"=[2,3]   a grid axis over a dataset option (quotes optional: grid.dataset.modalities)
    evaluate.coherence.max_test=200   a metric option;  evaluate.metrics=["coherence"]
    run.device=cpu                    a run option;  executor.partition=gpu  an executor key;  sweep.seeds=[0,1]

Values are TOML (numbers, booleans, lists, quoted strings); anything else is a bare string. A value given on
the command line wins over the file everywhere it applies: ``config.X`` replaces a grid axis X and every
``[config.<model>] X``, ``dataset.X`` replaces the grid axis ``dataset.X``, and ``grid.X`` replaces the
file's per-model pins of X. Two command-line values that set the same thing differently are refused.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any, Iterable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mmbench.errors import MMBenchError, did_you_mean

TABLES = ("sweep", "dataset", "config", "grid", "evaluate", "run", "executor")
EXAMPLES = {
    "sweep": "sweep.seeds=[0,1,2]",
    "dataset": "dataset.root=data/polymnist",
    "config": "config.beta=0.5",
    "grid": "grid.beta=[0.5,1]",
    "evaluate": "evaluate.coherence.max_test=200",
    "run": "run.device=cpu",
    "executor": "executor.name=slurm",
}


def parse_value(text: str) -> Any:
    """A --set value as TOML (numbers, booleans, lists, inline tables, quoted strings), else the bare string."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except (tomllib.TOMLDecodeError, RecursionError):
        return text
    return doc["v"] if len(doc) == 1 else text  # a line break followed by more TOML: not one value


def parse_key(key: str, item: str) -> tuple[str, ...]:
    """A dotted key with TOML's quoting (``grid."dataset.modalities"``) as its parts."""
    bad = MMBenchError(f"--set {item!r}: {key!r} is not a dotted key such as config.beta")
    try:
        node: Any = tomllib.loads(f"{key} = 0")
    except (tomllib.TOMLDecodeError, RecursionError):
        raise bad from None
    parts = []
    while isinstance(node, dict):
        if len(node) != 1:  # no key ('#...', a comment) or several (a line break inside it)
            raise bad
        ((name, node),) = node.items()
        parts.append(name)
    return tuple(parts)


@dataclass(frozen=True)
class Override:
    """One ``--set`` item: the key's parts, the parsed value and the text as given."""

    path: tuple[str, ...]
    value: Any
    text: str

    @property
    def key(self) -> str:
        return ".".join(self.path)


def parse_overrides(items: Iterable[str], example: str = "config.beta=0.5") -> list[Override]:
    """``KEY=VALUE`` strings as Overrides (one line naming the item when one has no '=' or a bad key)."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise MMBenchError(f"--set {item!r}: expected KEY=VALUE, e.g. {example}")
        key, value = item.split("=", 1)
        out.append(Override(parse_key(key.strip(), item), parse_value(value.strip()), item))
    return out


def grid_axis(parts: tuple[str, ...]) -> str:
    """The grid axis a ``grid.`` key names: ``grid.beta`` -> beta, ``grid.dataset.modalities`` -> dataset.modalities."""
    return ".".join(parts)


@dataclass
class Applied:
    """A sweep document with the command line applied, and what the command line set.

    config:      field -> value for every model;  per_model: model -> {field: value}
    dataset:     option -> value;  grid: axis -> values;  other: 'table.key' -> value (sweep, run, executor,
                 evaluate), each as given on the command line.
    """

    doc: dict
    config: dict
    per_model: dict
    dataset: dict
    grid: dict
    other: dict

    def for_run(self, model: str, config: dict, dataset: dict) -> dict:
        """The values of one run (its model, config and dataset options) that came from the command line."""
        out = {}
        for k in {**self.config, **self.per_model.get(model, {})}:
            if k in config:
                out[k] = config[k]
        for axis in self.grid:
            if axis.startswith("dataset."):
                opt = axis.split(".", 1)[1]
                if opt in dataset:
                    out[axis] = dataset[opt]
            elif axis in config:
                out[axis] = config[axis]
        for k in self.dataset:
            if k in dataset:
                out[f"dataset.{k}"] = dataset[k]
        return out


def apply_to_sweep(doc: dict, overrides: list[Override], models: Iterable[str] | None = None) -> Applied:
    """Apply command-line overrides to a parsed sweep file so that each wins wherever it applies (module
    docstring); a value that cannot apply is refused in one line naming the item."""
    doc = copy.deepcopy(doc)
    cli = Applied(doc, {}, {}, {}, {}, {})
    for o in overrides:
        _classify(o, cli)
    file_models = set(models or [])
    sweep_models = cli.other.get("sweep.models", doc.get("sweep", {}).get("models", []))
    if isinstance(sweep_models, list):
        file_models |= {m for m in sweep_models if isinstance(m, str)}
    stages = stage_names()
    for section in [k for k in cli.per_model if k not in file_models and k in stages]:
        for key, value in flat_sections({section: cli.per_model.pop(section)}).items():
            cli.config[key] = value  # config.STAGE.FIELD: a stage section of every model
    for model in cli.per_model:
        if model not in file_models:
            raise MMBenchError(
                f"--set config.{model}.…: {model!r} is not a model of this sweep "
                f"(models: {sorted(file_models)}){did_you_mean(model, file_models)}"
            )
    for field in cli.config:
        if field in cli.grid:
            raise MMBenchError(f"--set config.{field} and --set grid.{field} both set {field}; give one")
    for opt in cli.dataset:
        if f"dataset.{opt}" in cli.grid:
            raise MMBenchError(f'--set dataset.{opt} and --set grid."dataset.{opt}" both set {opt}; give one')

    # the file's values that a command-line value replaces
    grid = doc.get("grid")
    config = doc.get("config")
    if isinstance(grid, dict):
        for field in cli.config:
            grid.pop(field, None)
        for opt in cli.dataset:
            grid.pop(f"dataset.{opt}", None)
    if isinstance(config, dict):
        for table in [config] + [v for v in config.values() if isinstance(v, dict)]:
            for field in list(cli.config) + [a for a in cli.grid if not a.startswith("dataset.")]:
                if "." in field:  # a stage section's field: the file's dotted key, or its field of the table
                    head, rest = field.split(".", 1)
                    if isinstance(table.get(head), dict):
                        table[head].pop(rest, None)
                if table is not config:
                    table.pop(field, None)

    # then the command line's own values
    _put(doc, ("config",), cli.config)
    for model, fields in cli.per_model.items():
        _put(doc, ("config", model), fields)
    _put(doc, ("dataset",), cli.dataset)
    _put(doc, ("grid",), cli.grid)
    for key, value in cli.other.items():
        table, *rest = key.split(".")
        _put(doc, (table, *rest[:-1]), {rest[-1]: value})
    return cli


def _classify(o: Override, cli: Applied) -> None:
    table, rest = o.path[0], o.path[1:]
    if table not in TABLES:
        raise MMBenchError(
            f"--set {o.text!r}: unknown table {table!r}{did_you_mean(table, TABLES)}; "
            f"keys start with one of {', '.join(TABLES)} (e.g. {EXAMPLES['config']})"
        )
    if not rest:
        raise MMBenchError(f"--set {o.text!r}: [{table}] is a table; set one of its keys, e.g. --set {EXAMPLES[table]}")
    if table == "grid":
        if not isinstance(o.value, list) or not o.value:
            raise MMBenchError(f"--set {o.text!r}: a grid axis takes a non-empty list, e.g. --set {EXAMPLES['grid']}")
        cli.grid[grid_axis(rest)] = o.value
    elif table == "config" and len(rest) == 1 and not isinstance(o.value, dict):
        cli.config[rest[0]] = o.value
    elif table == "config" and len(rest) == 1:
        cli.per_model.setdefault(rest[0], {}).update(o.value)
    elif table == "config" and len(rest) == 2:
        cli.per_model.setdefault(rest[0], {})[rest[1]] = o.value
    elif table == "config" and len(rest) == 3:  # a stage section's field of one model
        cli.per_model.setdefault(rest[0], {})[".".join(rest[1:])] = o.value
    elif table == "config":
        raise MMBenchError(
            f"--set {o.text!r}: config keys are config.FIELD, config.MODEL.FIELD or config.MODEL.STAGE.FIELD"
        )
    elif table == "dataset" and len(rest) == 1:
        cli.dataset[rest[0]] = o.value
    elif table == "dataset":
        raise MMBenchError(f"--set {o.text!r}: dataset options are dataset.OPTION, e.g. {EXAMPLES['dataset']}")
    else:
        cli.other[o.key] = o.value


def stage_names() -> set[str]:
    """The stage sections (``mmbench.stages``) of the registered models: ``[config.NAME]`` with such a name is a
    stage section of every model of a sweep, not a model's table."""
    from mmbench.registry import MODELS

    return {s.name for n in MODELS.names() for s in getattr(MODELS.get(n), "stages", ())}


def flat_sections(config: dict) -> dict:
    """A config table with its stage sections' tables as dotted keys (``{"score": {"lr": 1}}`` ->
    ``{"score.lr": 1}``), so that tables merged key by key merge a section field by field."""
    out: dict = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{field}": v for field, v in value.items()})
        else:
            out[key] = value
    return out


def _put(doc: dict, path: tuple[str, ...], values: dict) -> None:
    if not values:
        return
    node = doc
    for i, part in enumerate(path):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise MMBenchError(
                f"--set {'.'.join(path[: i + 1])}.…: {'.'.join(path[: i + 1])} is a value in the "
                f"sweep file, not a table"
            )
        node = nxt
    node.update(values)


def apply_to_table(table: dict, overrides: list[Override], name: str, *, allow_bare: bool = True) -> dict:
    """One table's values for a command that has no sweep file (``train``'s config, ``data check``'s dataset
    options, ``prior fit``'s prior config): keys ``NAME.FIELD`` or, with ``allow_bare``, ``FIELD``; a config's
    stage section as ``config.STAGE.FIELD`` (given on as the dotted key ``STAGE.FIELD``)."""
    out = dict(table)
    for o in overrides:
        path = o.path[1:] if o.path[0] == name and len(o.path) > 1 else o.path
        if name == "config" and len(path) == 2 and path != o.path:
            out[".".join(path)] = o.value
            continue
        if len(path) != 1 or not allow_bare and path == o.path:
            raise MMBenchError(f"--set {o.text!r}: expected {name}.FIELD=VALUE")
        out[path[0]] = o.value
    return out


def metric_options(overrides: list[Override]) -> dict:
    """``evaluate.METRIC.KEY=VALUE`` (or ``METRIC.KEY=VALUE``) items as {metric: {key: value}} for ``mmbench eval``."""
    out: dict = {}
    for o in overrides:
        path = o.path[1:] if o.path[0] == "evaluate" else o.path
        if len(path) != 2:
            raise MMBenchError(f"--set {o.text!r}: expected evaluate.METRIC.OPTION=VALUE, e.g. evaluate.fid.dims=768")
        out.setdefault(path[0], {})[path[1]] = o.value
    return out

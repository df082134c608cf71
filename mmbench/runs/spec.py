"""A run spec: (model, dataset, config overrides, seed, metrics). Its id is a stable hash of the normalised spec.

Normalised means fully resolved: the model's config with every default filled in and numbers in their
field's type (``beta = 1``, ``beta = 1.0`` and an omitted ``beta`` that defaults to 1.0 are one run), the
dataset adapter's and each metric's options with their defaults filled in, metrics sorted; the missing-data options
(``mmbench.data.missing``) only when they ask for masks (``missing_rate = 0`` is the complete run). Execution
options (device, processes, checkpoint interval: ``RunOptions``) are not part of it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mmbench.config import build_config, check_keywords, config_to_dict
from mmbench.data.missing import normalized_options, parse_options, split_options
from mmbench.errors import MMBenchError
from mmbench.missing import check_supports_missing
from mmbench.registry import DATASETS, METRICS, MODELS
from mmbench.stages import REUSE_OFF, check_stages
from mmbench.storage.validate import get_field, kind_of, known_keys, read_json, refuse

SPEC = "spec.json"
# the fields of spec.json (``RunSpec.to_dict``): the resolved spec, where it came from and its id
SPEC_FIELDS = ("model", "dataset", "dataset_options", "config", "seed", "metrics", "metric_options", "sweep", "run_id")


def with_defaults(fn: Callable, given: dict, skip: tuple[str, ...] = ()) -> dict:
    """``given`` keyword arguments of ``fn`` completed with fn's defaults (unknown names kept, for the refusal)."""
    out = dict(given)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return out
    for name, p in params.items():
        if name in skip or name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is not inspect.Parameter.empty and name not in out:
            out[name] = p.default
    return out


def check_metrics_support_missing(spec: "RunSpec") -> None:
    """Refuse, in one line, a run whose test split has missing modalities and whose metrics do not declare they
    evaluate such data (``supports_missing``)."""
    unable = [m for m in spec.metrics if not getattr(METRICS.get(m), "supports_missing", False)]
    if unable:
        raise MMBenchError(
            f"dataset {spec.dataset!r}: its options give the test split missing modalities (missing_eval, or a "
            f"mask file for it), but metrics {unable} need complete test data; drop the option or those metrics"
        )


def check_stage_reuse_values(cls: type, config: Any) -> None:
    """Refuse in one line a model whose stages do not match its config (``stages.check_stages``) and an explicit
    ``reuse`` id given to a stage that is not reusable."""
    check_stages(cls)
    for stage in getattr(cls, "stages", ()):
        reuse = getattr(config, stage.name).reuse
        if not stage.reusable and reuse not in ("", REUSE_OFF):
            raise MMBenchError(
                f"{cls.Config.__name__}.{stage.name}.reuse = {reuse!r}: stage {stage.name!r} of {cls.registry_name!r} "
                'is not reusable, so it is always trained; give reuse = "" or "off"'
            )


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result. ``sweep`` names where it came from and is not hashed."""

    model: str
    dataset: str
    dataset_options: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    seed: int = 0
    metrics: tuple[str, ...] = ()
    metric_options: dict = field(default_factory=dict)
    sweep: str = ""

    def normalized(self) -> dict:
        """The resolved spec that the id hashes (see the module's docstring)."""
        cls = MODELS.get(self.model)
        adapter = DATASETS.get(self.dataset)
        metric_options = {
            m: with_defaults(METRICS.get(m).__init__, self.metric_options.get(m, {})) for m in sorted(set(self.metrics))
        }
        return _canonical(
            {
                "model": self.model,
                "dataset": self.dataset,
                "dataset_options": with_defaults(
                    adapter.load, normalized_options(self.dataset_options), skip=("split",)
                ),
                "config": config_to_dict(build_config(cls.Config, self.config)),
                "seed": self.seed,
                "metrics": sorted(set(self.metrics)),
                "metric_options": metric_options,
            }
        )

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.normalized(), sort_keys=True).encode()).hexdigest()
        return f"{self.model}-{digest[:12]}"

    def to_dict(self) -> dict:
        return {**self.normalized(), "sweep": self.sweep, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: Any, path: Path | str = "(in memory)") -> "RunSpec":
        """The spec of a parsed spec.json (``to_dict``'s layout); refused in one MMBenchError line naming ``path``
        and the field when it is not one. Names are not looked up here (``load`` does, for a run folder)."""
        where = f"run spec {path}"
        if not isinstance(d, dict):
            raise MMBenchError(f"{where} must be a JSON object, got {kind_of(d)}")
        known_keys(d, SPEC_FIELDS, where, hint="a newer mmbench wrote it, or it is not a run's spec.json")
        for key in ("model", "dataset"):
            if not get_field(d, key, "str", where, required=True):
                raise MMBenchError(f"{where}: field {key!r} must be a non-empty string, got an empty one")
        metrics = get_field(d, "metrics", "list", where) or []
        for i, m in enumerate(metrics):
            if not isinstance(m, str):
                raise refuse(where, f"metrics[{i}]", "a metric's name (a string)", m)
        metric_options = get_field(d, "metric_options", "dict", where) or {}
        for m in metric_options:
            get_field(metric_options, m, "dict", where, prefix="metric_options.")
        seed = get_field(d, "seed", "int", where)
        get_field(d, "run_id", "str", where)
        return cls(
            d["model"],
            d["dataset"],
            get_field(d, "dataset_options", "dict", where) or {},
            get_field(d, "config", "dict", where) or {},
            0 if seed is None else seed,
            tuple(metrics),
            {m: options or {} for m, options in metric_options.items()},
            get_field(d, "sweep", "str", where) or "",
        )

    @classmethod
    def load(cls, path: Path) -> "RunSpec":
        """The spec a run folder's spec.json holds, validated (``from_dict``), its model and dataset installed here;
        MMBenchError in one line naming the file and the field otherwise."""
        path = Path(path)
        spec = cls.from_dict(read_json(path, "run spec"), path)
        for key, registry in (("model", MODELS), ("dataset", DATASETS)):
            try:
                registry.get(getattr(spec, key))
            except MMBenchError as exc:
                raise MMBenchError(f"run spec {path}: field {key!r}: {exc}") from None
        return spec

    def validate(self, *, check_data: bool = True) -> None:
        """Check everything a run needs before any work starts, so that nothing is spent or half-written on a
        typo: model, config fields and ranges, dataset name and its options, metric names and options, and
        (``check_data``) that the dataset's folder is there."""
        from mmbench.metrics.runner import make_metric

        cls = MODELS.get(self.model)
        adapter = DATASETS.get(self.dataset)
        for m in self.metrics:
            METRICS.get(m)
        config = build_config(cls.Config, self.config)
        check_stage_reuse_values(cls, config)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise MMBenchError(f"seed must be an integer, got {self.seed!r}")
        unknown = sorted(set(self.metric_options) - set(self.metrics))
        if unknown:
            raise MMBenchError(
                f"options given for metrics {unknown} that the run does not evaluate ({list(self.metrics)})"
            )
        for m in self.metrics:
            make_metric(m, self.metric_options.get(m))
        adapter_options, _ = split_options(self.dataset_options)
        check_keywords(
            adapter.load,
            adapter_options,
            f"dataset {self.dataset!r} ({self.dataset_options})",
            fixed={"split": "train"},
        )
        missing = parse_options(self.dataset_options, f"dataset {self.dataset!r}")
        if missing.active:
            check_supports_missing(cls, f"dataset {self.dataset!r} with {self.dataset_options}")
        if missing.splits("test"):
            check_metrics_support_missing(self)
        check = getattr(adapter, "check_options", None)  # an adapter may check its folder without loading it
        if check is not None and check_data:
            check(**adapter_options)

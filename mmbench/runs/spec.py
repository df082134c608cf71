"""A run spec: (model, dataset, config overrides, seed, metrics). Its id is a stable hash of the normalised spec.

Normalised means fully resolved: the model's config with every default filled in and numbers in their
field's type (``beta = 1``, ``beta = 1.0`` and an omitted ``beta`` that defaults to 1.0 are one run), the
dataset adapter's and each metric's options with their defaults filled in, metrics sorted. Execution
options (device, processes, checkpoint interval: ``RunOptions``) are not part of it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from mmbench.config import build_config, check_keywords, config_to_dict
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS, METRICS, MODELS


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
                "dataset_options": with_defaults(adapter.load, self.dataset_options, skip=("split",)),
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
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(
            d["model"],
            d["dataset"],
            d.get("dataset_options", {}),
            d.get("config", {}),
            d.get("seed", 0),
            tuple(d.get("metrics", ())),
            d.get("metric_options", {}),
            d.get("sweep", ""),
        )

    def validate(self, *, check_data: bool = True) -> None:
        """Check everything a run needs before any work starts, so that nothing is spent or half-written on a
        typo: model, config fields and ranges, dataset name and its options, metric names and options, and
        (``check_data``) that the dataset's folder is there."""
        from mmbench.metrics.runner import make_metric

        cls = MODELS.get(self.model)
        adapter = DATASETS.get(self.dataset)
        for m in self.metrics:
            METRICS.get(m)
        build_config(cls.Config, self.config)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise MMBenchError(f"seed must be an integer, got {self.seed!r}")
        unknown = sorted(set(self.metric_options) - set(self.metrics))
        if unknown:
            raise MMBenchError(
                f"options given for metrics {unknown} that the run does not evaluate ({list(self.metrics)})"
            )
        for m in self.metrics:
            make_metric(m, self.metric_options.get(m))
        check_keywords(
            adapter.load,
            self.dataset_options,
            f"dataset {self.dataset!r} ({self.dataset_options})",
            fixed={"split": "train"},
        )
        check = getattr(adapter, "check_options", None)  # an adapter may check its folder without loading it
        if check is not None and check_data:
            check(**self.dataset_options)

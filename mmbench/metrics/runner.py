"""The evaluation protocol: run the named registered metrics on a trained model -> metric rows."""

from __future__ import annotations

from typing import Mapping, Sequence

from mmbench.config import check_keywords
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.model import MultimodalVAE
from mmbench.registry import METRICS


def make_metric(name: str, options: Mapping | None = None):
    cls = METRICS.get(name)
    check_keywords(cls.__init__, dict(options or {}), f"metric {name!r}")
    try:
        return cls(**dict(options or {}))
    except MMBenchError:
        raise
    except (TypeError, ValueError, RuntimeError, OSError) as exc:  # an option of the wrong type or an unusable path
        raise MMBenchError(f"bad options for metric {name!r}: {exc}") from exc


def build_metrics(
    metrics: Sequence[str], metric_options: Mapping[str, Mapping] | None = None
) -> list[tuple[str, object]]:
    """(name, metric) for every named metric, built with its options (checked, weights found) before any runs."""
    metric_options = metric_options or {}
    unknown = sorted(set(metric_options) - set(metrics))
    if unknown:
        raise MMBenchError(f"options given for metrics {unknown} that the run does not evaluate ({list(metrics)})")
    return [(name, make_metric(name, metric_options.get(name))) for name in metrics]


def run_metrics(
    model: MultimodalVAE, ctx: EvalContext, built: Sequence[tuple[str, object]], provenance: dict | None = None
) -> list[MetricRow]:
    """The rows of built metrics on ``model``. Metrics that say where their numbers come from (a ``provenance``
    attribute: weights, classifiers) fill ``provenance`` by name."""
    rows: list[MetricRow] = []
    for name, metric in built:
        rows += metric(model, ctx)
        if provenance is not None and getattr(metric, "provenance", None):
            provenance[name] = metric.provenance
    return rows


def evaluate(
    model: MultimodalVAE,
    ctx: EvalContext,
    metrics: Sequence[str],
    metric_options: Mapping[str, Mapping] | None = None,
    provenance: dict | None = None,
) -> list[MetricRow]:
    """Every named metric on ``model``; options per metric name come from the run spec. Every metric is built
    before the first one runs (``build_metrics``), then run (``run_metrics``)."""
    return run_metrics(model, ctx, build_metrics(metrics, metric_options), provenance)

"""The evaluation protocol: run the named registered metrics on a trained model -> metric rows."""

from __future__ import annotations

from typing import Mapping, Sequence

from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.model import MultimodalVAE
from mmbench.registry import METRICS


def make_metric(name: str, options: Mapping | None = None):
    cls = METRICS.get(name)
    try:
        return cls(**dict(options or {}))
    except TypeError as exc:
        raise MMBenchError(f"bad options for metric {name!r}: {exc}") from exc


def evaluate(model: MultimodalVAE, ctx: EvalContext, metrics: Sequence[str],
             metric_options: Mapping[str, Mapping] | None = None) -> list[MetricRow]:
    """Every named metric on ``model``; options per metric name come from the run spec."""
    metric_options = metric_options or {}
    unknown = sorted(set(metric_options) - set(metrics))
    if unknown:
        raise MMBenchError(f"options given for metrics {unknown} that the run does not evaluate ({list(metrics)})")
    rows: list[MetricRow] = []
    for name in metrics:
        rows += make_metric(name, metric_options.get(name))(model, ctx)
    return rows

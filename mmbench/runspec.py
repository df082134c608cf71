"""A run spec: (model, dataset, config overrides, seed, metrics). Its id is a stable hash of it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS, METRICS, MODELS


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
        d = asdict(self)
        d.pop("sweep")
        d["metrics"] = list(self.metrics)
        return json.loads(json.dumps(d, sort_keys=True))

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.normalized(), sort_keys=True).encode()).hexdigest()
        return f"{self.model}-{digest[:12]}"

    def to_dict(self) -> dict:
        return {**self.normalized(), "sweep": self.sweep, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(d["model"], d["dataset"], d.get("dataset_options", {}), d.get("config", {}), d.get("seed", 0),
                   tuple(d.get("metrics", ())), d.get("metric_options", {}), d.get("sweep", ""))

    def validate(self) -> None:
        """Check names and config fields before any work starts (so nothing is half-written)."""
        cls = MODELS.get(self.model)
        DATASETS.get(self.dataset)
        for m in self.metrics:
            METRICS.get(m)
        build_config(cls.Config, self.config)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise MMBenchError(f"seed must be an integer, got {self.seed!r}")


"""What a metric returns and what it is given."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mmbench.data.base import MultimodalDataset


@dataclass(frozen=True)
class MetricRow:
    """One number: metric, target modality ("*" for an average), given modalities ("m0+m1"; "" when
    unconditional; "*" for an average), n_given (0 when unconditional), value, the number of samples it
    was computed from (None when not sampled) and the prior unconditional samples came from ("" when none;
    "gaussian" for the model's own p(z), or a fitted prior's kind)."""

    metric: str
    target: str
    given: str
    n_given: int
    value: float
    n_samples: int | None = None
    prior: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalContext:
    """The data and cache a metric may use: train split (e.g. to fit classifiers), test split, options, and the
    run's device (the model and the splits' batches are there; a metric's own networks go there too)."""

    train: MultimodalDataset
    test: MultimodalDataset
    cache_dir: Path
    seed: int = 0
    progress: bool = True
    options: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # where unconditional z come from: name -> None (the model's own p(z)) or sampler(n, generator) -> z (n, D)
    priors: dict = field(default_factory=lambda: {"gaussian": None})
    unconditional_only: bool = False  # metrics skip their conditional part (prior comparisons)

"""What a metric returns and what it is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmbench.data.base import MultimodalDataset
from mmbench.storage.records import MetricRow  # noqa: F401 - the row type lives with the record that keeps it


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

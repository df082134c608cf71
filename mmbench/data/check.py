"""``mmbench data check NAME DIR``: load every split of a dataset through its registered adapter and summarise it.

Works for any adapter that honours the dataset contract (docs/architecture.md, "Where to add"), ``load(root, split, **options) ->
MultimodalDataset``. Its splits are ``adapter.splits(root, **options)`` when it has that (a folder that holds
val or not), else ``adapter.SPLITS``, else train and test. The missing-data options (``mmbench.data.missing``)
apply as in a run, and each modality's line says the fraction of tuples that observe it. The first problem is raised as one MMBenchError
naming the dataset, split and folder; the adapter's own errors (which name the file) pass through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from mmbench.config import check_keywords
from mmbench.data.base import MultimodalDataset
from mmbench.data.missing import apply_missing, parse_options, split_options
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS

DEFAULT_SPLITS = ("train", "test")


@dataclass(frozen=True)
class ViewSummary:
    """One modality of one split: its declared kind and shape, the tensor's dtype and value range."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    low: float
    high: float
    observed: float = 1.0  # fraction of the split's tuples that observe it (masks: mmbench.data.missing)


@dataclass(frozen=True)
class SplitSummary:
    split: str
    n: int
    views: tuple[ViewSummary, ...]
    labels: str  # e.g. "labels 0..9 (10 distinct)"


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    where: str
    release: str
    splits: tuple[SplitSummary, ...]

    def lines(self) -> list[str]:
        out = [
            f"{self.name} at {self.where}" + (f": {self.release}" if self.release else ""),
            "splits: " + ", ".join(s.split for s in self.splits),
        ]
        for s in self.splits:
            out.append(f"{s.split}: {s.n:,} tuples, {s.labels}")
            width = max(len(v.name) for v in s.views)
            for v in s.views:
                out.append(
                    f"  {v.name:<{width}}  {v.kind:<10}  {str(v.shape):<14}  {v.dtype:<8}  "
                    f"values {v.low:.4g}..{v.high:.4g}  observed {100 * v.observed:.1f}%"
                )
        return out


def dataset_splits(adapter, options: dict) -> tuple[str, ...]:
    """The splits an adapter declares for these options (see the module's docstring)."""
    splits = getattr(adapter, "splits", None)
    if callable(splits):
        return tuple(splits(**options))
    return tuple(getattr(adapter, "SPLITS", DEFAULT_SPLITS))


def check_dataset(name: str, root: str | Path | None = None, options: dict | None = None) -> DatasetSummary:
    """Load every split of dataset ``name`` (from ``root``, with adapter ``options``) and summarise it; the first
    problem is an MMBenchError."""
    adapter = DATASETS.get(name)
    opts, missing_opts = split_options({**(options or {}), **({"root": str(root)} if root is not None else {})})
    missing = parse_options(missing_opts, f"dataset {name!r}")
    where = str(root) if root is not None else "(no folder)"
    try:
        check_keywords(adapter.load, opts, f"dataset {name!r} ({opts})", fixed={"split": "train"})
    except MMBenchError as exc:
        hint = f"; give its folder: mmbench data check {name} DIR" if root is None and "'root'" in str(exc) else ""
        raise MMBenchError(f"{exc}{hint}") from None
    check = getattr(adapter, "check_options", None)
    if check is not None:
        check(**opts)
    summaries, first = [], None
    for split in dataset_splits(adapter, opts):
        data = apply_missing(_load(adapter, name, split, opts, where), split, missing, f"dataset {name!r}")
        if first is None:
            first = data
        _agree(first, data, f"{name} at {where}", split)
        summaries.append(_summarise(data, f"{name} {split} split at {where}", split))
    if not summaries:
        raise MMBenchError(f"dataset {name!r} declares no splits for {where}")
    release = getattr(adapter, "release", None)
    return DatasetSummary(name, where, str(release(**opts)) if callable(release) else "", tuple(summaries))


def _load(adapter, name: str, split: str, opts: dict, where: str) -> MultimodalDataset:
    try:
        data = adapter.load(split=split, **opts)
    except MMBenchError:
        raise
    except Exception as exc:  # a third-party adapter may fail in any way: report it as one line
        raise MMBenchError(
            f"dataset {name!r} failed to load the {split} split from {where}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(data, MultimodalDataset):
        raise MMBenchError(
            f"dataset {name!r} returned a {type(data).__name__} for the {split} split, expected a "
            "MultimodalDataset (mmbench.data.base)"
        )
    if len(data) == 0:
        raise MMBenchError(f"{name} {split} split at {where} is empty")
    return data


def _agree(first: MultimodalDataset, data: MultimodalDataset, what: str, split: str) -> None:
    """Every split declares the same modalities with the same dtypes: a model is built from one of them."""
    a = [(m.to_dict(), first.x[m.name].dtype) for m in first.modalities]
    b = [(m.to_dict(), data.x[m.name].dtype) for m in data.modalities]
    if a != b:
        diff = next(
            (
                f"{x[0]['name']} {x[0]['shape']} {x[1]} vs {y[0]['name']} {y[0]['shape']} {y[1]}"
                for x, y in zip(a, b)
                if x != y
            ),
            f"{len(a)} vs {len(b)} modalities",
        )
        raise MMBenchError(
            f"{what}: the {split} split does not declare the same modalities as the first split ({diff})"
        )


def _summarise(data: MultimodalDataset, what: str, split: str) -> SplitSummary:
    views = []
    observed = data.observed_fraction()
    for m in data.modalities:
        t = data.x[m.name]
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise MMBenchError(f"{what}: modality {m.name!r} holds NaN or infinite values")
        low, high = t.min().item(), t.max().item()
        if m.likelihood == "bernoulli" and not (low >= 0 and high <= 1):
            raise MMBenchError(
                f"{what}: modality {m.name!r} ({m.kind}, bernoulli) holds values in [{low:.4g}, "
                f"{high:.4g}]; expected [0, 1]"
            )
        if m.likelihood == "categorical" and (t.is_floating_point() or low < 0 or high >= m.classes):
            raise MMBenchError(
                f"{what}: modality {m.name!r} ({m.kind}, categorical) must hold integer indices "
                f"0..{m.classes - 1}, holds {t.dtype} in [{low:.4g}, {high:.4g}]"
            )
        dtype = str(t.dtype).removeprefix("torch.")
        views.append(ViewSummary(m.name, m.kind, m.shape, dtype, low, high, observed[m.name]))
    return SplitSummary(split, len(data), tuple(views), _labels(data.y, what))


def _labels(y: Tensor, what: str) -> str:
    if y.is_floating_point() and not torch.isfinite(y).all():
        raise MMBenchError(f"{what}: labels hold NaN or infinite values")
    low, high = y.min().item(), y.max().item()
    if y.ndim == 1:
        if y.is_floating_point() or low < 0:
            raise MMBenchError(f"{what}: labels must be class indices >= 0, found {y.dtype} in [{low:.4g}, {high:.4g}]")
        return f"labels {low}..{high} ({len(torch.unique(y))} distinct)"
    return f"labels {tuple(y.shape[1:])} per tuple, values {low:.4g}..{high:.4g}"

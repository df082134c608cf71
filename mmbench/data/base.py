"""In-memory multimodal datasets: the form every adapter returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import Tensor

from mmbench.device import to_device
from mmbench.errors import MMBenchError
from mmbench.modality import Modality


@dataclass
class MultimodalDataset:
    """Tensors of every modality, aligned by row, with labels.

    x: {modality name: Tensor (N, *shape)}; y: Tensor (N,) of integer labels (or (N, k) attributes).
    Batches are ``{"x": {m: Tensor (B, ...)}, "y": Tensor (B,)}``, on ``batch_device`` when it is set (a
    dataset too large for the GPU stays in pinned CPU memory and each batch is copied without blocking).

    mask: None (every row observes every modality) or {modality: bool (N,)}, True where the row observes it
    (a modality without an entry is observed everywhere); every row observes at least one modality. Batches then
    carry ``"mask"`` (``mmbench.missing``) and hold ``MISSING_FILL`` in their missing rows (NaN for float tensors,
    -1 for signed integer ones such as token ids, which no embedding accepts), so no model reads what a missing
    row held; the dataset's own tensors keep what the adapter read (``complete()`` gives the fully observed rows).
    """

    modalities: list[Modality]
    x: dict[str, Tensor]
    y: Tensor
    name: str = ""
    batch_device: torch.device | None = None
    mask: dict[str, Tensor] | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        for m in self.modalities:
            if m.name not in self.x:
                raise MMBenchError(f"dataset {self.name!r} declares modality {m.name!r} but holds no tensor for it")
            t = self.x[m.name]
            if len(t) != n or tuple(t.shape[1:]) != m.shape:
                raise MMBenchError(
                    f"dataset {self.name!r}: modality {m.name!r} has tensor shape {tuple(t.shape)}, "
                    f"expected ({n}, {', '.join(map(str, m.shape))})"
                )
        if self.mask is not None:
            self.mask = check_mask(self.mask, [m.name for m in self.modalities], n, f"dataset {self.name!r}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def batch(self, rows: Tensor) -> dict:
        rows = torch.as_tensor(rows)  # an index tensor: every v[rows] is a copy (the fill below writes into it)
        batch = {"x": {k: v[rows] for k, v in self.x.items()}, "y": self.y[rows]}
        if self.mask is not None:
            batch["mask"] = {k: v[rows] for k, v in self.mask.items()}
            batch["x"] = {k: _fill_missing(v, batch["mask"].get(k)) for k, v in batch["x"].items()}
        if self.batch_device is None:
            return batch
        return to_device(batch, self.batch_device, non_blocking=True)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.x.values(), self.y))

    def to(self, device: torch.device | str, *, max_fraction: float = 0.5) -> "MultimodalDataset":
        """This dataset for work on ``device``: its tensors moved there once when they fit in
        ``max_fraction`` of the device's free memory, else kept in pinned CPU memory with batches copied
        to the device (``batch_device``)."""
        device = torch.device(device)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if self.nbytes > max_fraction * free:
                pinned = {k: v.pin_memory() for k, v in self.x.items()}
                mask = None if self.mask is None else {k: v.pin_memory() for k, v in self.mask.items()}
                return replace(self, x=pinned, y=self.y.pin_memory(), batch_device=device, mask=mask)
        mask = None if self.mask is None else {k: v.to(device) for k, v in self.mask.items()}
        return replace(
            self, x={k: v.to(device) for k, v in self.x.items()}, y=self.y.to(device), batch_device=None, mask=mask
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[dict]:
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def select(self, names: list[str]) -> "MultimodalDataset":
        """The same rows with only the named modalities (in the dataset's order)."""
        keep = [m for m in self.modalities if m.name in names]
        mask = None
        if self.mask is not None:
            mask = {m.name: self.mask[m.name] for m in keep if m.name in self.mask}
            observed = torch.zeros(len(self), dtype=torch.bool, device=self.y.device)
            for m in keep:
                observed = observed | mask[m.name] if m.name in mask else torch.ones_like(observed)
            if not bool(observed.all()):
                raise MMBenchError(
                    f"dataset {self.name!r}: with only modalities {[m.name for m in keep]}, "
                    f"{int((~observed).sum())} rows observe none of them; keep more modalities"
                )
        return replace(self, modalities=keep, x={m.name: self.x[m.name] for m in keep}, mask=mask or None)

    def head(self, n: int) -> "MultimodalDataset":
        mask = None if self.mask is None else {k: v[:n] for k, v in self.mask.items()}
        return replace(self, x={k: v[:n] for k, v in self.x.items()}, y=self.y[:n], mask=mask)

    def rows(self, index: Tensor) -> "MultimodalDataset":
        """The dataset of the given rows (indices or a bool (N,) selection), masks included."""
        mask = None if self.mask is None else {k: v[index] for k, v in self.mask.items()}
        return replace(self, x={k: v[index] for k, v in self.x.items()}, y=self.y[index], mask=mask)

    @property
    def incomplete(self) -> bool:
        """Whether some row misses a modality."""
        return self.mask is not None and any(not bool(v.all()) for v in self.mask.values())

    def observed_fraction(self) -> dict[str, float]:
        """{modality: fraction of the rows that observe it} (1.0 for every modality of a complete dataset)."""
        n = max(len(self), 1)
        mask = self.mask or {}
        return {m: (float(mask[m].sum()) / n if m in mask else 1.0) for m in self.modality_names}

    def complete(self) -> "MultimodalDataset":
        """Only the rows that observe every modality, without a mask (the dataset itself when it is complete)."""
        if not self.incomplete:
            return replace(self, mask=None)
        keep = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
        for m in self.modality_names:
            if m in self.mask:
                keep &= self.mask[m]
        return replace(self.rows(keep), mask=None)

    def with_mask(self, mask: dict[str, Tensor] | None) -> "MultimodalDataset":
        """This dataset with ``mask`` combined (and) with its own: a row observes a modality when both say so."""
        if not mask:
            return self
        combined = dict(self.mask or {})
        for k, v in mask.items():
            combined[k] = combined[k] & v.to(combined[k].device) if k in combined else v
        return replace(self, mask=combined)


MISSING_FILL = {"float": float("nan"), "signed integer": -1}


def _fill_missing(t: Tensor, observed: Tensor | None) -> Tensor:
    """``t`` (a batch's own copy of its rows) with its missing rows set to MISSING_FILL in place: NaN, or -1 for
    signed integers; other dtypes unchanged."""
    if observed is None or bool(observed.all()):
        return t
    if t.is_floating_point():
        fill = MISSING_FILL["float"]
    elif t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
        fill = MISSING_FILL["signed integer"]
    else:
        return t
    return t.index_fill_(0, (~observed).nonzero().flatten(), fill)


def check_mask(mask, names: list[str], n: int, where: str) -> dict[str, Tensor]:
    """``mask`` checked: a dict of bool (n,) tensors over known modality names, each row observing at least one
    modality; MMBenchError in one line otherwise."""
    if not isinstance(mask, dict):
        raise MMBenchError(f"{where}: mask must be a dict {{modality: bool tensor (N,)}}, got {type(mask).__name__}")
    out = {}
    for k, v in mask.items():
        if k not in names:
            raise MMBenchError(f"{where}: mask names modality {k!r}, which the dataset does not hold ({names})")
        if not torch.is_tensor(v) or v.dtype != torch.bool or tuple(v.shape) != (n,):
            got = f"{v.dtype} {tuple(v.shape)}" if torch.is_tensor(v) else type(v).__name__
            raise MMBenchError(f"{where}: mask of modality {k!r} must be a bool tensor of shape ({n},), got {got}")
        out[k] = v
    if len(out) == len(names) and n:
        observed = torch.stack([out[k] for k in names]).any(0)
        if not bool(observed.all()):
            bad = int((~observed).sum())
            raise MMBenchError(
                f"{where}: {bad} of {n} rows observe no modality (first: row {int((~observed).nonzero()[0])}); "
                "every row must observe at least one"
            )
    return out

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
    """

    modalities: list[Modality]
    x: dict[str, Tensor]
    y: Tensor
    name: str = ""
    batch_device: torch.device | None = None

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

    def __len__(self) -> int:
        return len(self.y)

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def batch(self, rows: Tensor) -> dict:
        batch = {"x": {k: v[rows] for k, v in self.x.items()}, "y": self.y[rows]}
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
                return replace(self, x=pinned, y=self.y.pin_memory(), batch_device=device)
        return replace(self, x={k: v.to(device) for k, v in self.x.items()}, y=self.y.to(device), batch_device=None)

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
        return replace(self, modalities=keep, x={m.name: self.x[m.name] for m in keep})

    def head(self, n: int) -> "MultimodalDataset":
        return replace(self, x={k: v[:n] for k, v in self.x.items()}, y=self.y[:n])

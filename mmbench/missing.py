"""Missing modalities in a batch: the mask contract.

A batch may carry ``batch["mask"] = {modality: BoolTensor (B,)}``, True where the row observes the modality. No
"mask" key, or no entry for a modality, means every row observes it, so complete datasets and plugins that never
look at masks are unchanged. The rows a mask marks missing hold arbitrary values (NaN in the tests): no loss term
and no gradient may depend on them, so models select with ``torch.where`` (never multiply: NaN * 0 is NaN). Every
row observes at least one modality. A model declares ``supports_missing = True`` when its ``loss`` follows this.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from mmbench.errors import MMBenchError


def batch_masks(batch: Mapping[str, object], names: Sequence[str]) -> dict[str, Tensor] | None:
    """{m: bool (B,)} for every named modality when the batch marks any row of them missing, else None."""
    masks = batch.get("mask") if isinstance(batch, Mapping) else None
    if not masks:
        return None
    out, incomplete = {}, False
    for m in names:
        mask = masks.get(m)
        if mask is None:
            n = len(next(iter(batch["x"].values())))
            mask = torch.ones(n, dtype=torch.bool, device=next(iter(batch["x"].values())).device)
        out[m] = mask.to(torch.bool)
        incomplete = incomplete or not bool(out[m].all())
    return out if incomplete else None


def fill_missing(x: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """x with every missing row set to zeros (``masked_fill``, so NaN fills go too and the layout is kept): a model
    then runs its networks on the whole batch and drops the missing rows' terms with ``torch.where``, so that no
    value, gradient or batch statistic depends on what the missing rows held."""
    out = dict(x)
    for m, mask in masks.items():
        if m in out and not bool(mask.all()):
            v = out[m]
            out[m] = v.masked_fill(~mask.to(v.device).view(-1, *([1] * (v.dim() - 1))), 0)
    return out


def observed(masks: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """(M, B) bool: row b observes modality names[m]."""
    return torch.stack([masks[m] for m in names])


def check_supports_missing(model_cls: type, where: str) -> None:
    """Refuse, in one line, a model that does not declare it takes batches with missing modalities."""
    if not getattr(model_cls, "supports_missing", False):
        name = getattr(model_cls, "registry_name", "") or model_cls.__name__
        raise MMBenchError(
            f"{where}: model {name!r} does not declare support for missing modalities (supports_missing = True), "
            "and the data has rows with modalities missing; use complete data (missing_rate = 0) or a model that "
            "supports it (mmbench list models)"
        )

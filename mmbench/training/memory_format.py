"""The memory layout of a run's image tensors: channels-last (NHWC) or contiguous (NCHW).

The layout changes no value a network computes, only the order of the numbers in memory and so which
kernels run: on the CPU, oneDNN's convolutions and transposed convolutions (forward and backward) are
faster on channels-last tensors. ``benchmarks/memory_format.py`` measures it on every network preset
(fp32, forward + backward of encoder and decoder): 0.77x to 0.97x of the contiguous time on a 2-core CPU.

``memory_format``: "auto" (channels-last on the CPU; contiguous on CUDA, where it has not been measured
                   here), "channels_last" or "contiguous".
"""

from __future__ import annotations

from typing import Any

import torch

from mmbench.device import map_tensors
from mmbench.errors import MMBenchError

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def check_memory_format(name: Any) -> str:
    """The name, or one clear error when it is not a layout this module knows."""
    if name not in MEMORY_FORMATS:
        raise MMBenchError(f"memory_format {name!r}; allowed: {', '.join(MEMORY_FORMATS)}")
    return name


def resolve_memory_format(name: str, device: torch.device) -> torch.memory_format:
    """The torch layout of ``name`` on ``device`` ("auto": channels-last on the CPU, contiguous elsewhere)."""
    check_memory_format(name)
    if name == "auto":
        name = "channels_last" if torch.device(device).type == "cpu" else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def to_memory_format(obj: Any, fmt: torch.memory_format) -> Any:
    """Every 4-d tensor (a batch of images) in nested dicts, lists and tuples in layout ``fmt``; other tensors
    and values returned as they are."""
    return map_tensors(obj, lambda t: t.contiguous(memory_format=fmt) if t.dim() == 4 else t)


def apply_memory_format(model: torch.nn.Module, fmt: torch.memory_format) -> torch.nn.Module:
    """``model`` with its 4-d parameters (convolution kernels) in layout ``fmt``, in place."""
    return model.to(memory_format=fmt)

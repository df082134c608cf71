"""How a run executes, as opposed to what it computes: not part of the run's id.

A sweep file's ``[run]`` table, ``mmbench train`` / ``mmbench sweep submit`` flags (``--device``,
``--nproc``, ``--checkpoint-every``) and the Python API set these. Precision and gradient clipping change
the result, so they are model config fields (``precision``, ``grad_clip``), hashed with the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbench.config import check_range
from mmbench.device import check_nproc, parse_device, resolve_device
from mmbench.errors import MMBenchError
from mmbench.training.memory_format import check_memory_format


@dataclass(frozen=True)
class RunOptions:
    """device:           auto | cpu | cuda | cuda:N (auto: CUDA when available).
    nproc:            data-parallel processes on this node, one per device (DDP; 1 = no DDP).
    checkpoint_every: optimiser steps between checkpoints (and one at the end). 500 steps of a PolyMNIST
                      model on an A100 take under a minute, of Diff-MVAE's UNets a few minutes, so a
                      preempted job loses minutes, not an epoch.
    log_every:        optimiser steps between lines of the training log (train_log.jsonl, TensorBoard).
    tensorboard:      also write TensorBoard events (run_dir/tensorboard) when the package is installed.
    memory_format:    auto | channels_last | contiguous: the layout of convolution kernels and image batches
                      (``mmbench.training.memory_format``; auto: channels-last on the CPU, where it is faster).
    """

    device: str = "auto"
    nproc: int = 1
    checkpoint_every: int = 500
    log_every: int = 50
    tensorboard: bool = True
    memory_format: str = "auto"

    def __post_init__(self) -> None:
        parse_device(self.device)
        for name in ("nproc", "checkpoint_every", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise MMBenchError(f"RunOptions.{name} must be an integer, got {v!r}")
            check_range(self, name, lo=1)
        if not isinstance(self.tensorboard, bool):
            raise MMBenchError(f"RunOptions.tensorboard must be true or false, got {self.tensorboard!r}")
        check_memory_format(self.memory_format)

    def resolve(self) -> torch.device:
        """The device, checked against this machine together with nproc (one clear line when either is wrong)."""
        device = resolve_device(self.device)
        check_nproc(self.nproc, device)
        return device

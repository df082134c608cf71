"""Generation throughput of a model during evaluation: samples/s over every generate / cond_generate call."""

from __future__ import annotations

import time

import torch

from mmbench.device import synchronize
from mmbench.model import MultimodalVAE


class GenerationMeter:
    """Within ``with GenerationMeter(model, device) as meter:`` the model's ``generate`` and ``cond_generate``
    calls are timed (the device synchronised around each) and their samples counted; ``summary()`` gives
    {"samples", "seconds", "samples_per_s"}. The methods are restored on exit."""

    METHODS = ("generate", "cond_generate")

    def __init__(self, model: MultimodalVAE, device: torch.device):
        self.model, self.device = model, torch.device(device)
        self.samples, self.seconds = 0, 0.0

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            synchronize(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(self.device)
            self.seconds += time.perf_counter() - t0
            self.samples += len(next(iter(out.values()))) if out else 0
            return out

        return wrapper

    def __enter__(self) -> "GenerationMeter":
        for name in self.METHODS:
            setattr(self.model, name, self._timed(getattr(self.model, name)))
        return self

    def __exit__(self, *exc) -> None:
        for name in self.METHODS:
            self.model.__dict__.pop(name, None)

    def summary(self) -> dict:
        return {
            "samples": self.samples,
            "seconds": self.seconds,
            "samples_per_s": self.samples / self.seconds if self.seconds > 0 else 0.0,
        }

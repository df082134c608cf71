"""Adam as the trainer builds it: torch's fused kernel where this torch has one for the parameters' device.

The fused kernel does Adam's update (Kingma & Ba 2015, Algorithm 1, with AMSGrad's running maximum when asked)
for all parameters in one pass instead of a chain of per-op "foreach" kernels: the same update, to float
rounding. torch has it for CUDA, and for the CPU from 2.4; elsewhere the default implementation is used.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.torch_version import TorchVersion

FUSED_CPU_FROM = "2.4"


def fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam runs on every one of ``params`` (floating point, on CUDA or a CPU it supports)."""
    devices = {p.device.type for p in params}
    if not params or not all(p.is_floating_point() for p in params):
        return False
    cpu_ok = TorchVersion(torch.__version__) >= FUSED_CPU_FROM
    return devices <= ({"cuda", "cpu"} if cpu_ok else {"cuda"})


def adam(params: Iterable[torch.Tensor], lr: float, *, amsgrad: bool = False) -> torch.optim.Adam:
    """torch.optim.Adam over ``params`` (betas 0.9, 0.999, eps 1e-8), fused where ``fused_supported``."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, amsgrad=amsgrad, fused=fused_supported(params) or None)


def module_parameters(model: torch.nn.Module, modules: Iterable[str], owner: str = "") -> list[torch.nn.Parameter]:
    """The parameters of ``model``'s submodules named ``modules`` (attribute names, dotted for nested ones), each
    once, in order; a name the model does not have is refused in one line."""
    from mmbench.errors import MMBenchError

    out: dict[int, torch.nn.Parameter] = {}
    for name in modules:
        try:
            sub = model.get_submodule(name)
        except AttributeError:
            raise MMBenchError(
                f"{owner or type(model).__name__}: stage module {name!r} is not a submodule of the model"
            ) from None
        for p in sub.parameters():
            out.setdefault(id(p), p)
    return list(out.values())

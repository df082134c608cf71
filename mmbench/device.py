"""Where a run computes: device names resolved and checked, precision (autocast), batches moved, facts for the record.

``device``:    "auto" (CUDA when available, else the CPU), "cpu", "cuda" (the current CUDA device) or "cuda:N".
``precision``: "fp32" or "bf16". bf16 runs the forward pass and the loss under ``torch.autocast`` with
               fp32 master weights and optimiser state; the numerically delicate terms (log-variances,
               products of experts, KL, likelihoods, log-sum-exp) are computed in fp32 because encoders
               return fp32 Gaussians and likelihoods cast decoder outputs to fp32. With fp32 on a GPU,
               TF32 matmuls and convolutions are allowed (``torch.set_float32_matmul_precision("high")``):
               about 10 mantissa bits in the matmul inputs, fp32 accumulation, several times faster on
               Ampere and newer.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any, Callable, Mapping

import torch

from mmbench.errors import MMBenchError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = ("fp32", "bf16")


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_device(name: str) -> tuple[str, int | None]:
    """("auto" | "cpu" | "cuda", index or None) for a device name, without asking this machine; one clear
    error for what is not a device name at all (also for runs that will resolve it on another machine)."""
    if not isinstance(name, str):
        raise MMBenchError(f"device must be a string ({', '.join(DEVICE_CHOICES)}), got {name!r}")
    text = name.strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, None
    if text.startswith("cuda:"):
        if not text[5:].isdigit():
            raise MMBenchError(f"device {name!r}: the index after 'cuda:' must be a number, e.g. cuda:0")
        return "cuda", int(text[5:])
    raise MMBenchError(f"unknown device {name!r}; allowed: {', '.join(DEVICE_CHOICES)}")


def resolve_device(name: str) -> torch.device:
    """The torch.device for a user's device name; one clear error when it does not exist here."""
    kind, index = parse_device(name)
    if kind == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if cuda_count() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    n = cuda_count()
    if n == 0:
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise MMBenchError(
            f"device {name!r} was asked for but this machine has no CUDA device ({why}; "
            f"torch {torch.__version__}); use --device cpu or auto"
        )
    index = torch.cuda.current_device() if index is None else index
    if index >= n:
        raise MMBenchError(
            f"device {name!r} does not exist: this node has {n} CUDA device"
            f"{'s' if n > 1 else ''} (cuda:0 to cuda:{n - 1})"
        )
    return torch.device("cuda", index)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run."""
    if precision not in PRECISIONS:
        raise MMBenchError(f"precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise MMBenchError(
            f"precision 'bf16' is not supported by {torch.cuda.get_device_name(device)} ({device}); "
            'use precision = "fp32" (bf16 needs compute capability 8.0, e.g. A100, H100)'
        )


def check_nproc(nproc: int, device: torch.device) -> None:
    """One process per device: at most the node's GPU count on CUDA, its cores on the CPU."""
    import os

    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise MMBenchError(f"nproc must be an integer >= 1, got {nproc!r}")
    if device.type == "cuda" and nproc > cuda_count():
        raise MMBenchError(
            f"nproc {nproc} is more than the {cuda_count()} CUDA device(s) of this node (one process per GPU)"
        )
    if device.type == "cpu" and nproc > (os.cpu_count() or 1):
        raise MMBenchError(f"nproc {nproc} is more than the {os.cpu_count()} CPU cores of this machine")


def configure(device: torch.device, precision: str) -> None:
    """Process-wide settings for a run on ``device``: TF32 for fp32 on CUDA, cuDNN autotuning."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        if precision == "fp32":
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` (a no-op context for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to every tensor in nested dicts, lists and tuples (other values returned as they are)."""
    if torch.is_tensor(obj):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def to_device(obj: Any, device: torch.device, *, non_blocking: bool = False) -> Any:
    """Tensors in nested dicts, lists and tuples moved to ``device`` (others returned as they are)."""
    return map_tensors(obj, lambda t: t.to(device, non_blocking=non_blocking))


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock timings measure the work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_info(device: torch.device, world_size: int = 1) -> dict:
    """What the record says about the hardware: the device's name, how many took part, torch/CUDA versions."""
    info = {"type": device.type, "count": world_size, "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            memory_gb=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cudnn=torch.backends.cudnn.version(),
        )
    else:
        info.update(name=f"cpu ({platform.processor() or platform.machine()})", threads=torch.get_num_threads())
    return info


def describe(info: Mapping) -> str:
    """One line for the record's ``device`` field, e.g. "2 x NVIDIA A100-SXM4-80GB (CUDA 12.4)"."""
    name = info["name"] if info["type"] == "cuda" else f"{info['name']}, {info.get('threads', '?')} threads"
    cuda = f" (CUDA {info['cuda']})" if info["type"] == "cuda" else ""
    return f"{info['count']} x {name}{cuda}" if info["count"] > 1 else f"{name}{cuda}"


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity: a taskset or a cgroup's cpuset counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def job_threads() -> int:
    """The threads a job may use here: SLURM's CPUs of the task when it runs under SLURM, else this process's cores."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(cpus) if cpus.isdigit() and int(cpus) > 0 else machine_cores()


def use_threads(threads: int) -> None:
    """Limit this process to ``threads``: torch's intra-op (which sets OpenMP's and MKL's) and inter-op pools,
    and the variables child processes read."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or inter-op work already ran in this process
        pass

"""Data parallelism with torch's DDP: the process group from the environment, and a local launcher.

A run is data-parallel when it starts in an environment that names its rank and world size: torchrun's
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which submitit's
``submitit.helpers.TorchDistributedEnvironment().export()`` sets from SLURM's variables, or
``launch_local`` (``mmbench train --nproc N``), which starts N processes on this machine with
``torch.multiprocessing`` and the same variables. One process per device: rank r uses cuda:LOCAL_RANK
on GPUs (NCCL), or the CPU (gloo). Every rank draws the same batch order, takes its slice of each
global batch, and DDP averages the gradients; rank 0 alone writes checkpoints, logs and the record.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from mmbench.errors import MMBenchError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a data-parallel run (rank 0 of 1 when it runs alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environ(cls, environ: dict | None = None) -> "DistEnv":
        """Read torchrun's variables; a world of one when WORLD_SIZE is absent."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise MMBenchError(
                f"WORLD_SIZE={env.get('WORLD_SIZE')!r}, RANK={env.get('RANK')!r} and LOCAL_RANK="
                f"{env.get('LOCAL_RANK')!r} must be integers"
            ) from None
        if world < 1 or not 0 <= rank < world:
            raise MMBenchError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of the run")
        if world > 1 and not {"MASTER_ADDR", "MASTER_PORT"} <= set(env):
            raise MMBenchError(
                "WORLD_SIZE > 1 but MASTER_ADDR or MASTER_PORT is not set; start the run with torchrun, "
                "submitit's TorchDistributedEnvironment().export() or mmbench train --nproc N"
            )
        return cls(rank, world, local)


def rank_device(device: torch.device, env: DistEnv) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK in a multi-GPU run, else ``device``."""
    if env.distributed and device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise MMBenchError(f"LOCAL_RANK {env.local_rank} has no GPU: this node has {torch.cuda.device_count()}")
        return torch.device("cuda", env.local_rank)
    return device


def init_process_group(env: DistEnv, device: torch.device) -> None:
    """Join the run's process group (NCCL on CUDA, gloo on the CPU) unless it is joined already or alone."""
    if env.distributed and not dist.is_initialized():
        # NCCL for CUDA tensors, gloo beside it for the few CPU tensors (loss sums, RNG states) that ranks share
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        kwargs = {}
        if device.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters:
            kwargs["device_id"] = device  # torch >= 2.3: bind the rank to its GPU at once
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, **kwargs)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(rows: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """This rank's contiguous slice of a global batch's rows (sizes differ by at most one)."""
    return rows.tensor_split(env.world_size)[env.rank] if env.distributed else rows


def all_gather_objects(obj: Any, env: DistEnv) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not env.distributed:
        return [obj]
    out: list = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(local_rank: int, fn: Callable, nproc: int, port: int, args: tuple) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        fn(*args)
    except MMBenchError as exc:  # subclasses come back to the parent under the one name it looks for
        raise MMBenchError(str(exc)) from None
    finally:
        destroy_process_group()


def launch_local(fn: Callable, nproc: int, args: tuple = ()) -> None:
    """Run ``fn(*args)`` in ``nproc`` processes on this machine with torchrun's environment variables set
    (``torch.multiprocessing`` with the spawn start method, which CUDA needs). ``fn`` must be importable
    (a module-level function). A process's MMBenchError comes back as one MMBenchError."""
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_entry, args=(fn, nproc, free_port(), args), nprocs=nproc, start_method="spawn")
    except mp.ProcessRaisedException as exc:
        found = re.findall(r"MMBenchError: (.*)", str(exc))
        if found:
            raise MMBenchError(found[-1].strip()) from None
        raise

"""How a sweep shares one machine on the local executor, and how a job takes its share of an allocation.

The local executor runs at most ``parallelism`` jobs at once. A submission splits its runs into that many jobs,
each running its runs one after another (``RunJob``), so a sweep never has more processes than the machine has
room for: on a 2-core machine, four runs started at once with torch's default threads took 4.0x the time of
the same runs one after another (docs/benchmarks.md). Each job gets

- ``threads`` torch, OpenMP and MKL threads per task: the [executor] ``cpus_per_task``, or the machine's cores
  divided by the tasks running at once;
- its own GPUs when the runs need them: ``gpus_per_node`` devices, distinct for every job.

The jobs running at once are ``array_parallelism`` when the sweep file sets it, else what the machine allows:
one job per ``gpus_per_node`` GPUs for GPU runs, one per ``cpus_per_task`` cores when that is set, and for CPU
runs otherwise one job with every core (the measurement behind that default is in docs/benchmarks.md).
A SLURM job takes the same from its allocation (``mmbench.device.job_threads``): the CPUs SLURM gave the task,
and the GPUs SLURM made visible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

from mmbench.device import machine_cores
from mmbench.errors import MMBenchError

T = TypeVar("T")


@dataclass(frozen=True)
class MachineShare:
    """What a local submission gives its jobs: how many run at once, threads each, and each job's GPUs."""

    parallelism: int
    threads: int
    gpus: tuple[tuple[int, ...], ...] = ()  # per job slot, the GPU indices it sees; () for CPU runs

    def describe(self) -> str:
        gpus = f", GPUs {' | '.join(','.join(map(str, g)) for g in self.gpus)}" if self.gpus else ""
        return f"{self.parallelism} job(s) at once, {self.threads} thread(s) each{gpus}"


def machine_gpus() -> list[int]:
    """The GPU indices this process sees: CUDA_VISIBLE_DEVICES's entries when set, else 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        if not all(v.isdigit() for v in entries):
            raise MMBenchError(
                f"CUDA_VISIBLE_DEVICES={visible!r} names GPUs by UUID; the local executor hands out GPUs by "
                "index: set it to indices (e.g. 0,1)"
            )
        return [int(v) for v in entries]
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def local_share(resources: dict, n_runs: int, *, cores: int | None = None, gpus: Sequence[int] | None = None):
    """The ``MachineShare`` of ``n_runs`` runs under an [executor] table's resources on this machine.

    Refused in one line: more GPUs or cores per job than the machine has, or more GPU jobs at once than it has
    GPUs for (GPU jobs never share a device)."""
    cores = machine_cores() if cores is None else cores
    per_job_gpus = resources.get("gpus_per_node", 0) or 0
    tasks = resources.get("tasks_per_node", 1) or 1
    cpus = resources.get("cpus_per_task")
    asked = resources.get("array_parallelism")
    if cpus is not None and cpus * tasks > cores:
        raise MMBenchError(
            f"[executor] cpus_per_task = {cpus} x tasks_per_node = {tasks} is more than this machine's {cores} cores"
        )
    slots = max(1, cores // (cpus * tasks)) if cpus is not None else 1
    groups: tuple[tuple[int, ...], ...] = ()
    if per_job_gpus:
        visible = list(machine_gpus() if gpus is None else gpus)
        if per_job_gpus > len(visible):
            raise MMBenchError(
                f"[executor] gpus_per_node = {per_job_gpus} but this machine has {len(visible)} visible GPU(s)"
            )
        gpu_slots = len(visible) // per_job_gpus
        if asked is not None and asked > gpu_slots:
            raise MMBenchError(
                f"[executor] array_parallelism = {asked} GPU jobs at once need {asked * per_job_gpus} GPUs "
                f"({per_job_gpus} each, never shared); this machine has {len(visible)}"
            )
        slots = gpu_slots if cpus is None else min(gpu_slots, slots)
        groups = tuple(tuple(visible[k * per_job_gpus : (k + 1) * per_job_gpus]) for k in range(slots))
    parallelism = max(1, min(asked if asked is not None else slots, n_runs))
    threads = cpus if cpus is not None else max(1, cores // (parallelism * tasks))
    return MachineShare(parallelism, threads, groups[:parallelism])


def split_runs(items: Sequence[T], parallelism: int) -> list[list[T]]:
    """``items`` dealt round-robin into ``parallelism`` lists (none empty), in the sweep's order within each."""
    parallelism = max(1, min(parallelism, len(items)))
    return [list(items[k::parallelism]) for k in range(parallelism)]

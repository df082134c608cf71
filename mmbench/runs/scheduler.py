"""What the scheduler says about jobs: SLURM's queue (squeue) or, for the local executor, whether the process is alive.
Run locks and executors both ask it."""

from __future__ import annotations

import os
import shutil
import subprocess


def process_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
}


UNREACHABLE = "UNREACHABLE"  # the scheduler could not be asked (no squeue here, or it failed)


def scheduler_states(executor: str, job_ids: list[str]) -> dict[str, str]:
    """{job id: state} as the scheduler reports it now: "UNKNOWN" when it does not know the job any more,
    UNREACHABLE when it could not be asked."""
    if not job_ids:
        return {}
    if executor == "local":
        return {j: "RUNNING" if j.isdigit() and process_alive(int(j)) else "ENDED" for j in job_ids}
    if shutil.which("squeue") is None:
        return {j: UNREACHABLE for j in job_ids}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        res = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return {j: UNREACHABLE for j in job_ids}
    if res.returncode != 0 and "Invalid job id" not in res.stderr:
        return {j: UNREACHABLE for j in job_ids}
    seen = dict(line.split()[:2] for line in res.stdout.splitlines() if len(line.split()) >= 2)
    return {j: seen.get(j, "UNKNOWN") for j in job_ids}

"""Executors: how a sweep's runs get executed. inline (this process), local (submitit's LocalExecutor:
background processes on this machine) and slurm (submitit's SlurmExecutor: one job array per submission).

Each submitted run is a ``RunJob``, a submitit Checkpointable: on preemption and on time-out submitit calls
its ``checkpoint()``, requeues the job (at most ``max_num_timeout`` time-outs) and the restarted job resumes
from the run's last step checkpoint. A run lock (``mmbench.runs.locks``) keeps two jobs from training one run.
Which job a run went to is kept in ``RUNS/.sweeps/<sweep>/jobs.json``, beside submitit's logs.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mmbench.errors import MMBenchError, did_you_mean
from mmbench.runs.spec import RunSpec
from mmbench.storage.atomic import atomic_write_json
from mmbench.storage.names import check_name
from mmbench.storage.validate import get_field, kind_of, read_json_object
from mmbench.training.options import RunOptions

logger = logging.getLogger(__name__)

EXECUTORS = ("inline", "local", "slurm")
# [executor] keys: what each executor can express
RESOURCE_TYPES = {
    "partition": str,
    "account": str,
    "qos": str,
    "constraint": str,
    "gpus_per_node": int,
    "tasks_per_node": int,
    "cpus_per_task": int,
    "nodes": int,
    "timeout_min": int,
    "mem_gb": float,
    "array_parallelism": int,
    "max_num_timeout": int,
    "signal_delay_s": int,
    "setup": list,
    "additional": dict,
}
EXPRESSIBLE = {
    "inline": set(),
    "local": {
        "gpus_per_node",
        "tasks_per_node",
        "cpus_per_task",
        "array_parallelism",
        "timeout_min",
        "max_num_timeout",
        "signal_delay_s",
        "setup",
    },
    "slurm": set(RESOURCE_TYPES),
}
DEFAULTS = {"timeout_min": 24 * 60, "max_num_timeout": 3, "tasks_per_node": 1, "gpus_per_node": 0}


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor name and the resources of the sweep file's [executor] table (validated)."""

    name: str = "inline"
    resources: dict = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.resources.get(key, DEFAULTS.get(key))


def executor_from_table(
    table: dict, where: str, override: str | None = None, log: Callable[[str], None] | None = None
) -> ExecutorSpec:
    """Validate an [executor] table; ``override`` (--executor) replaces its name, and resources the chosen
    executor cannot express are then left out with a note instead of refused."""
    log = log or logger.info
    table = dict(table)
    name = table.pop("name", "inline")
    unknown = sorted(set(table) - set(RESOURCE_TYPES))
    if unknown:
        raise MMBenchError(
            f"{where}: [executor] has unknown key(s) {unknown}; allowed: name, "
            + ", ".join(sorted(RESOURCE_TYPES))
            + did_you_mean(unknown[0], RESOURCE_TYPES)
        )
    chosen = override or name
    if chosen not in EXECUTORS:
        raise MMBenchError(
            f"unknown executor {chosen!r}; available: {', '.join(EXECUTORS)}" + did_you_mean(chosen, EXECUTORS)
        )
    for key, value in table.items():
        kind = RESOURCE_TYPES[key]
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is float
            else isinstance(value, kind) and not isinstance(value, bool)
        )
        if kind is list:
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            raise MMBenchError(f"{where}: [executor] {key} = {value!r} must be {_kind_name(kind)}")
        if kind in (int, float) and value < (0 if key == "gpus_per_node" else 1):
            raise MMBenchError(f"{where}: [executor] {key} = {value!r} must be >= {0 if key == 'gpus_per_node' else 1}")
    cannot = sorted(set(table) - EXPRESSIBLE[chosen])
    if cannot:
        if override and override != name:
            log(f"note: the {chosen} executor leaves out the file's {name} resources {cannot}")
            table = {k: v for k, v in table.items() if k not in cannot}
        else:
            raise MMBenchError(
                f"{where}: the {chosen} executor cannot express [executor] {', '.join(cannot)}; "
                f"it takes: {', '.join(sorted(EXPRESSIBLE[chosen])) or 'no resources'}"
            )
    return ExecutorSpec(chosen, table)


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list of strings (shell lines)",
        dict: "a table of sbatch options",
    }[kind]


def check_resources(executor: ExecutorSpec, options: RunOptions, where: str) -> None:
    """Resources against run options: DDP on a scheduler goes through tasks_per_node, one GPU each."""
    if executor.name == "inline":
        return
    tasks, gpus = executor.get("tasks_per_node"), executor.get("gpus_per_node")
    if options.nproc > 1:
        raise MMBenchError(
            f"{where}: [run] nproc = {options.nproc} starts processes in this process; with the "
            f"{executor.name} executor use [executor] tasks_per_node = {options.nproc} (one per GPU)"
        )
    wants_cuda = options.device.strip().lower().startswith("cuda")
    if wants_cuda and gpus == 0:
        raise MMBenchError(
            f"{where}: [run] device = {options.device!r} but [executor] gpus_per_node is 0; ask for "
            'GPUs (gpus_per_node = 1, or one per task) or use device = "cpu"'
        )
    if gpus and tasks > 1 and gpus < tasks:
        raise MMBenchError(
            f"{where}: [executor] tasks_per_node = {tasks} DDP processes but gpus_per_node = {gpus}; "
            "DDP runs one process per GPU"
        )


# -- the job ------------------------------------------------------------------------------------------


def _checkpointable_base():
    try:
        from submitit.helpers import Checkpointable
    except ImportError:  # inline sweeps need no submitit
        return object
    return Checkpointable


class RunJob(_checkpointable_base()):  # type: ignore[misc]
    """Runs as one submitit job, one after another: a SLURM array task holds one run, a local job its share of the
    sweep (``machine_share``). Requeued, it starts again: finished runs are skipped, a partial one resumes from its
    step checkpoint. ``threads`` (the local executor's share) or else the allocation's CPUs bound its threads."""

    def __init__(
        self,
        specs: list[RunSpec],
        runs_dir: Path,
        options: RunOptions,
        distributed: bool = False,
        max_num_timeout: int = 3,
        threads: int | None = None,
    ):
        self.specs, self.runs_dir, self.options = list(specs), Path(runs_dir), options
        self.distributed, self.max_num_timeout, self.threads = distributed, max_num_timeout, threads

    def __call__(self) -> list[dict]:
        from mmbench.device import job_threads, use_threads
        from mmbench.runs.execute import execute
        from mmbench.runs.locks import RunLocked

        if self.distributed:
            from submitit.helpers import TorchDistributedEnvironment

            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        threads = self.threads or job_threads()
        use_threads(threads)
        print(f"threads: {threads} (torch, OpenMP, MKL)")
        job = {
            "executor": "slurm" if os.environ.get("SLURM_JOB_ID") else "local",
            "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
            "max_num_timeout": self.max_num_timeout,
        }
        results, first_failure = [], None
        for spec in self.specs:
            try:
                record = execute(spec, self.runs_dir, options=self.options, progress=False, job=job)
                status = record.status if record is not None else "rank"
                results.append({"run_id": spec.run_id, "status": status})
            except RunLocked as exc:
                print(f"skipped: {exc}")
                results.append({"run_id": spec.run_id, "status": "running elsewhere", "detail": str(exc)})
            except Exception as exc:  # recorded by execute; the job's other runs go on, then the job fails
                print(f"{spec.run_id}: failed: {exc}")
                results.append({"run_id": spec.run_id, "status": "failed", "detail": str(exc)})
                first_failure = first_failure or exc
        if first_failure is not None:
            raise first_failure
        return results

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Requeue this job as it is: the trainer's last step checkpoint holds the state to resume from."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


# -- the registry of submitted jobs --------------------------------------------------------------------


def sweep_folder(runs_dir: Path, sweep_name: str) -> Path:
    """``RUNS/.sweeps/<sweep name>``; a name that would leave it is refused (``storage.names``)."""
    return Path(runs_dir) / ".sweeps" / check_name(sweep_name, "sweep name")


JOBS = "jobs.json"
# an entry of jobs.json: (name, kind of storage.validate, required)
JOB_FIELDS = (
    ("job_id", "str", True),
    ("executor", "str", True),
    ("submitted_at", "str", False),
    ("model", "str", False),
)


def read_jobs(folder: Path) -> dict[str, dict]:
    """The sweep's jobs.json: {run_id: {job_id, executor, submitted_at, model}}, each entry checked; {} when no job
    was submitted. MMBenchError in one line naming the file and the field when it is not such a registry."""
    path = Path(folder) / JOBS
    if not path.exists():
        return {}
    keep = " (it lists the sweep's submitted jobs: delete it only if no job of the sweep is queued)"
    try:
        jobs = read_json_object(path, "jobs registry")
        for run_id, entry in jobs.items():
            where = f"jobs registry {path}"
            if not isinstance(entry, dict):
                raise MMBenchError(f"{where}: field {run_id!r} must be an object (a run's job), got {kind_of(entry)}")
            for name, kind, required in JOB_FIELDS:
                get_field(entry, name, kind, where, prefix=f"{run_id}.", required=required)
            if entry["executor"] not in EXECUTORS[1:]:
                raise MMBenchError(
                    f"{where}: field '{run_id}.executor' is {entry['executor']!r}; jobs run on {' or '.join(EXECUTORS[1:])}"
                )
    except MMBenchError as exc:
        raise MMBenchError(f"{exc}{keep}") from None
    return jobs


@contextmanager
def submission_lock(folder: Path) -> Iterator[None]:
    """Serialises submissions of one sweep (two users or terminals submitting at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "submit.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_submitit_executor(executor: ExecutorSpec, folder: Path, sweep_name: str):
    """The submitit executor of ``executor`` with its resources, logs under ``folder``/logs."""
    try:
        import submitit
    except ImportError:
        raise MMBenchError(
            f"the {executor.name} executor needs submitit (a dependency of mmbench): pip install submitit"
        ) from None
    logs = folder / "logs" / "%j"
    r = executor.resources
    if executor.name == "local":
        ex = submitit.LocalExecutor(logs, max_num_timeout=executor.get("max_num_timeout"))
        params = {k: r[k] for k in ("gpus_per_node", "signal_delay_s", "setup") if k in r}
        ex.update_parameters(
            timeout_min=executor.get("timeout_min"), tasks_per_node=executor.get("tasks_per_node"), **params
        )
        return ex
    if shutil.which("sbatch") is None:
        raise MMBenchError("the slurm executor needs SLURM's sbatch on this machine's PATH (submit from a login node)")
    ex = submitit.SlurmExecutor(logs, max_num_timeout=executor.get("max_num_timeout"))
    params: dict[str, Any] = {
        "job_name": f"mmbench-{sweep_name}",
        "time": executor.get("timeout_min"),
        "ntasks_per_node": executor.get("tasks_per_node"),
    }
    rename = {
        "gpus_per_node": "gpus_per_node",
        "cpus_per_task": "cpus_per_task",
        "nodes": "nodes",
        "partition": "partition",
        "account": "account",
        "qos": "qos",
        "constraint": "constraint",
        "array_parallelism": "array_parallelism",
        "setup": "setup",
        "signal_delay_s": "signal_delay_s",
        "additional": "additional_parameters",
    }
    params.update({rename[k]: v for k, v in r.items() if k in rename})
    if "mem_gb" in r:
        params["mem"] = f"{int(r['mem_gb'] * 1024)}MB"
    try:
        ex.update_parameters(**params)
    except ValueError as exc:
        raise MMBenchError(f"[executor]: submitit refuses the resources: {str(exc).splitlines()[0]}") from None
    return ex


def sbatch_flags(executor: ExecutorSpec) -> list[str]:
    """The sbatch options of one job of the sweep's [executor] (time, tasks, partition, account, QOS, CPUs, GPUs,
    memory), as ``sbatch --test-only`` checks them and ``sweep plan`` / ``submit --dry-run`` show them."""
    r = executor.resources
    args = [f"--time={executor.get('timeout_min')}", f"--ntasks-per-node={executor.get('tasks_per_node')}"]
    flags = {
        "partition": "--partition",
        "account": "--account",
        "qos": "--qos",
        "constraint": "--constraint",
        "cpus_per_task": "--cpus-per-task",
        "nodes": "--nodes",
    }
    args += [f"{flag}={r[k]}" for k, flag in flags.items() if k in r]
    if r.get("gpus_per_node"):
        args.append(f"--gpus-per-node={r['gpus_per_node']}")
    if "mem_gb" in r:
        args.append(f"--mem={int(r['mem_gb'] * 1024)}MB")
    return args


def slurm_request(executor: ExecutorSpec, n_jobs: int, sweep_name: str) -> str:
    """What one submission asks SLURM for: a job array of ``n_jobs`` tasks (at most array_parallelism at once)."""
    array = f"--array=0-{n_jobs - 1}" + (
        f"%{executor.get('array_parallelism')}" if executor.get("array_parallelism") else ""
    )
    return " ".join(
        ["sbatch", f"--job-name=mmbench-{sweep_name}", *([array] if n_jobs > 1 else []), *sbatch_flags(executor)]
    )


def check_slurm_accepts(executor: ExecutorSpec) -> None:
    """Ask sbatch (--test-only: nothing is queued) whether it accepts the job's resources; its refusal
    (an unknown partition, account or QOS, more GPUs than a node has) comes back as one line."""
    res = subprocess.run(
        ["sbatch", "--test-only", "--wrap", "true", *sbatch_flags(executor)], capture_output=True, text=True, timeout=60
    )
    if res.returncode != 0:
        lines = [ln.strip() for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
        raise MMBenchError("SLURM refuses the sweep's [executor] resources: " + (lines[0] if lines else "no message"))


def submit_jobs(
    executor: ExecutorSpec, specs: list[RunSpec], runs_dir: Path, sweep_name: str, options: RunOptions
) -> dict[str, str]:
    """Submit ``specs``: on SLURM as one job array (one job when there is one run), on the local executor as its
    share of this machine (``machine_share``: at most ``parallelism`` jobs, each running its runs in turn with its
    threads and GPUs). {run_id: job id}, also recorded in the sweep's jobs.json. SLURM's refusal comes back as
    one line, before anything is queued."""
    folder = sweep_folder(runs_dir, sweep_name)
    ex = make_submitit_executor(executor, folder, sweep_name)
    distributed = executor.get("tasks_per_node") > 1
    if executor.name == "local":
        from mmbench.sweeps.machine_share import local_share, split_runs

        share = local_share(executor.resources, len(specs))
        groups = split_runs(specs, share.parallelism)
        submitted = []
        for slot, group in enumerate(groups):
            params = {"timeout_min": executor.get("timeout_min") * len(group)}  # timeout_min is per run
            if share.gpus:
                params["visible_gpus"] = share.gpus[slot]
            ex.update_parameters(**params)
            fn = RunJob(group, runs_dir, options, distributed, executor.get("max_num_timeout"), share.threads)
            submitted.append((group, ex.submit(fn)))
        logger.info(f"local executor: {share.describe()}")
    else:
        if executor.name == "slurm":
            check_slurm_accepts(executor)
        fns = [RunJob([s], runs_dir, options, distributed, executor.get("max_num_timeout")) for s in specs]
        try:
            with ex.batch():
                jobs = [ex.submit(fn) for fn in fns]
        except subprocess.CalledProcessError as exc:
            out = exc.output
            text = (out or b"").decode(errors="replace") if isinstance(out, bytes) else str(out or "")
            raise MMBenchError("sbatch refused the sweep: " + (text.strip().splitlines() or [str(exc)])[-1]) from None
        except Exception as exc:  # submitit wraps sbatch's message in its own exception types
            if type(exc).__module__.startswith("submitit"):
                lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                raise MMBenchError(
                    "the scheduler refused the sweep: " + (lines[-1] if lines else type(exc).__name__)
                ) from None
            raise
        submitted = [([s], j) for s, j in zip(specs, jobs)]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    registry = read_jobs(folder)
    ids = {}
    for group, job in submitted:
        for spec in group:
            ids[spec.run_id] = str(job.job_id)
            registry[spec.run_id] = {
                "job_id": str(job.job_id),
                "executor": executor.name,
                "submitted_at": now,
                "model": spec.model,
            }
    atomic_write_json(folder / JOBS, registry)
    return ids


def job_log_paths(runs_dir: Path, sweep_name: str, job_id: str) -> tuple[Path, Path]:
    """(stdout, stderr) of a submitted job, where submitit writes them."""
    from submitit.core.utils import JobPaths

    folder = sweep_folder(runs_dir, sweep_name)
    check_name(str(job_id), f"job id in {folder / 'jobs.json'}")
    paths = JobPaths(folder / "logs" / "%j", job_id=job_id, task_id=0)
    return paths.stdout, paths.stderr


def cancel_jobs(executor: str, job_ids: list[str]) -> None:
    if not job_ids:
        return
    if executor == "local":
        import signal

        for j in job_ids:
            try:
                os.kill(int(j), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        return
    res = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise MMBenchError("scancel refused: " + (res.stderr.strip().splitlines() or ["no message"])[-1])

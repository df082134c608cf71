"""What a sweep's commands do: plan, submit, status, cancel, logs (``mmbench sweep ...``).

Every run of a sweep is in one state: finished (a record; "finished, other code" when the record's git
revision is not this checkout's), failed, running (its lock is held by a live job), queued (its last
submitted job is pending or running in the scheduler), partial (a checkpoint, nothing running), pending, or
unreadable (a file of its folder cannot be read: status and plan name it and go on, submit refuses).
Submitting acts on that: finished and running or queued runs are left alone, partial runs resume, failed and
pending ones are submitted. Submissions of one sweep are serialised by a file lock, so two people submitting
at once queue each run once, and the run lock keeps a run from training twice whatever was queued.

A run stopped by a failed write (disk full, I/O error) is partial (or pending, before its first checkpoint) with
the reason as its detail (``runs.execute.stop_reason``), and resumes when submitted again. An inline submit stops
at such a failure (the next run would meet the same disk), with the error as its one line; the runs after it
keep their state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmbench.errors import MMBenchError
from mmbench.runs.execute import check_machine, check_resumable, execute, run_status, stop_reason
from mmbench.runs.locks import lock_state, read_lock
from mmbench.runs.scheduler import ACTIVE_STATES, scheduler_states
from mmbench.runs.spec import RunSpec
from mmbench.storage.names import check_name
from mmbench.storage.provenance import git_revision
from mmbench.storage.records import RECORD, load_record
from mmbench.sweeps.executors import cancel_jobs, job_log_paths, read_jobs, submission_lock, submit_jobs, sweep_folder
from mmbench.sweeps.files import Sweep

logger = logging.getLogger(__name__)

ACTIONS = {
    "finished": "skip",
    "running": "leave",
    "queued": "leave",
    "partial": "resume",
    "failed": "retry",
    "pending": "submit",
    "unreadable": "refuse",  # a file of its folder cannot be read: submit refuses until it is fixed
}


@dataclass(frozen=True)
class RunState:
    """One run of a sweep as plan and status show it."""

    spec: RunSpec
    state: str  # finished | failed | running | queued | partial | pending | unreadable
    detail: str = ""  # other code's revision, the lock's owner, the failure, why a file cannot be read
    job_id: str = ""
    job_state: str = ""  # the scheduler's word for the run's last job (PENDING, RUNNING, REQUEUED, TIMEOUT, ...)

    @property
    def action(self) -> str:
        return ACTIONS[self.state]

    @property
    def to_submit(self) -> bool:
        """Whether ``submit`` queues it: pending, partial (to resume) or failed (to retry)."""
        return self.action in ("submit", "resume", "retry")


@dataclass(frozen=True)
class Survey:
    """Every run of a sweep in its state, and the files that could not be read (one line each, naming the file):
    a run folder's (that run is "unreadable") or the sweep's jobs.json (the jobs are then unknown)."""

    states: list[RunState]
    problems: list[str]


def survey(sweep: Sweep) -> Survey:
    """The state of every run of the sweep, asking the scheduler about the jobs it was given. A file that cannot be
    read does not stop it: its run is "unreadable" (``sweep status`` and ``plan`` name it and go on)."""
    problems = []
    try:
        jobs = read_jobs(sweep_folder(sweep.runs_dir, sweep.name))
    except MMBenchError as exc:
        jobs, problems = {}, [str(exc)]
    by_executor: dict[str, list[str]] = {}
    for spec in sweep.specs:
        entry = jobs.get(spec.run_id)
        if entry:
            by_executor.setdefault(entry["executor"], []).append(entry["job_id"])
    states = {}
    for executor, ids in by_executor.items():
        states.update(scheduler_states(executor, ids))
    here = git_revision()
    out = []
    for spec in sweep.specs:
        entry = jobs.get(spec.run_id, {})
        job_id = entry.get("job_id", "")
        job_state = states.get(job_id, "") if job_id else ""
        try:
            status, detail = _run_state(sweep.runs_dir / spec.run_id, job_state, here)
        except MMBenchError as exc:
            status, detail = "unreadable", str(exc)
            problems.append(str(exc))
        out.append(RunState(spec, status, detail, job_id, job_state))
    return Survey(out, problems)


def _run_state(run_dir: Path, job_state: str, here: str) -> tuple[str, str]:
    """(state, detail) of one run folder from its record, lock and last job."""
    status, detail = run_status(run_dir), ""
    if status in ("finished", "failed"):
        record = load_record(run_dir / RECORD)
        if status == "finished" and record.git != here:
            detail = f"other code: {record.git[:12]}"
        elif status == "failed":
            detail = (record.failure or "no reason recorded")[:80]
    else:
        detail = stop_reason(run_dir)
    lock = read_lock(run_dir)
    if status != "finished" and lock_state(lock) in ("held", "mine"):
        status, detail = "running", f"by {lock['owner']} on {lock['host']}"
    elif status != "finished" and job_state in ACTIVE_STATES:
        status = "queued"
    return status, detail


def run_states(sweep: Sweep) -> list[RunState]:
    """``survey``'s states, refused (MMBenchError, the first problem's line) when a file could not be read: what
    submits acts on them."""
    found = survey(sweep)
    if found.problems:
        raise MMBenchError(found.problems[0])
    return found.states


def submit(sweep: Sweep, *, progress: bool = True, log: Callable[[str], None] | None = None) -> list[dict]:
    """Run (inline) or queue (local, slurm) every run of the sweep that is not finished, running or queued.

    Everything is validated first (the sweep's runs by ``load_sweep``, and this machine's device for inline
    runs), so nothing is submitted half-way. Returns one dict per run: inline, run_id, status (the record's, or
    "running" elsewhere) and failure; otherwise run_id, status (the run's state, "queued" for what this call
    submitted), job_id and whether this call submitted it.
    """
    log = log or logger.info
    folder = sweep_folder(sweep.runs_dir, sweep.name)
    if sweep.executor.name == "inline":  # the runs were validated by load_sweep; this machine runs them
        for spec in sweep.specs:
            check_machine(spec, sweep.options)
            check_resumable(spec, sweep.runs_dir / spec.run_id)
        sweep.save_source(folder)
        return _run_inline(sweep, progress=progress, log=log)
    sweep.save_source(folder)
    with submission_lock(folder):
        states = run_states(sweep)
        todo = [s.spec for s in states if s.to_submit]
        out = [
            {"run_id": s.spec.run_id, "status": s.state, "job_id": s.job_id, "submitted": False}
            for s in states
            if not s.to_submit
        ]
        if todo:
            ids = submit_jobs(sweep.executor, todo, sweep.runs_dir, sweep.name, sweep.options)
            out += [
                {"run_id": run_id, "status": "queued", "job_id": job_id, "submitted": True}
                for run_id, job_id in ids.items()
            ]
    return out


def _run_inline(sweep: Sweep, *, progress: bool, log) -> list[dict]:
    from mmbench.runs.locks import RunLocked
    from mmbench.storage.atomic import WriteError

    results = []
    for i, spec in enumerate(sweep.specs, 1):
        log(f"[{i}/{len(sweep.specs)}] {spec.run_id}")
        try:
            record = execute(spec, sweep.runs_dir, options=sweep.options, progress=progress, log=log)
            results.append({"run_id": record.run_id, "status": record.status, "failure": record.failure})
        except RunLocked as exc:
            log(f"{spec.run_id}: left alone: {exc}")
            results.append({"run_id": spec.run_id, "status": "running", "failure": str(exc)})
        except WriteError:  # the disk: the run is partial, and the next run would meet the same disk
            raise
        except Exception as exc:  # recorded by execute; the sweep continues
            log(f"{spec.run_id}: failed: {exc}")
            results.append({"run_id": spec.run_id, "status": "failed", "failure": str(exc)})
    return results


def cancel(sweep: Sweep) -> list[str]:
    """Cancel the sweep's queued and running jobs; their job ids. Runs keep their checkpoints (partial)."""
    jobs = read_jobs(sweep_folder(sweep.runs_dir, sweep.name))
    active: dict[str, list[str]] = {}
    for s in survey(sweep).states:  # a run whose folder cannot be read does not keep the others' jobs running
        if s.job_id and s.job_state in ACTIVE_STATES:
            active.setdefault(jobs[s.spec.run_id]["executor"], []).append(s.job_id)
    for executor, ids in active.items():
        cancel_jobs(executor, ids)
    return [j for ids in active.values() for j in ids]


def log_files(sweep: Sweep, run: str) -> tuple[str, Path, Path]:
    """(job id, stdout, stderr) of the last job a run (its id, or a unique prefix) was submitted as."""
    check_name(run, "RUN")
    matches = [s for s in sweep.specs if s.run_id == run] or [s for s in sweep.specs if s.run_id.startswith(run)]
    if len(matches) != 1:
        known = ", ".join(s.run_id for s in sweep.specs)
        raise MMBenchError(
            f"run {run!r} {'matches several runs' if matches else 'is not in the sweep'}; its runs: {known}"
        )
    entry = read_jobs(sweep_folder(sweep.runs_dir, sweep.name)).get(matches[0].run_id)
    if not entry:
        raise MMBenchError(
            f"run {matches[0].run_id} was not submitted to a scheduler (inline runs print to the "
            "terminal that ran them)"
        )
    out, err = job_log_paths(sweep.runs_dir, sweep.name, entry["job_id"])
    return entry["job_id"], out, err

"""Run locks: one job trains a run at a time, whoever submitted it and however often.

``RUN/lock.json`` names its owner (the SLURM job id, or host:pid for local work), host, pid and a heartbeat
time that a thread refreshes every ``HEARTBEAT_S`` seconds. A lock is taken by creating the file, content and all,
exclusively; an existing lock is taken over when it is stale: its heartbeat is older than ``STALE_S``, or its
owner is a process on this host that no longer exists, or it is this very job (a requeued SLURM job keeps its
id, so it takes its own lock back). Every process of one data-parallel job shares the owner id, so its ranks
pass together. A lock file that is not JSON of this layout is refused in one line naming it. A lock that cannot
be written (disk full) is not taken: ``WriteError``, no lock file left.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mmbench.errors import MMBenchError
from mmbench.runs.scheduler import ACTIVE_STATES, UNREACHABLE, process_alive, scheduler_states
from mmbench.storage.atomic import WriteError, atomic_write_json, write_temp_file
from mmbench.storage.validate import get_field

LOCK = "lock.json"
HEARTBEAT_S = 30.0
STALE_S = 300.0
FIELDS = {"owner": "str", "host": "str", "pid": "int", "heartbeat": "number"}  # (name, kind of storage.validate)


class RunLocked(MMBenchError):
    """The run is being trained by another live job."""


def owner_id() -> str:
    """This job's identity: SLURM's job id (array job and task: 123_4), a torchrun job's rendezvous address
    (shared by its ranks), or host:pid."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"slurm:{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return f"slurm:{job}"
    if os.environ.get("WORLD_SIZE") and os.environ.get("MASTER_PORT"):
        return f"ddp:{os.environ.get('MASTER_ADDR', '')}:{os.environ['MASTER_PORT']}"
    return f"{socket.gethostname()}:{os.getpid()}"


def read_lock(run_dir: Path) -> dict | None:
    """The lock's content (owner, host, pid, heartbeat: each checked), None when there is none; MMBenchError in one
    line naming the file (and the field) when it is not a lock."""
    path = Path(run_dir) / LOCK
    delete = "; if no job is training this run, delete it"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MMBenchError(f"lock file {path} cannot be read ({exc.strerror or exc}){delete}") from None
    try:
        lock = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not text, not JSON (UnicodeDecodeError is a ValueError), too deep
        lock = None
    if not isinstance(lock, dict):
        raise MMBenchError(
            f"lock file {path} is corrupt or not an mmbench run lock (it must be a JSON object with "
            f"{', '.join(FIELDS)}){delete}"
        )
    try:
        for name, kind in FIELDS.items():
            get_field(lock, name, kind, f"lock file {path}", required=True)
    except MMBenchError as exc:
        raise MMBenchError(f"{exc}{delete}") from None
    return lock


def lock_state(lock: dict | None, *, now: float | None = None) -> str:
    """ "free", "mine" (this job's), "stale" or "held"."""
    if lock is None:
        return "free"
    if lock["owner"] == owner_id():
        return "mine"
    now = time.time() if now is None else now
    if now - float(lock["heartbeat"]) > STALE_S:
        return "stale"
    if (
        lock["host"] == socket.gethostname()
        and not str(lock["owner"]).startswith(("slurm:", "ddp:"))
        and not process_alive(int(lock["pid"]))
    ):
        return "stale"
    if str(lock["owner"]).startswith("slurm:") and _slurm_job_gone(str(lock["owner"])[6:]):
        return "stale"
    return "held"


def _slurm_job_gone(job_id: str) -> bool:
    """Whether SLURM, asked here, knows the job as ended (cancelled, failed, out of the queue); False when it
    cannot be asked."""
    state = scheduler_states("slurm", [job_id])[job_id]
    return state not in ACTIVE_STATES and state != UNREACHABLE


@dataclass
class RunLock:
    """Context manager holding ``run_dir``'s lock, with a heartbeat thread while held (by rank 0 only, when
    ``heartbeat``); raises RunLocked when another live job holds it."""

    run_dir: Path
    heartbeat: bool = True

    def _content(self) -> dict:
        return {"owner": owner_id(), "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}

    def __enter__(self) -> "RunLock":
        path = Path(self.run_dir) / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                self._create(path)
            except FileExistsError:
                lock = read_lock(self.run_dir)
                state = lock_state(lock)
                if state == "held":
                    raise RunLocked(
                        f"run {Path(self.run_dir).name} is being trained by {lock['owner']} on "
                        f"{lock['host']} (heartbeat {time.time() - float(lock['heartbeat']):.0f} s ago)"
                    )
                if state == "mine":
                    break
                if state == "free":  # released between the two looks: race for it again, never remove a new one
                    continue
                try:  # stale: remove it and race for it again, so only one taker wins
                    os.rename(path, path.with_name(f".{LOCK}.stale.{os.getpid()}"))
                    path.with_name(f".{LOCK}.stale.{os.getpid()}").unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            break
        else:
            raise RunLocked(f"run {Path(self.run_dir).name}: could not take its lock {path}")
        self._stop = threading.Event()
        self._thread = None
        if self.heartbeat:
            try:
                self._beat()
            except WriteError:
                self._release()
                raise
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _create(self, path: Path) -> None:
        """Create the lock file with its content in one step (a hard link to a written temporary file), so that no
        reader sees it empty; FileExistsError when it exists. Where hard links are not supported, create it
        exclusively and then write it."""
        tmp = write_temp_file(path, json.dumps(self._content()).encode())
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise WriteError(path, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._content(), f)
        except OSError as exc:  # disk full: no empty or torn lock is left behind
            path.unlink(missing_ok=True)
            raise WriteError(path, exc) from exc

    def _beat(self) -> None:
        atomic_write_json(Path(self.run_dir) / LOCK, self._content())

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except (WriteError, OSError):
                pass  # the lock written last stays; a lock older than STALE_S is taken over

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.heartbeat:
            self._release()

    def _release(self) -> None:
        """Remove the lock when it is this job's (best effort: a lock left behind goes stale)."""
        try:
            if (read_lock(self.run_dir) or {}).get("owner") == owner_id():
                (Path(self.run_dir) / LOCK).unlink(missing_ok=True)
        except (MMBenchError, OSError):
            pass

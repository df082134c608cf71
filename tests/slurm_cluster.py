"""A real single-node SLURM cluster on loopback for the tests: munged, slurmctld and slurmd from Debian's packages
(slurm-wlm 22.05, munge), configured under a temporary folder, started and stopped by PID.

``LocalSlurm(root).start()`` writes a munge key and slurm.conf, starts the three daemons, points clients
(sbatch, squeue, scontrol, submitit) at the configuration through SLURM_CONF, and waits for the node to be
idle; ``stop()`` sends SIGTERM to each daemon by PID and restores the environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mmbench.training.distributed import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")


def missing_binaries() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class LocalSlurm:
    """One node ("localhost", all of this machine's cores) in one partition ("debug")."""

    def __init__(self, root: Path, cpus: int | None = None, memory_mb: int = 8000):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.procs: dict[str, subprocess.Popen] = {}
        self._saved_env: dict[str, str | None] = {}

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge", "munge-key"):
            (r / d).mkdir(parents=True, exist_ok=True)
        key = r / "munge-key" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        (r / "munge-key").chmod(0o700)
        (r / "munge").chmod(0o755)
        self.socket = r / "munge" / "munge.socket"
        user = os.environ.get("USER") or "root"
        self.conf.write_text(f"""ClusterName=mmbench-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket},cred_expire=10
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
InactiveLimit=0
SchedulerParameters=sched_interval=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")

    def start(self, timeout: float = 60.0) -> "LocalSlurm":
        self._write_config()
        r = self.root
        log = open(r / "log" / "daemons.out", "ab")
        self.procs["munged"] = subprocess.Popen(
            [
                _binary("munged"),
                "--foreground",
                "--force",
                f"--key-file={r / 'munge-key' / 'munge.key'}",
                f"--socket={self.socket}",
                f"--pid-file={r / 'munge' / 'munged.pid'}",
                f"--log-file={r / 'log' / 'munged.log'}",
                f"--seed-file={r / 'munge' / 'munged.seed'}",
            ],
            stdout=log,
            stderr=log,
        )
        self._wait(lambda: self.socket.exists(), timeout, "munged to open its socket")
        for var in ("SLURM_CONF",):
            self._saved_env[var] = os.environ.get(var)
        os.environ["SLURM_CONF"] = str(self.conf)
        self.procs["slurmctld"] = subprocess.Popen(
            [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)], stdout=log, stderr=log
        )
        self.procs["slurmd"] = subprocess.Popen(
            [_binary("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)], stdout=log, stderr=log
        )
        self._wait(self._idle, timeout, "the node to be idle")
        return self

    def _idle(self) -> bool:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}; see {self.root / 'log'}")
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    @staticmethod
    def _wait(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.2)

    def squeue(self) -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True).stdout

    def scontrol(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True)

    def wait_empty(self, timeout: float = 600) -> None:
        """Until no job is pending or running."""
        self._wait(lambda: not self.squeue().strip(), timeout, "the queue to empty")

    def stop(self) -> None:
        subprocess.run(["scancel", "--user", os.environ.get("USER") or "root"], capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for var, value in self._saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

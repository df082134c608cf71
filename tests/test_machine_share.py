"""One machine's cores and GPUs on the local executor (issue 22): at most ``parallelism`` jobs, each with its share
of the cores as threads and its own GPUs; the same share seen by a job under SLURM; refusals in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from mmbench.cli import main
from mmbench.device import job_threads
from mmbench.errors import MMBenchError
from mmbench.storage.records import read_record
from mmbench.sweeps import executors
from mmbench.sweeps.executors import RunJob, submit_jobs
from mmbench.sweeps.files import load_sweep
from mmbench.sweeps.machine_share import MachineShare, local_share, split_runs


def share(resources=None, n_runs=4, cores=2, gpus=()):
    return local_share(resources or {}, n_runs, cores=cores, gpus=list(gpus))


def test_cpu_runs_share_the_cores():
    assert share() == MachineShare(1, 2)  # one job with every core: inline speed, no oversubscription
    assert share(cores=16) == MachineShare(1, 16)
    assert share({"cpus_per_task": 1}) == MachineShare(2, 1)
    assert share({"cpus_per_task": 4}, cores=16) == MachineShare(4, 4)
    assert share({"cpus_per_task": 4}, n_runs=2, cores=16) == MachineShare(2, 4)  # never more jobs than runs
    assert share({"array_parallelism": 2}) == MachineShare(2, 1)  # cores divided by the jobs at once
    assert share({"array_parallelism": 4}, cores=16) == MachineShare(4, 4)
    assert share({"array_parallelism": 3, "cpus_per_task": 1}) == MachineShare(3, 1)  # the user's word
    assert share({"array_parallelism": 2, "tasks_per_node": 2}, cores=8) == MachineShare(2, 2)  # per DDP task


def test_gpu_jobs_never_share_a_device():
    assert share({"gpus_per_node": 1}, gpus=[0, 1, 2, 3]) == MachineShare(4, 1, ((0,), (1,), (2,), (3,)))
    assert share({"gpus_per_node": 2}, cores=8, gpus=[0, 1, 2, 3]) == MachineShare(2, 4, ((0, 1), (2, 3)))
    assert share({"gpus_per_node": 1}, n_runs=1, gpus=[0, 1]) == MachineShare(1, 2, ((0,),))
    assert share({"gpus_per_node": 1, "cpus_per_task": 1}, gpus=[0, 1, 2]) == MachineShare(2, 1, ((0,), (1,)))
    assert share({"gpus_per_node": 1, "array_parallelism": 1}, gpus=[4, 6]) == MachineShare(1, 2, ((4,),))


def test_the_visible_gpus_are_the_ones_handed_out(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert local_share({"gpus_per_node": 1}, 4, cores=2).gpus == ((3,), (5,))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8a3c,GPU-77f1")
    with pytest.raises(MMBenchError, match="names GPUs by UUID"):
        local_share({"gpus_per_node": 1}, 4, cores=2)


@pytest.mark.parametrize(
    "resources, gpus, message",
    [
        ({"gpus_per_node": 1}, [], "gpus_per_node = 1 but this machine has 0 visible GPU(s)"),
        ({"gpus_per_node": 4}, [0, 1], "gpus_per_node = 4 but this machine has 2 visible GPU(s)"),
        ({"gpus_per_node": 1, "array_parallelism": 3}, [0, 1], "array_parallelism = 3 GPU jobs at once need 3 GPUs"),
        ({"cpus_per_task": 4}, [], "cpus_per_task = 4 x tasks_per_node = 1 is more than this machine's 2 cores"),
        ({"cpus_per_task": 2, "tasks_per_node": 2}, [], "is more than this machine's 2 cores"),
    ],
)
def test_what_the_machine_cannot_give_is_refused(resources, gpus, message):
    with pytest.raises(MMBenchError) as err:
        share(resources, gpus=gpus)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_runs_are_dealt_round_robin():
    assert split_runs(list("abcde"), 2) == [["a", "c", "e"], ["b", "d"]]
    assert split_runs(list("ab"), 4) == [["a"], ["b"]]
    assert split_runs(list("abc"), 1) == [["a", "b", "c"]]


def test_a_job_takes_the_cpus_of_its_slurm_allocation(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert job_threads() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 5})
    assert job_threads() == 2


def test_use_threads_limits_torch_and_what_children_read():
    code = (
        "import os, torch; from mmbench.device import use_threads; use_threads(1); "
        "print(torch.get_num_threads(), torch.get_num_interop_threads(), os.environ['OMP_NUM_THREADS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1"]


class RecordingExecutor:
    """submitit's LocalExecutor as submit_jobs drives it, recording what each job was given."""

    def __init__(self):
        self.parameters, self.jobs = {}, []

    def update_parameters(self, **params):
        self.parameters.update(params)

    def submit(self, fn):
        self.jobs.append((dict(self.parameters), fn))
        return type("Job", (), {"job_id": str(100 + len(self.jobs))})()


BASE = """[sweep]
name = "share"
models = ["mopoe"]
seeds = [0, 1, 2]

[dataset]
name = "polymnist"
root = "{root}"

[config]
max_steps = 2
latent_dim = 8
batch_size = 64

[run]
device = "cpu"
tensorboard = false

[executor]
name = "local"
timeout_min = 10
"""


def test_each_job_gets_its_runs_threads_and_own_gpus(polymnist_pt, tmp_path, monkeypatch):
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(root=polymnist_pt) + "gpus_per_node = 1\n")
    sweep = load_sweep(path, runs_dir=tmp_path / "runs")
    fake = RecordingExecutor()
    monkeypatch.setattr(executors, "make_submitit_executor", lambda *a: fake)
    monkeypatch.setattr("mmbench.sweeps.machine_share.machine_cores", lambda: 8)
    monkeypatch.setattr("mmbench.sweeps.machine_share.machine_gpus", lambda: [0, 1])
    ids = submit_jobs(sweep.executor, sweep.specs, sweep.runs_dir, sweep.name, sweep.options)
    assert [params["visible_gpus"] for params, _ in fake.jobs] == [(0,), (1,)]
    assert [params["timeout_min"] for params, _ in fake.jobs] == [20, 10]  # timeout_min is per run
    jobs = [fn for _, fn in fake.jobs]
    assert all(isinstance(fn, RunJob) and fn.threads == 4 for fn in jobs)
    assert [[s.run_id for s in fn.specs] for fn in jobs] == [
        [sweep.specs[0].run_id, sweep.specs[2].run_id],
        [sweep.specs[1].run_id],
    ]
    assert ids == {sweep.specs[0].run_id: "101", sweep.specs[2].run_id: "101", sweep.specs[1].run_id: "102"}
    registry = json.loads((tmp_path / "runs" / ".sweeps" / "share" / "jobs.json").read_text())
    assert {run: entry["job_id"] for run, entry in registry.items()} == ids


def test_plan_shows_the_share_and_what_submit_would_refuse(polymnist_pt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mmbench.sweeps.machine_share.machine_cores", lambda: 2)
    monkeypatch.setattr("mmbench.sweeps.machine_share.machine_gpus", lambda: [])
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(root=polymnist_pt) + "cpus_per_task = 1\n")
    assert main(["sweep", "plan", str(path), "--runs", str(tmp_path / "runs")]) == 0
    assert "this machine: 2 job(s) at once, 1 thread(s) each" in capsys.readouterr().out
    path.write_text(BASE.format(root=polymnist_pt) + "gpus_per_node = 1\n")
    assert main(["sweep", "plan", str(path), "--runs", str(tmp_path / "runs")]) == 0
    assert "note: submit would refuse: [executor] gpus_per_node = 1 but this machine has 0" in capsys.readouterr().out
    assert main(["sweep", "submit", str(path), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gpus_per_node = 1 but this machine has 0 visible GPU(s)" in err[0]
    assert not (tmp_path / "runs" / ".sweeps" / "share" / "jobs.json").exists()  # nothing was queued


def test_a_local_sweep_runs_its_share_of_jobs_with_their_threads(polymnist_pt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mmbench.sweeps.machine_share.machine_cores", lambda: 2)
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(root=polymnist_pt) + "cpus_per_task = 1\n")
    runs = tmp_path / "runs"
    assert main(["sweep", "submit", str(path), "--runs", str(runs), "--no-progress"]) == 0
    capsys.readouterr()
    deadline = time.monotonic() + 300
    while len(list(runs.glob("*/record.json"))) < 3:
        assert time.monotonic() < deadline, "the local jobs did not finish"
        time.sleep(0.5)
    assert all(read_record(p)["status"] == "finished" for p in runs.glob("*/record.json"))
    registry = json.loads((runs / ".sweeps" / "share" / "jobs.json").read_text())
    job_ids = sorted({entry["job_id"] for entry in registry.values()})
    assert len(registry) == 3 and len(job_ids) == 2  # three runs in two jobs: never more than the share
    for job_id in job_ids:
        log = (runs / ".sweeps" / "share" / "logs" / job_id / f"{job_id}_0_log.out").read_text()
        assert "threads: 1 (torch, OpenMP, MKL)" in log
    assert all("1 threads" in read_record(p)["device"] for p in runs.glob("*/record.json"))

"""Sweeps on a real single-node SLURM cluster (slurmctld, slurmd, munged started here and stopped by PID),
submitted through the code path users use: ``mmbench sweep submit`` with the slurm executor."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from slurm_cluster import LocalSlurm, missing_binaries

from mmbench.cli import main
from mmbench.runs.execute import executions
from mmbench.storage.checkpoint import checkpoint_exists, load_checkpoint
from mmbench.storage.records import read_record
from mmbench.sweeps.executors import read_jobs, sweep_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(missing_binaries()),
        reason=(
            f"SLURM is not installed ({', '.join(missing_binaries())} missing): apt-get install slurmctld slurmd "
            "slurm-client munge"
        ),
    ),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    c.start()
    yield c
    c.stop()


def write_sweep(
    path: Path,
    data_root: Path,
    *,
    models=("mopoe",),
    grid: dict | None = None,
    steps: int = 20,
    executor: str = "",
    every: int = 500,
    name: str | None = None,
) -> Path:
    grid_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (grid or {}).items())
    path.write_text(f"""[sweep]
name = "{name or path.stem}"
models = {json.dumps(list(models))}
seeds = [0]

[dataset]
name = "polymnist"
root = "{data_root}"

[config]
latent_dim = 16
batch_size = 32
max_steps = {steps}

[grid]
{grid_lines}
[run]
device = "cpu"
checkpoint_every = {every}
tensorboard = false

[executor]
name = "slurm"
partition = "debug"
cpus_per_task = 1
mem_gb = 2
timeout_min = 10
{executor}
""")
    return path


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoint.pt")["state_dict"]


def same_result(a: Path, b: Path) -> bool:
    ra, rb = read_record(a / "record.json"), read_record(b / "record.json")
    wa, wb = weights(a), weights(b)
    return (
        all(torch.equal(wa[k], wb[k]) for k in wa)
        and ra["metrics"] == rb["metrics"]
        and ra["train"]["history"] == rb["train"]["history"]
        and ra["train"]["steps"] == rb["train"]["steps"]
    )


def test_a_sweep_runs_as_one_job_array_with_one_record_per_run(cluster, polymnist_pt, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "small.toml", polymnist_pt, models=("mopoe", "mvtcae"), grid={"beta": [1.0, 2.0]})
    runs = tmp_path / "runs"
    assert main(["sweep", "plan", str(sweep), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "4 run(s) would be submitted as one job array" in out
    assert main(["sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"]) == 0
    jobs = read_jobs(sweep_folder(runs, "small"))
    assert len(jobs) == 4 and len({j["job_id"].split("_")[0] for j in jobs.values()}) == 1  # one array
    assert sorted(int(j["job_id"].split("_")[1]) for j in jobs.values()) == [0, 1, 2, 3]
    cluster.wait_empty(300)
    dirs = run_dirs(runs)
    assert len(dirs) == 4
    for d in dirs:
        rec = read_record(d / "record.json")
        assert rec["status"] == "finished", rec.get("failure")
        assert rec["job"]["owner"] == "slurm:" + jobs[d.name]["job_id"] and rec["job"]["executor"] == "slurm"
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep), "--runs", str(runs)]) == 0
    assert "4 finished, 0 running, 0 queued, 0 partial, 0 pending, 0 failed" in capsys.readouterr().out
    run_id = dirs[0].name
    assert main(["sweep", "logs", str(sweep), run_id, "--runs", str(runs)]) == 0
    assert "stdout" in capsys.readouterr().out
    assert main(["sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"]) == 0  # nothing left to do
    assert "0 queued, 4 left alone" in capsys.readouterr().out


def test_a_job_requeued_mid_training_resumes_to_the_result_of_an_uninterrupted_run(cluster, polymnist_pt, tmp_path):
    sweep = write_sweep(tmp_path / "requeue.toml", polymnist_pt, steps=300, every=20)
    assert main(["sweep", "submit", str(sweep), "--runs", str(tmp_path / "straight"), "--no-progress"]) == 0
    assert main(["sweep", "submit", str(sweep), "--runs", str(tmp_path / "requeued"), "--no-progress"]) == 0
    job_id = next(iter(read_jobs(sweep_folder(tmp_path / "requeued", "requeue")).values()))["job_id"]
    run = tmp_path / "requeued"
    LocalSlurm._wait(
        lambda: any(checkpoint_exists(d / "checkpoint.pt") for d in run_dirs(run)), 120, "a first checkpoint"
    )
    res = cluster.scontrol("requeue", job_id)
    assert res.returncode == 0, res.stderr
    cluster.wait_empty(420)
    (straight,), (requeued,) = run_dirs(tmp_path / "straight"), run_dirs(run)
    starts = executions(requeued)
    assert len(starts) == 2 and starts[1]["from_step"] > 0 and starts[1]["restarts"] == 1
    assert len({s["owner"] for s in starts}) == 1
    assert same_result(straight, requeued)


def test_a_job_that_hits_its_time_limit_is_requeued_and_finishes(cluster, polymnist_pt, tmp_path):
    # USR2 comes 80 s before the 2-minute limit: 40 s into each attempt, before 1,000 steps are done. An attempt
    # trains for 15-30 s after start-up, 150-800 steps depending on the machine, so up to 20 timeouts are allowed
    sweep = write_sweep(
        tmp_path / "timeout.toml",
        polymnist_pt,
        steps=1000,
        every=50,
        executor="signal_delay_s = 80\nmax_num_timeout = 20\n",
    )
    text = sweep.read_text().replace("timeout_min = 10", "timeout_min = 2")
    sweep.write_text(text)
    assert main(["sweep", "submit", str(sweep), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    cluster.wait_empty(900)
    (run,) = run_dirs(tmp_path / "runs")
    rec = read_record(run / "record.json")
    assert rec["status"] == "finished" and rec["train"]["steps"] == 1000
    assert rec["job"]["restarts"] >= 1 and rec["job"]["max_num_timeout"] == 20
    assert len(executions(run)) == rec["job"]["restarts"] + 1


def _submit_process(sweep: Path, runs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mmbench.cli", "sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _trained_once(runs: Path, n: int) -> None:
    dirs = run_dirs(runs)
    assert len(dirs) == n
    for d in dirs:
        assert read_record(d / "record.json")["status"] == "finished"
        owners = {e["owner"] for e in executions(d)}
        assert len(owners) == 1, f"{d.name} was trained by {owners}"


def test_killing_the_submitter_and_submitting_again_loses_no_run_and_trains_none_twice(cluster, polymnist_pt, tmp_path):
    sweep = write_sweep(tmp_path / "killed.toml", polymnist_pt, models=("mopoe", "mvtcae"), grid={"beta": [1.0, 2.0]})
    runs = tmp_path / "runs"
    proc = _submit_process(sweep, runs)
    time.sleep(4.0)  # inside its imports, its validation or its sbatch call
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _submit_process(sweep, runs)
    assert again.wait(120) == 0, again.stdout.read()
    cluster.wait_empty(300)
    _trained_once(runs, 4)


def test_two_processes_submitting_the_same_sweep_at_once_train_each_run_once(cluster, polymnist_pt, tmp_path):
    sweep = write_sweep(tmp_path / "twice.toml", polymnist_pt, models=("mopoe",), grid={"beta": [1.0, 2.0]})
    runs = tmp_path / "runs"
    procs = [_submit_process(sweep, runs) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count(" submitted as job ") for o in outs) == 2, outs  # each run queued by one of the two
    cluster.wait_empty(300)
    _trained_once(runs, 2)


def test_a_ddp_run_with_two_tasks_finishes_with_one_record(cluster, polymnist_pt, tmp_path):
    sweep = write_sweep(tmp_path / "ddp.toml", polymnist_pt, steps=10, executor="tasks_per_node = 2\n")
    runs = tmp_path / "runs"
    assert main(["sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"]) == 0
    cluster.wait_empty(300)
    (run,) = run_dirs(runs)
    rec = read_record(run / "record.json")
    assert rec["status"] == "finished", rec.get("failure")
    assert rec["device_info"]["count"] == 2 and rec["train"]["steps"] == 10


def test_bad_executor_tables_are_one_line_and_nothing_is_submitted(cluster, polymnist_pt, tmp_path, capsys):
    runs = tmp_path / "runs"
    cases = [
        ('partitoin = "debug"\n', "[executor] has unknown key(s) ['partitoin']"),
        ("gpus_per_node = -1\n", "gpus_per_node = -1 must be >= 0"),
        ('setup = "module load cuda"\n', "setup = 'module load cuda' must be a list of strings"),
    ]
    for extra, message in cases:
        sweep = write_sweep(tmp_path / "bad.toml", polymnist_pt, executor=extra)
        assert main(["sweep", "submit", str(sweep), "--runs", str(runs)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    sweep = write_sweep(tmp_path / "bad.toml", polymnist_pt)
    sweep.write_text(sweep.read_text().replace('partition = "debug"', 'partition = "gpu-a100"'))
    assert main(["sweep", "submit", str(sweep), "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SLURM refuses the sweep's [executor] resources" in err[0], err
    assert "invalid partition" in err[0].lower()
    local = write_sweep(tmp_path / "local.toml", polymnist_pt)
    assert main(["sweep", "submit", str(local), "--runs", str(runs), "--executor", "inline", "--no-progress"]) == 0
    capsys.readouterr()
    sweep.write_text(sweep.read_text().replace('name = "slurm"', 'name = "local"'))
    assert main(["sweep", "submit", str(sweep), "--runs", str(runs)]) == 2
    assert "the local executor cannot express [executor] mem_gb, partition" in capsys.readouterr().err
    assert not (runs / ".sweeps" / "bad" / "jobs.json").exists()

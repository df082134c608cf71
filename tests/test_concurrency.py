"""Concurrency: 16 processes writing records and checkpoints into one runs folder at once (some to the same runs),
and two ``sweep submit`` of one sweep file at once: every file verifies, none is lost, no temporary file is left
behind, and every run is trained exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from concurrency_helpers import forkserver, take_lock_repeatedly, weights, write_runs

from mmbench.runs.execute import EXECUTIONS, executions
from mmbench.storage.checkpoint import load_checkpoint, previous_path
from mmbench.storage.records import RECORD, load_record

REPO = Path(__file__).resolve().parents[1]
WRITERS, ROUNDS, SHARED = 16, 4, 2


def env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def check_checkpoint(path: Path) -> tuple[int, int]:
    """(writer, round) of a checkpoint that verifies and holds what that writer wrote in that round."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to the previous file would mean the latest is lost or corrupt
        payload = load_checkpoint(path)
    writer, r = payload["writer"], payload["round"]
    assert torch.equal(payload["state_dict"]["w"], weights(writer, r)), f"{path} holds another writer's bytes"
    return writer, r


def check_record(path: Path) -> tuple[int, int]:
    rec = load_record(path)
    writer, r = rec.seed, int(rec.sweep)
    assert rec.run_id == path.parent.name and rec.metrics[0].value == writer + r / 10
    return writer, r


def temporary_files(runs: Path) -> list[Path]:
    return [p for p in runs.rglob("*") if p.name.endswith(".tmp") or ".stale." in p.name]


def test_sixteen_processes_writing_one_runs_folder_lose_and_corrupt_nothing(tmp_path):
    runs = tmp_path / "runs"
    ctx = forkserver()
    go, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=write_runs, args=(runs, i, ROUNDS, SHARED, go, errors)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    go.set()  # all at once
    for p in procs:
        p.join(120)
    failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert failures == [] and [p.exitcode for p in procs] == [0] * WRITERS, failures[:1]

    records = sorted(runs.glob(f"*/{RECORD}"))
    assert len(records) == WRITERS * ROUNDS + SHARED  # none lost
    for i in range(WRITERS):
        for r in range(ROUNDS):
            run = runs / f"own-{i}-{r}"
            assert check_record(run / RECORD) == (i, r)
            assert check_checkpoint(run / "checkpoint.pt") == (i, r)
            assert not previous_path(run / "checkpoint.pt").exists()  # written once: nothing to keep
    for s in range(SHARED):
        run = runs / f"shared-{s}"
        assert check_record(run / RECORD)[1] % SHARED == s  # one writer's whole record, of a round of this run
        assert check_checkpoint(run / "checkpoint.pt")[1] % SHARED == s
        assert check_checkpoint(previous_path(run / "checkpoint.pt"))[1] % SHARED == s
    assert temporary_files(runs) == []


def test_a_run_lock_taken_by_many_processes_at_once_has_one_holder_and_always_reads(tmp_path):
    ctx = forkserver()
    go, errors, held = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
    procs = [ctx.Process(target=take_lock_repeatedly, args=(tmp_path, 150, go, errors, held)) for _ in range(8)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert failures == [] and [p.exitcode for p in procs] == [0] * 8, failures[:1]
    assert held.value > 0 and not (tmp_path / "lock.json").exists() and temporary_files(tmp_path) == []


# -- two submits of one sweep at once ------------------------------------------------------------------------

SWEEP = """[sweep]
name = "twice"
models = ["mopoe", "mvae"]
seeds = [0, 1]

[dataset]
name = "synthetic"
n = 32
size = 8
views = ["image", "attributes"]

[config]
latent_dim = 4
batch_size = 16
max_steps = 3

[evaluate]
metrics = []

[run]
device = "cpu"
checkpoint_every = 1
tensorboard = false

[executor]
name = "{executor}"
"""


def submit_twice(tmp_path: Path, executor: str) -> tuple[Path, list[subprocess.CompletedProcess]]:
    sweep = tmp_path / "twice.toml"
    sweep.write_text(SWEEP.format(executor=executor) + ("timeout_min = 10\n" if executor == "local" else ""))
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "mmbench", "sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"]
    procs = [
        subprocess.Popen(command, env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return runs, done


def check_trained_once(runs: Path, n_runs: int) -> None:
    folders = sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(folders) == n_runs
    for run in folders:
        rec = load_record(run / RECORD)
        assert rec.status == "finished", rec.failure
        starts = executions(run)
        assert len(starts) == 1 and starts[0]["from_step"] == 0, f"{run.name} trained {len(starts)} times"
        assert check_checkpoint_step(run) == 3
        assert not (run / "lock.json").exists()
    assert temporary_files(runs) == []


def check_checkpoint_step(run: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        payload = load_checkpoint(run / "checkpoint.pt")
    return int(payload["steps"])


def test_two_inline_submits_of_one_sweep_train_every_run_once(tmp_path):
    runs, done = submit_twice(tmp_path, "inline")
    for d in done:
        assert "Traceback" not in d.stderr and d.returncode in (0, 1), d.stderr[-2000:]
    check_trained_once(runs, 4)
    assert sum(len(executions(p.parent)) for p in runs.glob(f"*/{EXECUTIONS}")) == 4
    for d in done:  # each trained some runs and left the others to the other submit, refusing nothing
        assert "failed" not in d.stdout.replace("0 failed", "") and "error" not in d.stderr, d.stdout + d.stderr


@pytest.mark.slow
def test_two_local_submits_of_one_sweep_queue_and_train_every_run_once(tmp_path):
    runs, done = submit_twice(tmp_path, "local")
    for d in done:
        assert d.returncode == 0, d.stderr[-2000:]
    submitted = sum(d.stdout.count("submitted as job") for d in done)
    assert submitted == 4  # the second submit finds the first one's jobs queued
    deadline = time.monotonic() + 240
    while len(list(runs.glob(f"*/{RECORD}"))) < 4 or list(runs.glob("*/lock.json")):
        assert time.monotonic() < deadline, "the local jobs did not finish"
        time.sleep(0.5)
    check_trained_once(runs, 4)
    jobs = json.loads((runs / ".sweeps" / "twice" / "jobs.json").read_text())
    assert len(jobs) == 4

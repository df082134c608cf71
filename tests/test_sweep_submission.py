"""Sweeps without a cluster: normalised run ids, validation before anything is submitted, run locks, the local
executor (submitit's LocalExecutor), interrupted runs staying partial, and the repository's sweep files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmbench.cli import main
from mmbench.errors import MMBenchError
from mmbench.runs.execute import run_status
from mmbench.runs.locks import LOCK, RunLock, RunLocked, lock_state, read_lock
from mmbench.runs.spec import RunSpec
from mmbench.storage.records import read_record
from mmbench.sweeps.files import load_sweep

REPO = Path(__file__).resolve().parents[1]


def spec(config=None, metrics=("coherence",), metric_options=None, ds=None):
    return RunSpec(
        "mopoe", "polymnist", ds or {"root": "/data/pm"}, config or {}, 0, tuple(metrics), metric_options or {}
    )


def test_run_ids_hash_the_resolved_spec():
    assert spec({"beta": 2.5}).run_id == spec({}).run_id  # 2.5 is MoPoE's default
    assert spec({"beta": 1}).run_id == spec({"beta": 1.0}).run_id
    assert spec({"beta": 1}).run_id != spec({}).run_id
    assert spec(metrics=("coherence", "coherence")).run_id == spec().run_id
    assert spec(metric_options={"coherence": {"classifier_epochs": 20}}).run_id == spec().run_id
    assert spec(ds={"root": "/data/pm", "modalities": None}).run_id == spec().run_id
    assert spec().to_dict()["config"]["latent_dim"] == 512  # the record keeps the resolved config
    again = RunSpec.from_dict(spec({"beta": 1}).to_dict())
    assert again.run_id == spec({"beta": 1}).run_id


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BASE = """[sweep]
name = "s"
models = ["mopoe", "mvtcae"]

[dataset]
name = "polymnist"
root = "{root}"

[config]
max_steps = 4
latent_dim = 8
batch_size = 64
"""


@pytest.mark.parametrize(
    "extra, message",
    [
        ("[grid]\nbeta = []\n", "[grid] beta must be a non-empty list of values"),
        ('[executor]\nname = "slurm"\ngpu_per_node = 1\n', "[executor] has unknown key(s) ['gpu_per_node']"),
        ('[run]\ndevise = "cuda"\n', "[run] has unknown key(s) ['devise']"),
        ('[run]\nnproc = 2\n[executor]\nname = "slurm"\n', "use [executor] tasks_per_node = 2"),
        ('[run]\ndevice = "cuda"\n[executor]\nname = "slurm"\n', "gpus_per_node is 0"),
        ('[run]\ndevice = "gpu"\n[executor]\nname = "slurm"\ngpus_per_node = 1\n', "unknown device 'gpu'"),
        ('[executor]\nname = "slurm"\ngpus_per_node = 1\ntasks_per_node = 2\n', "DDP runs one process per GPU"),
        (
            '[evaluate]\nmetrics = ["coherence"]\n[evaluate.coherence]\nclassifier_epoch = 3\n',
            "bad options for metric 'coherence'",
        ),
        ("[config.mopoe]\nbeta = -1.0\n", "beta = -1.0 is out of range"),
        ("[config.diffmvae_star]\nsampler_steps = 2000\n", "names a model the sweep does not run"),
    ],
)
def test_bad_sweep_files_are_one_line_before_anything_runs(polymnist_pt, tmp_path, capsys, extra, message):
    sweep = write(tmp_path / "bad.toml", BASE.format(root=polymnist_pt) + extra)
    for command in ("plan", "submit"):
        assert main(["sweep", command, str(sweep), "--runs", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_ddim_steps_beyond_the_schedule_and_a_missing_dataset_folder_are_refused_at_load(tmp_path, polymnist_pt):
    star = BASE.format(root=polymnist_pt).replace('["mopoe", "mvtcae"]', '["diffmvae_star"]')
    with pytest.raises(MMBenchError, match=r"sampler_steps = 2000 is out of range; allowed: \[1, 1000\]"):
        load_sweep(write(tmp_path / "a.toml", star + "sampler_steps = 2000\n"))
    with pytest.raises(MMBenchError, match="PolyMNIST folder .*/nowhere/train does not exist"):
        load_sweep(write(tmp_path / "b.toml", BASE.format(root=tmp_path / "nowhere")))


def test_a_model_that_pins_a_grid_field_runs_once(polymnist_pt, tmp_path):
    text = BASE.format(root=polymnist_pt) + "[config.mvtcae]\nbeta = 0.5\n[grid]\nbeta = [1.0, 2.0]\n"
    sweep = load_sweep(write(tmp_path / "pin.toml", text))
    betas = sorted((s.model, s.config["beta"]) for s in sweep.specs)
    assert betas == [("mopoe", 1.0), ("mopoe", 2.0), ("mvtcae", 0.5)]


def test_run_locks_keep_a_second_owner_out_and_expire_with_their_owner(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        lock = read_lock(run)
        assert lock_state(lock) == "mine"
        foreign = {**lock, "owner": "slurm:999", "heartbeat": time.time()}
        (run / LOCK).write_text(json.dumps(foreign))
        with pytest.raises(RunLocked, match="being trained by slurm:999"):
            RunLock(run).__enter__()
        assert lock_state(foreign, now=time.time() + 3600) == "stale"  # no heartbeat for an hour
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (run / LOCK).write_text(json.dumps({**foreign, "owner": f"{socket.gethostname()}:{dead.pid}", "pid": dead.pid}))
        with RunLock(run):  # the owner's process is gone: taken over
            assert read_lock(run)["pid"] == os.getpid()
    assert not (run / LOCK).exists()
    (run / LOCK).write_text("{not json")
    with pytest.raises(MMBenchError, match=r"lock file .*lock.json is corrupt"):
        RunLock(run).__enter__()


def test_a_record_of_another_schema_is_one_line(tmp_path):
    (tmp_path / "record.json").write_text(
        json.dumps({"schema": 99, "run_id": "x", "status": "finished", "spec": {}, "metrics": []})
    )
    with pytest.raises(MMBenchError, match="has schema 99; this mmbench reads schemas 1 to 4"):
        read_record(tmp_path / "record.json")


def test_sigterm_mid_run_leaves_the_run_partial_with_no_record_and_no_lock(polymnist_pt, tmp_path):
    runs = tmp_path / "runs"
    args = [
        sys.executable,
        "-m",
        "mmbench.cli",
        "train",
        "--model",
        "mopoe",
        "--data-root",
        str(polymnist_pt),
        "--set",
        "latent_dim=16",
        "--set",
        "batch_size=32",
        "--set",
        "max_steps=400",
        "--metrics",
        "--device",
        "cpu",
        "--checkpoint-every",
        "5",
        "--no-progress",
        "--runs",
        str(runs),
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.monotonic() + 60
    while not list(runs.glob("*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "partial runs resume" in err
    (run,) = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert run_status(run) == "partial" and not (run / "record.json").exists() and not (run / LOCK).exists()


def test_the_local_executor_runs_a_sweep_in_background_processes(polymnist_pt, tmp_path, capsys):
    sweep = write(
        tmp_path / "local.toml",
        BASE.format(root=polymnist_pt)
        + '[run]\ndevice = "cpu"\ntensorboard = false\n[executor]\nname = "local"\ntimeout_min = 10\n',
    )
    runs = tmp_path / "runs"
    assert main(["sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("submitted as job") == 2
    deadline = time.monotonic() + 240
    while len(list(runs.glob("*/record.json"))) < 2:
        assert time.monotonic() < deadline, "the local jobs did not finish"
        time.sleep(0.5)
    assert all(read_record(p)["status"] == "finished" for p in runs.glob("*/record.json"))
    assert main(["sweep", "status", str(sweep), "--runs", str(runs)]) == 0
    assert "2 finished" in capsys.readouterr().out


def test_the_repository_sweep_files_load(tmp_path):
    from mmbench.data.polymnist_build import build_polymnist

    root = build_polymnist(tmp_path / "pm5", 5, seed=0, layout="pt", progress=False)
    sizes = {}
    for name in ("demo", "demo_quick", "polymnist_scaling", "polymnist_conditional", "prior_ablation"):
        sweep = load_sweep(REPO / "mmbench" / "resources" / "sweeps" / f"{name}.toml", [f'dataset.root="{root}"'])
        sizes[name] = len(sweep.specs)
    assert sizes["polymnist_scaling"] == (3 * 2 + 2 + 2) * 4 * 3  # SBM-AE and MLD pin beta
    assert sizes["polymnist_conditional"] == 21
    import tomllib

    for name in ("cub", "celebamaskhq"):  # their adapters come with the datasets issue
        doc = tomllib.loads((REPO / "mmbench" / "resources" / "sweeps" / f"{name}.toml").read_text())
        assert doc["executor"]["gpus_per_node"] == doc["executor"]["tasks_per_node"]

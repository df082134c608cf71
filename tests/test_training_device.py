"""Training where researchers train: device and precision options, DDP (gloo on the CPU), the training log,
throughput in the record, a run killed at random moments, and the one-line refusals of bad devices."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import ddp_helpers
import pytest
import torch
from helpers import tiny_dataset

from mmbench.cli import main
from mmbench.config import build_config
from mmbench.device import check_precision, resolve_device
from mmbench.errors import MMBenchError
from mmbench.registry import MODELS
from mmbench.storage.checkpoint import checkpoint_exists, load_checkpoint
from mmbench.training.distributed import launch_local
from mmbench.training.log import LOG_FILE, read_log
from mmbench.training.options import RunOptions
from mmbench.training.trainer import train


def _train_args(data_root, runs, *extra):
    return [
        "train",
        "--model",
        "mopoe",
        "--data-root",
        str(data_root),
        "--runs",
        str(runs),
        "--set",
        "latent_dim=16",
        "--set",
        "batch_size=32",
        "--metrics",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("name", ["mopoe", "diffmvae_star"])
def test_bf16_autocast_trains_with_a_finite_loss_and_fp32_posteriors(name):
    data = tiny_dataset(32)
    cls = MODELS.get(name)
    small = {"latent_dim": 8, "batch_size": 16, "epochs": 1, "precision": "bf16"}
    if name.startswith("diffmvae"):
        small.update(unet_base=8, unet_mults=[1, 2])
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, small))
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, data, options=RunOptions(tensorboard=False), progress=False, log=lambda s: None)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = model.encode(data.batch(torch.arange(4))["x"])
    assert q.mu.dtype == q.logvar.dtype == torch.float32


def test_grad_clip_bounds_the_gradient_norm():
    data = tiny_dataset(16)
    cls = MODELS.get("mopoe")
    model = cls(
        data.modalities, build_config(cls.Config, {"latent_dim": 8, "batch_size": 16, "epochs": 1, "grad_clip": 0.5})
    )
    norms = []
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        norms.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm().item())
        return real_step(self, *a, **k)

    torch.optim.Adam.step = step
    try:
        train(model, data, options=RunOptions(tensorboard=False), progress=False, log=lambda s: None)
    finally:
        torch.optim.Adam.step = real_step
    assert norms and max(norms) <= 0.5 + 1e-5


def test_ddp_with_two_gloo_processes_equals_one_process_with_the_same_global_batch(tmp_path):
    config = {"latent_dim": 8, "batch_size": 12, "epochs": 2, "beta": 1.0, "lr": 1e-3}
    n = 41  # batches of 12, 12, 12, 5: the last one splits 3/2 between the ranks
    launch_local(ddp_helpers.train_deterministic, 2, (tmp_path, n, config))
    ddp_helpers.train_deterministic(tmp_path, n, config)
    two, one = torch.load(tmp_path / "weights-2.pt"), torch.load(tmp_path / "weights-1.pt")
    moved = max((one[k] - ddp_helpers.initial_weights(n, config)[k]).abs().max().item() for k in one)
    assert moved > 5e-3  # training moved the weights far more than the tolerance below
    for k in one:  # float rounding differs between one sum and two partial sums, and Adam amplifies it
        assert torch.allclose(one[k], two[k], rtol=1e-4, atol=2e-5), k
    state = load_checkpoint(tmp_path / "ckpt-2.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["steps"] == 8
    ref = load_checkpoint(tmp_path / "ckpt-1.pt")["history"]
    assert [h["loss"] for h in state["history"]] == pytest.approx([h["loss"] for h in ref], rel=1e-4)


def test_ddp_trains_two_stages_like_one_process_and_leaves_the_first_stage_frozen_in_the_second(tmp_path):
    name, n = "test_deterministic_staged", 41  # stage one: batches of 12 (the last 3/2), stage two: of 9 (3/2)
    config = {"latent_dim": 4}
    for out in (tmp_path / "two", tmp_path / "one"):
        out.mkdir()
    launch_local(ddp_helpers.train_deterministic, 2, (tmp_path / "two", n, config, None, name))
    ddp_helpers.train_deterministic(tmp_path / "one", n, config, None, name)
    two, one = torch.load(tmp_path / "two" / "weights-2.pt"), torch.load(tmp_path / "one" / "weights-1.pt")
    start = ddp_helpers.initial_weights(n, config, name)
    for prefix in ("encoders.", "decoders.", "score."):  # both stages moved their modules far past the tolerance
        assert max((one[k] - start[k]).abs().max().item() for k in one if k.startswith(prefix)) > 5e-3, prefix
    assert one.keys() == two.keys()
    for k in one:  # float rounding only (about 3e-7 here): one sum against two partial sums
        assert torch.allclose(one[k], two[k], rtol=1e-5, atol=2e-6), k
    rank1 = torch.load(tmp_path / "two" / "weights-2-rank1.pt")
    assert all(torch.equal(two[k], rank1[k]) for k in two)  # the ranks agree exactly
    for out, tag, final in (("two", "2-rank0", two), ("two", "2-rank1", rank1), ("one", "1-rank0", one)):
        frozen = torch.load(tmp_path / out / f"frozen-{tag}.pt")  # stage one's modules as stage "score" began
        assert len(frozen) == 8 and all(torch.equal(v, final[k]) for k, v in frozen.items()), tag  # untouched
        costs = json.loads((tmp_path / out / f"stages-{tag}.json").read_text())
        assert [(c["name"], c["steps"], c["epochs"], c["reused"]) for c in costs] == [
            ("autoencoders", 8, 2, None),
            ("score", 10, 2, None),
        ], tag
    for out, world in ((tmp_path / "two", 2), (tmp_path / "one", 1)):
        state = load_checkpoint(out / f"ckpt-{world}.pt")
        assert state["world_size"] == world and state["steps"] == 18
        assert (state["stage"]["name"], state["stage"]["done"]) == ("score", True)
        assert [(e["step"], e["stage"]) for e in read_log(out / LOG_FILE)] == [(8, "autoencoders"), (18, "score")]
    ref = load_checkpoint(tmp_path / "one" / "ckpt-1.pt")["history"]
    got = load_checkpoint(tmp_path / "two" / "ckpt-2.pt")["history"]
    assert [h["stage"] for h in got] == ["autoencoders"] * 2 + ["score"] * 2
    assert [h["loss"] for h in got] == pytest.approx([h["loss"] for h in ref], rel=1e-4)


def test_a_non_finite_loss_on_one_rank_stops_every_rank_with_one_clear_error(tmp_path):
    config = {"latent_dim": 8, "batch_size": 12, "epochs": 1}
    with pytest.raises(MMBenchError, match="loss is (nan|not finite on another rank) at step 0"):
        # the first batch's second half (rank 1's slice) holds every row but the first six of the permutation
        launch_local(ddp_helpers.train_deterministic, 2, (tmp_path, 12, config, 11))


def test_train_with_nproc_2_runs_ddp_and_writes_one_record(polymnist_pt, tmp_path, capsys):
    assert main(_train_args(polymnist_pt, tmp_path, "--set", "max_steps=6", "--nproc", "2")) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    records = list(tmp_path.glob("*/record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "finished" and rec["device_info"]["count"] == 2 and rec["train"]["steps"] == 6
    assert rec["options"]["nproc"] == 2 and rec["train"]["examples_per_s"] > 0


def test_the_record_names_the_device_and_the_throughput_and_the_log_has_each_step_once(polymnist_pt, tmp_path):
    args = _train_args(polymnist_pt, tmp_path, "--set", "max_steps=8", "--checkpoint-every", "3")
    assert main(args) == 0
    (rec_path,) = tmp_path.glob("*/record.json")
    rec = json.loads(rec_path.read_text())
    info = rec["device_info"]
    assert info["type"] == "cpu" and info["torch"] == torch.__version__ and "cpu" in rec["device"]
    assert rec["train"]["examples_per_s"] > 0 and rec["train"]["s_per_step"] > 0
    entries = read_log(rec_path.parent / LOG_FILE)
    assert [e["step"] for e in entries] == [8] and entries[0]["examples_per_s"] > 0
    assert {"loss", "kl", "lr", "s_per_step"} <= set(entries[0])


def test_a_resumed_run_rewrites_the_log_lines_past_its_checkpoint(tmp_path):
    data = tiny_dataset(40)
    cls = MODELS.get("mopoe")
    cfg = build_config(cls.Config, {"latent_dim": 8, "batch_size": 8, "epochs": 2})
    ckpt = tmp_path / "run" / "checkpoint.pt"
    options = RunOptions(checkpoint_every=4, log_every=1, tensorboard=False)
    torch.manual_seed(0)
    model = cls(data.modalities, cfg)
    train(model, data, checkpoint=ckpt, options=options, progress=False, log=lambda s: None)
    # as if killed at step 6: the log went on past the checkpoint of step 4
    torch.manual_seed(0)
    state = load_checkpoint(ckpt)
    steps = [e["step"] for e in read_log(ckpt.parent / LOG_FILE)]
    assert steps == list(range(1, 11)) and state["steps"] == 10
    from mmbench.storage.checkpoint import previous_path

    os.replace(previous_path(ckpt), ckpt)  # the step-8 checkpoint becomes the latest
    with (ckpt.parent / LOG_FILE).open("a") as f:
        f.write('{"step": 11, "torn')  # a line cut by the kill
    model = cls(data.modalities, cfg)
    train(model, data, checkpoint=ckpt, options=options, progress=False, log=lambda s: None)
    assert [e["step"] for e in read_log(ckpt.parent / LOG_FILE)] == list(range(1, 11))


def test_tensorboard_events_are_written_when_the_package_is_installed(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    data = tiny_dataset(16)
    cls = MODELS.get("mopoe")
    model = cls(data.modalities, build_config(cls.Config, {"latent_dim": 8, "batch_size": 8, "epochs": 1}))
    train(
        model,
        data,
        checkpoint=tmp_path / "checkpoint.pt",
        options=RunOptions(log_every=1),
        progress=False,
        log=lambda s: None,
    )
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


@pytest.mark.slow
def test_a_run_killed_at_random_moments_resumes_to_the_weights_of_an_uninterrupted_run(polymnist_pt, tmp_path):
    cmd = [sys.executable, "-m", "mmbench.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = _train_args(polymnist_pt, tmp_path / "a", "--set", "max_steps=90", "--checkpoint-every", "4")
    subprocess.run(cmd + straight, env=env, check=True, capture_output=True)
    killed = _train_args(polymnist_pt, tmp_path / "b", "--set", "max_steps=90", "--checkpoint-every", "4")
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd + killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any(checkpoint_exists(p / "checkpoint.pt") for p in (tmp_path / "b").glob("mopoe-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.2))  # somewhere in training, possibly inside a checkpoint write
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    done = subprocess.run(cmd + killed, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (a,) = (tmp_path / "a").glob("mopoe-*/checkpoint.pt")
    (b,) = (tmp_path / "b").glob("mopoe-*/checkpoint.pt")
    wa, wb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [e["step"] for e in read_log(b.parent / LOG_FILE)]
    assert steps == sorted(set(steps))


def test_devices_that_do_not_exist_are_one_line_and_nothing_is_written(polymnist_pt, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(_train_args(polymnist_pt, tmp_path, "--device", "cuda")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device 'cuda' was asked for but this machine has no CUDA device" in err[0]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    for bad, message in [("tpu", "unknown device 'tpu'"), ("cuda:x", "must be a number")]:
        with pytest.raises(MMBenchError, match=message):
            resolve_device(bad)
    assert main(_train_args(polymnist_pt, tmp_path, "--nproc", "999")) == 2
    assert "nproc 999 is more than the" in capsys.readouterr().err
    assert main(_train_args(polymnist_pt, tmp_path, "--set", "precision=fp16")) == 2
    assert "precision = 'fp16'; allowed: 'fp32', 'bf16'" in capsys.readouterr().err

    import mmbench.device as device_module  # a 2-GPU node without bf16, as the checks see it

    monkeypatch.setattr(device_module, "cuda_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-32GB")
    with pytest.raises(
        MMBenchError, match=r"device 'cuda:3' does not exist: this node has 2 CUDA devices \(cuda:0 to cuda:1\)"
    ):
        resolve_device("cuda:3")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(MMBenchError, match="precision 'bf16' is not supported by Tesla V100"):
        check_precision("bf16", torch.device("cuda", 0))
    with pytest.raises(MMBenchError, match="nproc 3 is more than the 2 CUDA device"):
        RunOptions(device="cuda", nproc=3).resolve()

"""Checkpoints: one self-verifying file, the previous one kept, fallback on a corrupt or missing latest, and
training that resumes exactly after a crash at any step or between the two renames of a save."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import torch
from helpers import Crash, crash_before_step, tiny_dataset

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.registry import MODELS
from mmbench.storage.checkpoint import CheckpointFallbackWarning, load_checkpoint, previous_path, save_checkpoint
from mmbench.training.options import RunOptions
from mmbench.training.trainer import train

SMALL = {"latent_dim": 8, "batch_size": 16, "epochs": 3}


def test_a_checkpoint_is_one_file_with_its_digest_inside(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": torch.arange(3)})
    assert not (tmp_path / "c.pt.sha256").exists()
    assert torch.equal(load_checkpoint(path)["a"], torch.arange(3))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MMBenchError, match=r"checkpoint .*c\.pt is corrupt"):
        load_checkpoint(path)


def test_a_corrupt_latest_falls_back_to_the_previous_good_one_with_a_warning(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1}, keep_previous=True)
    save_checkpoint(path, {"step": 2}, keep_previous=True)
    assert load_checkpoint(path)["step"] == 2 and load_checkpoint(previous_path(path))["step"] == 1
    path.write_bytes(path.read_bytes()[:-10])  # truncated, as by a full disk
    with pytest.warns(CheckpointFallbackWarning, match="previous good checkpoint"):
        assert load_checkpoint(path)["step"] == 1
    previous_path(path).write_bytes(b"garbage")
    with (
        pytest.raises(MMBenchError, match="previous one cannot be loaded either"),
        pytest.warns(CheckpointFallbackWarning),
    ):
        load_checkpoint(path)


def test_a_save_killed_between_its_renames_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1}, keep_previous=True)
    os.replace(path, previous_path(path))  # the first rename of the next save happened, the second did not
    with pytest.warns(CheckpointFallbackWarning, match="missing"):
        assert load_checkpoint(path)["step"] == 1


def test_checkpoints_of_the_older_layout_with_a_sha256_file_still_load(tmp_path):
    path = tmp_path / "old.pt"
    buf = io.BytesIO()
    torch.save({"step": 7}, buf)
    path.write_bytes(buf.getvalue())
    (tmp_path / "old.pt.sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest() + "\n")
    assert load_checkpoint(path)["step"] == 7


def _train(ckpt, data, crash_at=None, monkeypatch=None, every=2):
    cls = MODELS.get("mopoe")
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, SMALL))
    if crash_at is not None:
        crash_before_step(model, crash_at)
    train(
        model,
        data,
        seed=3,
        checkpoint=ckpt,
        options=RunOptions(checkpoint_every=every, tensorboard=False),
        progress=False,
        log=lambda s: None,
    )
    return model


def _same_weights(a, b):
    return all(torch.equal(v, w) for v, w in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("crash_at", [1, 3, 5, 6, 8])  # 3 batches an epoch: mid-epoch, at a boundary, ...
def test_training_crashed_at_any_step_resumes_to_bit_identical_weights(tmp_path, crash_at):
    data = tiny_dataset(40)  # batches of 16, 16, 8
    straight = _train(tmp_path / "a" / "c.pt", data)
    with pytest.raises(Crash):
        _train(tmp_path / "b" / "c.pt", data, crash_at=crash_at)
    resumed = _train(tmp_path / "b" / "c.pt", data)
    assert _same_weights(straight, resumed)
    state = torch.load(io.BytesIO((tmp_path / "a" / "c.pt").read_bytes().split(b"\n", 1)[1]), weights_only=True)
    resumed_state = load_checkpoint(tmp_path / "b" / "c.pt")
    assert resumed_state["history"] == state["history"]  # the epoch means survive the crash too


def test_training_crashed_between_the_renames_of_a_save_resumes_to_bit_identical_weights(tmp_path, monkeypatch):
    data = tiny_dataset(40)
    straight = _train(tmp_path / "a" / "c.pt", data)
    import mmbench.storage.checkpoint as ckpt_module

    calls = {"n": 0}
    real_replace = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 4:  # the second save: latest -> previous done (call 3), new -> latest not yet
            raise Crash()
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_module.os, "replace", replace)
    with pytest.raises(Crash):
        _train(tmp_path / "b" / "c.pt", data)
    monkeypatch.setattr(ckpt_module.os, "replace", real_replace)
    assert not (tmp_path / "b" / "c.pt").exists() and previous_path(tmp_path / "b" / "c.pt").exists()
    with pytest.warns(CheckpointFallbackWarning):
        resumed = _train(tmp_path / "b" / "c.pt", data)
    assert _same_weights(straight, resumed)

"""The train state: its state_dict round trip (RNG states included, weights_only-loadable entries), the migration
of every older checkpoint layout into the current one, and old checkpoints resuming to the weights of an
uninterrupted run."""

from __future__ import annotations

import io

import torch
from helpers import Crash, crash_before_step, tiny_dataset

from mmbench.config import build_config
from mmbench.registry import MODELS
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint
from mmbench.training.distributed import DistEnv
from mmbench.training.options import RunOptions
from mmbench.training.state import TrainState, migrate_checkpoint
from mmbench.training.trainer import train

SMALL = {"latent_dim": 8, "batch_size": 16, "epochs": 3}
CURRENT_KEYS = {"epoch", "position", "steps", "history", "sums", "generator", "epoch_generator", "rng", "seconds"}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_a_train_state_round_trips_through_its_state_dict_with_the_rng_and_loads_weights_only():
    state = TrainState.start(seed=5)
    state.epoch_order(10)
    state.position, state.steps = 3, 3
    state.sums.add({"loss": 2.0, "kl": 0.5}, 4)
    state.end_epoch(DistEnv())
    state.epoch_order(10)
    state.position, state.steps, state.seconds = 1, 4, 1.5
    state.sums.add({"loss": 1.0, "kl": 0.25}, 4)
    torch.manual_seed(11)
    saved = state.state_dict()
    after = torch.rand(3)
    next_order = state.epoch_order(10)

    buf = io.BytesIO()
    torch.save(saved, buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)  # tensors, numbers, strings, lists, dicts
    assert _equal(loaded, saved)

    torch.manual_seed(0)
    restored = TrainState()
    restored.load_state_dict(loaded)
    assert torch.equal(torch.rand(3), after)  # torch's RNG is back where the state_dict read it
    torch.manual_seed(11)
    assert _equal(restored.state_dict(), saved)
    assert (restored.steps, restored.epoch, restored.position, restored.seconds) == (4, 1, 1, 1.5)
    assert restored.history == [{"epoch": 1, "steps": 3, "kl": 0.5, "loss": 2.0}]
    assert restored.sums.state_dict() == {"values": {"loss": 4.0, "kl": 1.0}, "rows": 4}
    assert torch.equal(restored.epoch_order(10), next_order)  # the part-done epoch draws its permutation again


def _current(world_size: int = 1) -> dict:
    g = torch.Generator().manual_seed(1)
    start = g.get_state()
    torch.randperm(10, generator=g)
    return {
        "model": "mopoe",
        "state_dict": {"w": torch.ones(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 1,
        "position": 2,
        "steps": 5,
        "history": [{"epoch": 1, "steps": 3, "loss": 1.0}],
        "sums": [{"values": {"loss": 2.0}, "rows": 8 + r} for r in range(world_size)],
        "generator": g.get_state(),
        "epoch_generator": start,
        "rng": [{"cpu": torch.get_rng_state()} for _ in range(world_size)],
        "seconds": 12.5,
        "world_size": world_size,
    }


def test_migrate_checkpoint_turns_every_older_layout_into_the_current_one():
    cpu = torch.get_rng_state()
    g = torch.Generator().manual_seed(2)
    first = {  # the first trainer: saved at epoch ends by one process, CPU RNG alone, no time kept
        "model": "mopoe",
        "state_dict": {"w": torch.ones(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 2,
        "steps": 6,
        "history": [{"epoch": 1, "steps": 3, "loss": 2.0}, {"epoch": 2, "steps": 6, "loss": 1.0}],
        "generator": g.get_state(),
        "torch_rng": cpu,
    }
    kept = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in first.items()}
    migrated = migrate_checkpoint(first)
    assert _equal(first, kept)  # the input is left as it is
    assert "torch_rng" not in migrated and CURRENT_KEYS | {"world_size"} <= set(migrated)
    assert _equal(migrated["rng"], [{"cpu": cpu}])
    assert migrated["position"] == 0 and migrated["seconds"] == 0.0 and migrated["world_size"] == 1
    assert _equal(migrated["epoch_generator"], first["generator"])  # at an epoch's end: the next one's start
    assert migrated["sums"] == [{"values": {}, "rows": 0}]
    assert _equal(migrate_checkpoint({**first, "seconds": 7.0})["seconds"], 7.0)  # the layout that kept the time

    one = _current()  # the first step checkpoints: sums was rank 0's dict
    assert _equal(migrate_checkpoint({**one, "sums": one["sums"][0]}), one)
    two = _current(world_size=2)  # rank 1's sums were never saved: the part-done epoch's sums start over
    assert migrate_checkpoint({**two, "sums": two["sums"][0]})["sums"] == [{"values": {}, "rows": 0}] * 2

    for current in (_current(), _current(world_size=2)):
        assert _equal(migrate_checkpoint(current), current)
    state = TrainState()
    state.load_state_dict(migrate_checkpoint(first))  # everything the loop reads is there
    assert (state.epoch, state.steps, state.position, state.history) == (2, 6, 0, first["history"])


def _train(ckpt, data, epochs=3, crash_at=None):
    cls = MODELS.get("mopoe")
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, {**SMALL, "epochs": epochs}))
    if crash_at is not None:
        crash_before_step(model, crash_at)
    try:
        result = train(
            model,
            data,
            seed=3,
            checkpoint=ckpt,
            options=RunOptions(checkpoint_every=2, tensorboard=False),
            progress=False,
            log=lambda s: None,
        )
    except Crash:
        return None, None
    return model, result


def _same_weights(a, b):
    return all(torch.equal(v, w) for v, w in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_checkpoint_of_the_first_trainers_layout_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    data = tiny_dataset(40)  # 3 batches an epoch
    straight, straight_result = _train(tmp_path / "a" / "c.pt", data)
    _train(tmp_path / "b" / "c.pt", data, epochs=1)  # its last checkpoint is at the end of epoch 1
    payload = load_checkpoint(tmp_path / "b" / "c.pt")
    assert (payload["epoch"], payload["position"], payload["steps"]) == (1, 0, 3)
    first = ("model", "config", "modalities", "state_dict", "provenance", "optimizer", "epoch", "steps", "history")
    old = {k: payload[k] for k in first}
    old.update(generator=payload["generator"], torch_rng=payload["rng"][0]["cpu"])
    save_checkpoint(tmp_path / "old" / "c.pt", old)
    resumed, result = _train(tmp_path / "old" / "c.pt", data)
    assert _same_weights(straight, resumed) and result.history == straight_result.history


def test_a_step_checkpoint_with_rank_0s_sums_as_one_dict_resumes_with_the_epochs_whole_mean(tmp_path):
    data = tiny_dataset(40)
    straight, straight_result = _train(tmp_path / "a" / "c.pt", data)
    ckpt = tmp_path / "b" / "c.pt"
    _train(ckpt, data, crash_at=5)  # the latest checkpoint: step 4, one batch into epoch 2
    payload = load_checkpoint(ckpt)
    assert payload["position"] == 1 and payload["sums"][0]["rows"] == 16
    save_checkpoint(ckpt, {**payload, "sums": payload["sums"][0]})
    resumed, result = _train(ckpt, data)
    assert _same_weights(straight, resumed) and result.history == straight_result.history

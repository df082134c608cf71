"""Multi-stage training (mmbench.stages): stage sections of a config, stages trained in order with their own
optimiser and budget, exact resume at a stage boundary and inside a stage, reuse of a finished reusable stage
across runs, the refusals of bad input, and the record's stage costs."""

from __future__ import annotations

import dataclasses
import json
import queue
import socket
import time
from collections import Counter

import pytest
import torch
from concurrency_helpers import forkserver, train_shared_stage
from ddp_helpers import DeterministicStaged, DeterministicStagedConfig
from helpers import Crash, crash_before_step, crash_if, record, tiny_dataset

from mmbench import register_model
from mmbench.config import build_config, config_to_dict
from mmbench.describe import config_fields, fields_as_text, fields_as_toml
from mmbench.errors import MMBenchError
from mmbench.runs.execute import execute
from mmbench.runs.locks import LOCK, owner_id, read_lock
from mmbench.runs.spec import RunSpec
from mmbench.runs.stages import STAGES_DIR
from mmbench.stages import Stage, StageConfig
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint
from mmbench.storage.records import SCHEMA, RunRecord, load_record, migrate_3_to_4
from mmbench.sweeps.files import sweep_from_doc, train_sweep
from mmbench.sweeps.overrides import apply_to_sweep, parse_overrides
from mmbench.training.options import RunOptions
from mmbench.training.trainer import _Clock, train

SYNTH = {"views": ["image", "attributes"], "n": 40, "size": 8}
OPTIONS = RunOptions(device="cpu", checkpoint_every=2, tensorboard=False)
STEPS = Counter()  # optimiser steps taken per stage by every TwoStage model (the loss is called once a step)


@dataclasses.dataclass(frozen=True)
class TwoStageConfig(DeterministicStagedConfig):
    """``DeterministicStagedConfig`` with latent noise (the score MLP a denoiser), its own sizes and budgets."""

    latent_dim: int = 3
    autoencoders: StageConfig = StageConfig(epochs=2, lr=1e-2, batch_size=16)
    score: StageConfig = StageConfig(epochs=2, lr=1e-2, batch_size=8)
    noise: float = 0.1


@register_model("test_staged")
class TwoStage(DeterministicStaged):
    """Stage "autoencoders" (reusable) trains linear autoencoders with latent noise; its end fits the latents'
    mean and scale; stage "score" trains a denoiser over the standardised latents (``ddp_helpers``' model with
    noise); counts its steps per stage in STEPS."""

    Config = TwoStageConfig
    stages = (
        Stage("autoencoders", ("encoders", "decoders"), reusable=True, depends=("latent_dim",)),
        Stage("score", ("score",)),
    )

    @classmethod
    def check_modalities(cls, modalities):
        pass

    def loss(self, batch):
        STEPS[self.active_stage] += 1
        return super().loss(batch)


def _model(data, **config):
    torch.manual_seed(0)
    return TwoStage(data.modalities, build_config(TwoStageConfig, config))


def _train(data, ckpt=None, crash=None, **config):
    model = _model(data, **config)
    if crash is not None:
        crash_before_step(model, crash)
    result = train(model, data, seed=3, checkpoint=ckpt, options=OPTIONS, progress=False, log=lambda s: None)
    return model, result


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- config --------------------------------------------------------------------------------------------------


def test_a_stage_section_takes_a_table_or_dotted_keys_and_replaces_only_what_is_given():
    cfg = build_config(TwoStageConfig, {"autoencoders": {"epochs": 5}, "score.lr": 0.5})
    assert cfg.autoencoders == StageConfig(epochs=5, lr=1e-2, batch_size=16)
    assert cfg.score == StageConfig(epochs=2, lr=0.5, batch_size=8)
    both = build_config(TwoStageConfig, {"score": {"lr": 0.1, "epochs": 4}, "score.lr": 0.2})
    assert both.score.lr == 0.2 and both.score.epochs == 4  # a dotted key wins over the table
    assert build_config(TwoStageConfig, config_to_dict(cfg)) == cfg  # the resolved dict builds it again


def test_top_level_budget_fields_apply_to_every_stage_section_that_does_not_set_them():
    cfg = build_config(TwoStageConfig, {"epochs": 27, "lr": 0.3, "score": {"epochs": 1}})
    assert (cfg.autoencoders.epochs, cfg.autoencoders.lr, cfg.autoencoders.batch_size) == (27, 0.3, 16)
    assert (cfg.score.epochs, cfg.score.lr) == (1, 0.3)
    assert build_config(TwoStageConfig, {}).autoencoders.epochs == 2  # the preset, when nothing is given


def test_a_run_id_is_stable_through_spec_json_and_the_spec_holds_stage_sections_as_tables(tmp_path):
    spec = RunSpec("test_staged", "synthetic", SYNTH, {"epochs": 3, "score.lr": 0.05}, 1)
    d = spec.to_dict()
    assert d["config"]["score"] == {"epochs": 3, "lr": 0.05, "batch_size": 8, "max_steps": 0, "reuse": ""}
    assert d["config"]["autoencoders"]["epochs"] == 3
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(d))
    again = RunSpec.load(path)
    assert again.run_id == spec.run_id and again.to_dict() == d
    same = RunSpec("test_staged", "synthetic", SYNTH, {"epochs": 3, "score": {"lr": 0.05, "epochs": 3}}, 1)
    assert same.run_id == spec.run_id


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"autoencoders": {"epoch": 5}}, r"TwoStageConfig\.autoencoders has no field 'epoch' \(did you mean 'epochs'"),
        ({"score.lrr": 1.0}, r"TwoStageConfig\.score has no field 'lrr'"),
        ({"score": {"lr": 0.0}}, r"TwoStageConfig\.score\.lr = 0\.0 is out of range"),
        ({"score": {"epochs": -1}}, r"TwoStageConfig\.score\.epochs = -1 is out of range"),
        ({"score": {"epochs": "many"}}, r"TwoStageConfig\.score\.epochs must be an integer"),
        ({"scor": {"epochs": 1}}, r"TwoStageConfig has no stage section 'scor' \(did you mean 'score'"),
        ({"score": 3}, r"TwoStageConfig\.score must be a table"),
    ],
)
def test_bad_stage_fields_are_refused_in_one_line_naming_them(overrides, message):
    with pytest.raises(MMBenchError, match=message) as exc:
        build_config(TwoStageConfig, overrides)
    assert "\n" not in str(exc.value)


def test_a_stage_section_for_a_model_without_stages_is_refused_in_one_line():
    from mmbench.registry import MODELS

    cls = MODELS.get("mopoe")
    for given in ({"autoencoders": {"epochs": 5}}, {"autoencoders.epochs": 5}):
        with pytest.raises(MMBenchError, match=r"MoPoE trains in one stage; 'autoencoders' is a stage section") as e:
            build_config(cls.Config, given)
        assert "test_staged" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MMBenchError, match="trains in one stage"):
        RunSpec("mopoe", "synthetic", SYNTH, {"score.lr": 0.1}).validate()


def test_the_sweep_grammar_delivers_stage_sections():
    doc = {
        "sweep": {"name": "s", "models": ["test_staged"]},
        "dataset": {"name": "synthetic", **SYNTH},
        "config": {"epochs": 1, "test_staged": {"autoencoders": {"epochs": 4}}},
        "grid": {"score.lr": [0.1, 0.2]},
    }
    sweep = sweep_from_doc(doc, "test", ["config.test_staged.score.batch_size=4"])
    configs = [build_config(TwoStageConfig, s.config) for s in sweep.specs]
    assert [c.score.lr for c in configs] == [0.1, 0.2]
    assert {(c.autoencoders.epochs, c.score.epochs, c.score.batch_size) for c in configs} == {(4, 1, 4)}
    shared = sweep_from_doc(doc, "test", ["config.score.epochs=7"])  # a stage section for every model
    assert {build_config(TwoStageConfig, s.config).score.epochs for s in shared.specs} == {7}
    (one,) = train_sweep(
        "test_staged", "synthetic", None, 0, 0, [], ["score.lr=0.3", "config.score.epochs=5"], {}
    ).specs
    assert build_config(TwoStageConfig, one.config).score == StageConfig(epochs=5, lr=0.3, batch_size=8)
    cli = apply_to_sweep({"config": {"test_staged": {"score": {"lr": 1.0}}}}, parse_overrides(["config.score.lr=2"]))
    assert cli.doc["config"]["score.lr"] == 2 and "lr" not in cli.doc["config"]["test_staged"]["score"]


def test_show_config_prints_stage_sections_field_by_field():
    _, fields = config_fields("test_staged", {"score.lr": 0.5})
    text = fields_as_text("test_staged", fields)
    assert "autoencoders.epochs" in text and "score.lr" in text and "0.01 -> 0.5" in text
    toml = fields_as_toml("config.test_staged", "test_staged", fields)
    assert "[config.test_staged.score]" in toml and "\nlr = 0.5" in toml
    epochs = next(f for f in fields if f.name == "epochs")
    assert "each stage section that does not set" in epochs.meaning


# -- training ------------------------------------------------------------------------------------------------


def test_stages_train_in_order_each_with_its_budget_and_only_its_modules():
    data = tiny_dataset(40, shapes=((4,), (3,)))  # stage one: batches of 16, 16, 8; stage two: 5 batches of 8
    STEPS.clear()
    model, result = _train(data)
    assert result.stages == [
        {"name": "autoencoders", "steps": 6, "epochs": 2, "seconds": result.stages[0]["seconds"], "reused": None},
        {"name": "score", "steps": 10, "epochs": 2, "seconds": result.stages[1]["seconds"], "reused": None},
    ]
    assert dict(STEPS) == {"autoencoders": 6, "score": 10} and result.steps == 16 and result.epochs == 4
    assert [(h["stage"], h["epoch"], h["steps"]) for h in result.history] == [
        ("autoencoders", 1, 3),
        ("autoencoders", 2, 6),
        ("score", 1, 11),
        ("score", 2, 16),
    ]
    assert all(p.requires_grad for p in model.parameters())  # frozen only while another stage trains
    # the second stage changes only its own modules; the first does not depend on the second's budget
    first_only, _ = _train(data, score={"epochs": 0})
    assert all(torch.equal(v, first_only.state_dict()[k]) for k, v in model.state_dict().items() if "score" not in k)
    assert not torch.equal(model.score[0].weight, first_only.score[0].weight)
    assert not torch.equal(model.latent_scale, torch.ones_like(model.latent_scale))  # end_stage ran


@pytest.mark.parametrize(
    "crash",
    [("autoencoders", 3), ("score", 0), ("score", 5)],
    ids=["mid-stage-one", "at-the-boundary", "mid-stage-two"],
)
def test_a_run_stopped_anywhere_resumes_bit_identical_to_an_uninterrupted_one(tmp_path, crash):
    data = tiny_dataset(40, shapes=((4,), (3,)))
    straight, done = _train(data, tmp_path / "a" / "c.pt")
    with pytest.raises(Crash):
        _train(data, tmp_path / "b" / "c.pt", crash=crash)
    stopped = load_checkpoint(tmp_path / "b" / "c.pt")["stage"]
    if crash == ("score", 0):
        assert stopped["name"] == "autoencoders" and stopped["done"]  # the boundary checkpoint, after end_stage
    else:
        assert stopped["name"] == crash[0] and not stopped["done"]
    resumed, again = _train(data, tmp_path / "b" / "c.pt")
    assert _same(straight, resumed)
    assert again.history == done.history and again.steps == done.steps and again.epochs == done.epochs
    assert [(c["name"], c["steps"], c["epochs"]) for c in again.stages] == [
        (c["name"], c["steps"], c["epochs"]) for c in done.stages
    ]
    logs = [[json.loads(ln) for ln in (tmp_path / r / "train_log.jsonl").read_text().splitlines()] for r in "ab"]
    assert [(e["step"], e["stage"]) for e in logs[1]] == [(e["step"], e["stage"]) for e in logs[0]]
    assert [(e["step"], e["stage"]) for e in logs[0]] == [(6, "autoencoders"), (16, "score")]  # a line at each end


def test_a_checkpoint_without_a_stage_entry_resumes_as_stage_one(tmp_path):
    data = tiny_dataset(40, shapes=((4,), (3,)))
    straight, _ = _train(data, tmp_path / "a" / "c.pt")
    with pytest.raises(Crash):
        _train(data, tmp_path / "b" / "c.pt", crash=("autoencoders", 3))
    payload = load_checkpoint(tmp_path / "b" / "c.pt")
    del payload["stage"]  # as an older trainer wrote it
    save_checkpoint(tmp_path / "b" / "c.pt", payload)
    resumed, _ = _train(data, tmp_path / "b" / "c.pt")
    assert _same(straight, resumed)


# -- reuse across runs ---------------------------------------------------------------------------------------


def _spec(config=None, seed=0):
    return RunSpec("test_staged", "synthetic", SYNTH, {"latent_dim": 3, **(config or {})}, seed, ())


def _execute(spec, runs):
    return execute(spec, runs, options=OPTIONS, progress=False, log=lambda *_: None)


def test_runs_that_differ_only_in_the_score_stage_train_the_autoencoders_once(tmp_path):
    STEPS.clear()
    records = [_execute(_spec({"score.lr": lr}), tmp_path) for lr in (1e-2, 5e-3, 2e-3)]
    stored = sorted((tmp_path / STAGES_DIR).iterdir())
    assert len(stored) == 1 and STEPS["autoencoders"] == 6 and STEPS["score"] == 30
    result_id = stored[0].name
    info = json.loads((stored[0] / "stage.json").read_text())
    assert info["run_id"] == records[0].run_id and info["key"]["stage_config"]["epochs"] == 2
    assert [r.stages[0]["reused"] for r in records] == [None, result_id, result_id]
    assert [r.stages[0]["steps"] for r in records] == [6, 0, 0] and all(r.stages[1]["steps"] == 10 for r in records)
    assert records[0].stages[0]["seconds"] > 0 and records[0].schema == SCHEMA
    # the same latents' standardisation and autoencoders: loaded, not trained again
    a = load_checkpoint(tmp_path / records[0].run_id / "checkpoint.pt")["state_dict"]
    b = load_checkpoint(tmp_path / records[2].run_id / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("score"))
    # another seed, or reuse = "off", trains it again
    _execute(_spec({"score.lr": 1e-2}, seed=1), tmp_path)
    off = _execute(_spec({"score.lr": 1e-2, "autoencoders.reuse": "off"}), tmp_path)
    assert STEPS["autoencoders"] == 18 and off.stages[0]["reused"] is None
    assert len(list((tmp_path / STAGES_DIR).iterdir())) == 2
    # an explicit id of a matching result is loaded
    pinned = _execute(_spec({"score.lr": 3e-3, "autoencoders.reuse": result_id}), tmp_path)
    assert pinned.stages[0]["reused"] == result_id and STEPS["autoencoders"] == 18


def test_an_explicit_reuse_id_that_is_missing_or_of_another_key_is_refused_before_the_run_starts(tmp_path):
    first = _execute(_spec(), tmp_path)
    result_id = first.stages[0]["reused"] or next((tmp_path / STAGES_DIR).iterdir()).name
    missing = _spec({"autoencoders.reuse": "autoencoders-000000000000"})
    with pytest.raises(
        MMBenchError, match=r"reuse = 'autoencoders-000000000000' names no stored stage result.*" + result_id
    ) as e:
        _execute(missing, tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / missing.run_id).exists()
    other = _spec({"autoencoders": {"epochs": 3, "reuse": result_id}})
    with pytest.raises(MMBenchError, match=r"was trained with stage_config\.epochs = 2 but this run has .*= 3") as e:
        _execute(other, tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / other.run_id).exists()
    with pytest.raises(MMBenchError, match=r"stage 'score' of 'test_staged' is not reusable"):
        _spec({"score.reuse": result_id}).validate()


# -- the record ----------------------------------------------------------------------------------------------


def test_a_record_carries_the_stage_costs_and_older_records_migrate(tmp_path):
    rec = record("staged", schema=SCHEMA)
    rec["stages"] = [
        {"name": "autoencoders", "steps": 0, "epochs": 0, "seconds": 0.0, "reused": "autoencoders-0123456789ab"},
        {"name": "score", "steps": 10, "epochs": 2, "seconds": 1.5, "reused": None},
    ]
    typed = RunRecord.from_dict(rec, "r")
    assert typed.stages[1]["steps"] == 10 and RunRecord.from_dict(typed.to_dict(), "r") == typed
    old = record("old", schema=3)
    assert migrate_3_to_4(old) == {**old, "schema": 4} and old["schema"] == 3
    path = tmp_path / "old" / "record.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old))
    assert load_record(path).stages is None and load_record(path).schema == SCHEMA
    for bad, message in (
        ({"name": "score", "steps": -1, "epochs": 0, "seconds": 0.0, "reused": None}, r"stages\[0\]\.steps' must be"),
        ({"name": "score", "steps": 1, "epochs": 0, "seconds": 0.0}, r"stages\[0\]\.reused' is missing"),
        ("score", r"stages\[0\]' must be a stage's cost"),
    ):
        with pytest.raises(MMBenchError, match=message):
            RunRecord.from_dict({**rec, "stages": [bad]}, "r")


def test_runs_of_one_stage_key_started_at_once_train_it_once(tmp_path):
    """Three runs that share their autoencoders start together (as a SLURM array would): one trains the stage while
    the others wait for its claim and load what it published."""
    ctx = forkserver()
    go, results, errors = ctx.Event(), ctx.Queue(), ctx.Queue()
    rates = (1e-2, 5e-3, 2e-3)
    procs = [ctx.Process(target=train_shared_stage, args=(tmp_path, lr, go, results, errors)) for lr in rates]
    try:
        for p in procs:
            p.start()
        go.set()
        done, deadline = [], time.monotonic() + 180
        while len(done) < len(procs) and errors.empty() and time.monotonic() < deadline:
            try:  # drained before joining: a child exits only once its queued result is read
                done.append(results.get(timeout=1))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
        for p in procs:
            p.join(60)
        assert errors.empty(), errors.get()
        assert len(done) == len(procs) and all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
    stored = [p.name for p in (tmp_path / STAGES_DIR).iterdir()]
    assert len(stored) == 1 and not list((tmp_path / STAGES_DIR / stored[0]).glob("lock*"))
    assert sorted(reused or "trained" for _, reused, _ in done) == [stored[0], stored[0], "trained"]
    waited = [line for _, reused, lines in done for line in lines if "waiting for" in line]
    assert waited and all(stored[0] in line and "it is loaded once published" in line for line in waited)


def test_a_run_resumed_inside_its_reusable_stage_takes_its_claim_back_and_releases_it(tmp_path, monkeypatch):
    """Killed inside the autoencoders stage, its claim left behind (stale: a dead process of this host); resumed,
    it holds the claim again while it trains (no other run starts the stage meanwhile) and releases it on publish."""
    spec = _spec({"score.lr": 1e-2})
    monkeypatch.setattr(TwoStage, "begin_step", lambda self, step, per_epoch: crash_if(self, step, ("autoencoders", 3)))
    with pytest.raises(Crash):
        _execute(spec, tmp_path)
    (folder,) = (tmp_path / STAGES_DIR).iterdir()
    assert not (folder / LOCK).exists()  # released when the run ended, however it ended
    dead = {"owner": f"{socket.gethostname()}:999999999", "host": socket.gethostname(), "pid": 999999999}
    (folder / LOCK).write_text(json.dumps({**dead, "heartbeat": time.time()}))  # as a SIGKILL leaves it
    holders = []
    monkeypatch.setattr(
        TwoStage, "begin_step", lambda self, step, per_epoch: holders.append((self.active_stage, read_lock(folder)))
    )
    done = _execute(spec, tmp_path)
    assert done.stages[0]["reused"] is None and not (folder / LOCK).exists() and (folder / "stage.json").is_file()
    stage_one = [lock for name, lock in holders if name == "autoencoders"]
    assert stage_one and all(lock["owner"] == owner_id() for lock in stage_one)


def test_time_spent_waiting_for_another_jobs_stage_is_not_training_time():
    clock = _Clock()
    with clock.stopped():
        time.sleep(0.3)
    with clock.paused(torch.device("cpu")) as trained:
        assert trained < 0.3 and clock.seconds == trained

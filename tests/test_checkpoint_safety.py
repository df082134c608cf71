"""Checkpoints load with ``torch.load(weights_only=True)``: a file crafted to run code when unpickled is refused by
every load (and by ``mmbench eval``/``samples`` on its run folder) without running; an older checkpoint is refused
with the command that converts it, and ``mmbench checkpoint convert RUN --trust`` makes it load."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re

import pytest
import torch
from helpers import tiny_dataset

from diffmvae.prior import ScorePrior, ScorePriorConfig
from mmbench.cli import main
from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.metrics.classifier import classifiers_for
from mmbench.registry import MODELS
from mmbench.storage.checkpoint import (
    UnsafeCheckpointError,
    convert_checkpoint,
    encode_checkpoint,
    load_checkpoint,
    load_model,
    model_payload,
    previous_path,
    save_checkpoint,
    save_model,
)
from mmbench.storage.provenance import provenance
from mmbench.training.options import RunOptions

SMALL = {"latent_dim": 8, "batch_size": 16, "epochs": 1}


class RunsCode:
    """Unpickled, writes ``marker``: what a checkpoint planted in a shared runs folder could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class Opaque:
    """A class of some script's: no dataclass, no safe form."""


def _model():
    cls = MODELS.get("mopoe")
    torch.manual_seed(0)
    return cls(tiny_dataset(8).modalities, build_config(cls.Config, SMALL))


def _run_folder(tmp_path, name="mopoe-0123456789ab"):
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps({"model": "mopoe", "dataset": "synthetic", "config": SMALL}))
    return run


def _plant(path, marker):
    """A checkpoint framed as mmbench frames one (header, right sha256) whose payload runs code when unpickled."""
    payload = {**model_payload(_model()), "provenance": RunsCode(marker)}
    path.write_bytes(encode_checkpoint(payload))


def _write_old(path, payload):
    """``payload`` framed as a save frames it, without the check a save now makes: as an older mmbench wrote it."""
    previous = path.read_bytes() if path.is_file() else None
    path.write_bytes(encode_checkpoint(payload))
    if previous is not None:
        previous_path(path).write_bytes(previous)


def _old_payload(model):
    """A payload as an older mmbench wrote it: torch's version as a TorchVersion, run options as a dataclass."""
    payload = model_payload(model, {"options": RunOptions(checkpoint_every=7)})
    payload["provenance"] = {**payload["provenance"], "torch": torch.__version__}
    return payload


def test_a_save_refuses_what_would_not_load_safely_and_writes_nothing(tmp_path):
    for bad, where in (
        ({"config": RunOptions()}, "payload['config'] (mmbench.training.options.RunOptions)"),
        (
            {"provenance": {"torch": torch.__version__}},
            "payload['provenance']['torch'] (torch.torch_version.TorchVersion)",
        ),
        ({"steps": [1, Opaque()]}, "payload['steps'][1] (test_checkpoint_safety.Opaque)"),
    ):
        with pytest.raises(MMBenchError, match=re.escape(where) + " would need a full unpickling"):
            save_checkpoint(tmp_path / "c.pt", bad)
    assert list(tmp_path.iterdir()) == []


def test_every_payload_mmbench_writes_loads_weights_only(tmp_path):
    assert all(type(v) is str for v in provenance().values())
    save_model(tmp_path / "model.pt", _model())
    ScorePrior(8, ScorePriorConfig(steps=1)).save(tmp_path / "prior.pt")
    data = tiny_dataset(40)
    classifiers_for(data, data, tmp_path / "clf", epochs=1, min_accuracy=0.0, progress=False, log=lambda s: None)
    files = [tmp_path / "model.pt", tmp_path / "prior.pt", *(tmp_path / "clf").glob("*.pt")]
    assert len(files) == 2 + len(data.modality_names)
    for path in files:
        body = path.read_bytes().split(b"\n", 1)[1]
        assert isinstance(torch.load(io.BytesIO(body), weights_only=True), dict)
    # the trainer's payload (model + optimiser + train state) is checked by test_checkpoint's resume tests


@pytest.mark.parametrize("loader", ["load_checkpoint", "load_model", "ScorePrior.load"])
def test_a_checkpoint_made_to_run_code_is_refused_without_running_it(tmp_path, loader):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "ran"
    _plant(path, marker)
    load = {"load_checkpoint": load_checkpoint, "load_model": load_model, "ScorePrior.load": ScorePrior.load}[loader]
    with pytest.raises(UnsafeCheckpointError) as refusal:
        load(path)
    message = str(refusal.value)
    assert "\n" not in message and "holds exec" in message
    assert f"mmbench checkpoint convert {tmp_path} --trust" in message
    assert not marker.exists()
    save_checkpoint(path, {"step": 1}, keep_previous=True)  # a good latest over it: the planted one is now previous
    path.write_bytes(path.read_bytes()[:-3])  # ... and the latest corrupt: the fallback refuses it as well
    with pytest.raises(MMBenchError, match="previous one cannot be loaded either"), pytest.warns(UserWarning):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(io.BytesIO(previous_path(path).read_bytes().split(b"\n", 1)[1]), weights_only=False)
    assert marker.exists()  # the payload is real: a full unpickling runs it


@pytest.mark.parametrize("command", [["eval"], ["samples"], ["prior", "fit"]])
def test_eval_and_samples_refuse_a_run_whose_checkpoint_runs_code(tmp_path, capsys, command):
    run, marker = _run_folder(tmp_path), tmp_path / "ran"
    _plant(run / "checkpoint.pt", marker)
    (run / "record.json").write_text("{}")
    assert main([*command, str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mmbench checkpoint convert" in err
    assert not marker.exists()


def test_an_old_checkpoint_is_refused_with_the_hint_and_converts_with_trust(tmp_path, capsys):
    model = _model()
    run = _run_folder(tmp_path)
    _write_old(run / "checkpoint.pt", _old_payload(model))
    _write_old(run / "checkpoint.pt", _old_payload(model))  # an older save as previous
    prior = ScorePrior(8, ScorePriorConfig(steps=1))
    _write_old(
        run / "prior-score.pt",
        {"latent_dim": 8, "config": ScorePriorConfig(steps=1), "state_dict": prior.state_dict()},
    )
    original = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(UnsafeCheckpointError, match=r"RunOptions.*mmbench checkpoint convert .* --trust"):
        load_model(run / "checkpoint.pt")
    with pytest.raises(UnsafeCheckpointError, match="ScorePriorConfig"):
        ScorePrior.load(run / "prior-score.pt")

    assert main(["checkpoint", "convert", str(run)]) == 2  # without --trust: refused, nothing touched
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust" in err
    assert (run / "checkpoint.pt").read_bytes() == original
    with pytest.raises(MMBenchError, match="--trust"):
        convert_checkpoint(run / "checkpoint.pt", trust=False)

    assert main(["checkpoint", "convert", "mopoe-0123", "--runs", str(run.parent), "--trust"]) == 0  # a run id
    out = capsys.readouterr().out
    assert "converted" in out and "checkpoint.pt" in out and "prior-score.pt" in out
    loaded, payload = load_model(run / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert type(payload["provenance"]["torch"]) is str and payload["provenance"]["torch"] == str(torch.__version__)
    assert payload["options"] == dataclasses.asdict(RunOptions(checkpoint_every=7))
    assert previous_path(run / "checkpoint.pt").read_bytes() == original  # the original kept, as a save keeps it
    assert torch.equal(ScorePrior.load(run / "prior-score.pt").mean, prior.mean)

    assert main(["checkpoint", "convert", str(run), "--trust"]) == 0  # again: nothing left to do
    assert "already loads safely" in capsys.readouterr().out
    assert not convert_checkpoint(run / "checkpoint.pt", trust=True)


def test_a_checkpoint_of_the_older_sha256_layout_converts(tmp_path):
    path = tmp_path / "old.pt"
    buf = io.BytesIO()
    torch.save({"step": 3, "options": RunOptions(checkpoint_every=3)}, buf)
    path.write_bytes(buf.getvalue())
    (tmp_path / "old.pt.sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest())
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert convert_checkpoint(path, trust=True)
    assert load_checkpoint(path) == {"step": 3, "options": dataclasses.asdict(RunOptions(checkpoint_every=3))}
    assert previous_path(path).read_bytes() == buf.getvalue() and (tmp_path / "old.prev.pt.sha256").is_file()


def test_convert_runs_a_planted_file_only_with_trust_and_refuses_what_has_no_safe_form(tmp_path, capsys):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "ran"
    _plant(path, marker)
    assert main(["checkpoint", "convert", str(tmp_path)]) == 2 and not marker.exists()
    # with --trust the owner vouched for the file: it is unpickled in full (here the marker is written); exec returns
    # None, which has a safe form, so the planted entry is gone from the converted file
    assert main(["checkpoint", "convert", str(path), "--trust"]) == 0 and marker.exists()
    assert load_checkpoint(path)["provenance"] is None

    _write_old(path, {"step": 1, "extra": {"thing": Opaque()}})
    before = path.read_bytes()
    assert main(["checkpoint", "convert", str(tmp_path), "--trust"]) == 2
    err = capsys.readouterr().err
    assert "['extra']['thing'] is a test_checkpoint_safety.Opaque, which has no safe form" in err
    assert path.read_bytes() == before


def test_a_checkpoint_of_earlier_mmbench_loads_as_it_is(tmp_path):
    """Every earlier mmbench kept torch's version as a TorchVersion in the provenance: allowed, so old runs resume
    without a conversion (nothing else of that layout needs a full unpickling)."""
    model = _model()
    payload = model_payload(model)
    payload["provenance"] = {**payload["provenance"], "torch": torch.__version__}
    _write_old(tmp_path / "checkpoint.pt", payload)
    loaded, back = load_model(tmp_path / "checkpoint.pt")
    assert back["provenance"]["torch"] == str(torch.__version__)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))

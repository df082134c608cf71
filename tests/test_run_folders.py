"""A corpus of malformed run folders against every command that reads one: ``eval``, ``samples``, ``prior fit``,
resuming in ``train`` and ``sweep submit``, ``sweep logs`` (exit status 2, one line ``mmbench: error: ...`` naming
the file), ``report`` and ``sweep status`` (exit status 0, the bad folder named, the rest shown). One real run is
trained once; each case copies it and breaks one file. Also: the benchmark scripts on a fresh --out folder."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from mmbench.cli import main
from mmbench.storage.checkpoint import encode_checkpoint, load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SWEEP = """[sweep]
name = "corpus"
models = ["mopoe"]
[dataset]
name = "polymnist"
root = "{root}"
[config]
max_steps = 2
latent_dim = 8
[evaluate]
metrics = ["probe"]
[evaluate.probe]
max_train = 50
"""


def train_argv(root: Path, runs: Path) -> list[str]:
    return [
        "train",
        "--model",
        "mopoe",
        "--data-root",
        str(root),
        "--set",
        "config.max_steps=2",
        "--set",
        "config.latent_dim=8",
        "--metrics",
        "probe",
        "--set",
        "evaluate.probe.max_train=50",
        "--runs",
        str(runs),
        "--no-progress",
    ]


@dataclass(frozen=True)
class Trained:
    """The one run every case copies, its data, and a sweep file whose one run is it."""

    run: Path
    root: Path
    sweep_text: str
    payload: dict  # its checkpoint's entries


@pytest.fixture(scope="session")
def trained(tmp_path_factory, polymnist_pt) -> Trained:
    runs = tmp_path_factory.mktemp("corpus") / "runs"
    assert main(train_argv(polymnist_pt, runs)) == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return Trained(run, polymnist_pt, SWEEP.format(root=polymnist_pt), load_checkpoint(run / "checkpoint.pt"))


# -- breaking one file -------------------------------------------------------------------------------------


def put(run: Path, name: str, content: Any) -> None:
    """Replace RUN/name (the copies share the checkpoint's bytes through a hard link: unlink, never write into it)."""
    path = run / name
    path.unlink(missing_ok=True)
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def edit(name: str, change: Callable[[dict], Any]) -> Callable[[Path, Trained], None]:
    """Break RUN/name by changing its parsed JSON (``change`` edits it in place, or returns what to write)."""

    def breaker(run: Path, t: Trained) -> None:
        d = json.loads((run / name).read_text())
        out = change(d)
        put(run, name, d if out is None else out)

    return breaker


def write(name: str, content: Any) -> Callable[[Path, Trained], None]:
    return lambda run, t: put(run, name, content)


def truncate(name: str) -> Callable[[Path, Trained], None]:
    def breaker(run: Path, t: Trained) -> None:
        data = (run / name).read_bytes()
        put(run, name, data[: len(data) // 2])

    return breaker


def checkpoint(change: Callable[[dict], Any]) -> Callable[[Path, Trained], None]:
    """A checkpoint with a good header whose entries ``change`` alters (edits a copy, or returns a payload)."""

    def breaker(run: Path, t: Trained) -> None:
        payload = {**t.payload, "state_dict": dict(t.payload["state_dict"])}
        out = change(payload)
        put(run, "checkpoint.pt", encode_checkpoint(payload if out is None else out))

    return breaker


def set_key(key: str, value: Any) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def drop(key: str) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        del d[key]

    return change


def drop_a_weight(payload: dict) -> None:
    payload["state_dict"].pop(next(iter(payload["state_dict"])))


def partial(breaker: Callable[[Path, Trained], None]) -> Callable[[Path, Trained], None]:
    """A run killed after its checkpoint (no record: train and submit resume it), then ``breaker``."""

    def both(run: Path, t: Trained) -> None:
        (run / "record.json").unlink()
        breaker(run, t)

    return both


GARBAGE = bytes(range(256)) * 8 + b"\x00\xff" * 100
DATA_ROOT = object()  # a spec field set to the data's folder when the case runs


# -- the corpus ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    command: str  # eval | samples | prior | train | submit | submit-local | dry-run | logs | status | report
    breaker: Callable[[Path, Trained], None]
    file: str  # the file the refusal must name
    says: str = ""  # and a word of why


CASES = {
    # spec.json
    "samples: spec {}": Case("samples", write("spec.json", "{}"), "spec.json", "'model' is missing"),
    "eval: spec {}": Case("eval", write("spec.json", "{}"), "spec.json", "'model' is missing"),
    "prior fit: spec {}": Case("prior", write("spec.json", "{}"), "spec.json", "'model' is missing"),
    "samples: spec empty": Case("samples", write("spec.json", b""), "spec.json", "empty"),
    "samples: spec binary": Case("samples", write("spec.json", GARBAGE), "spec.json", "not valid JSON"),
    "eval: spec truncated": Case("eval", truncate("spec.json"), "spec.json", "not valid JSON"),
    "prior fit: spec a list": Case("prior", write("spec.json", [1, 2]), "spec.json", "JSON object, got list"),
    "eval: spec model a number": Case("eval", edit("spec.json", set_key("model", 3)), "spec.json", "'model'"),
    "samples: spec seed a string": Case("samples", edit("spec.json", set_key("seed", "0")), "spec.json", "'seed'"),
    "samples: spec metrics a string": Case(
        "samples", edit("spec.json", set_key("metrics", "probe")), "spec.json", "'metrics'"
    ),
    "eval: spec config a list": Case("eval", edit("spec.json", set_key("config", [])), "spec.json", "'config'"),
    "samples: spec of a model not installed": Case(
        "samples", edit("spec.json", set_key("model", "nosuchvae")), "spec.json", "'model'"
    ),
    "eval: spec of a dataset not installed": Case(
        "eval", edit("spec.json", set_key("dataset", "nosuchdata")), "spec.json", "'dataset'"
    ),
    "samples: spec of another model": Case(
        "samples", edit("spec.json", set_key("model", "mvae")), "spec.json", "two runs' files"
    ),
    "samples: spec of another dataset": Case(
        "samples",
        edit("spec.json", lambda d: {**d, "dataset": "synthetic", "dataset_options": {}}),
        "spec.json",
        "'dataset'",
    ),
    "samples: spec with other dataset options": Case(
        "samples",
        edit("spec.json", lambda d: {**d, "dataset_options": {**d["dataset_options"], "modalities": 2}}),
        "spec.json",
        "'dataset'",
    ),
    "eval: spec of a newer schema": Case("eval", edit("spec.json", set_key("schema", 2)), "spec.json", "'schema'"),
    "samples: no spec": Case("samples", lambda run, t: (run / "spec.json").unlink(), "spec.json", "not a run folder"),
    # record.json
    "eval: record {}": Case("eval", write("record.json", "{}"), "record.json", "missing"),
    "prior fit: record binary": Case("prior", write("record.json", GARBAGE), "record.json", "not valid JSON"),
    "eval: record of a newer schema": Case(
        "eval", edit("record.json", set_key("schema", 99)), "record.json", "schema 99"
    ),
    "eval: record truncated": Case("eval", truncate("record.json"), "record.json", "not valid JSON"),
    "eval: record metrics wrong type": Case(
        "eval", edit("record.json", set_key("metrics", {})), "record.json", "'metrics'"
    ),
    "eval: record of another run": Case(
        "eval", edit("record.json", lambda d: d["spec"].__setitem__("seed", 7)), "record.json", "different runs"
    ),
    "prior fit: spec of another seed than its record": Case(
        "prior", edit("spec.json", set_key("seed", 7)), "spec.json", "different runs"
    ),
    "prior fit: no record": Case("prior", lambda run, t: (run / "record.json").unlink(), "record", "no record"),
    # checkpoint.pt
    "samples: checkpoint truncated": Case("samples", truncate("checkpoint.pt"), "checkpoint.pt", "corrupt"),
    "eval: checkpoint empty": Case("eval", write("checkpoint.pt", b""), "checkpoint.pt", "empty"),
    "samples: checkpoint garbage": Case("samples", write("checkpoint.pt", GARBAGE), "checkpoint.pt", "corrupt"),
    "samples: checkpoint of a newer format": Case(
        "samples",
        write("checkpoint.pt", b"MMBENCH-CHECKPOINT 2 sha256=00\n" + GARBAGE),
        "checkpoint.pt",
        "newer mmbench",
    ),
    "prior fit: checkpoint entries {}": Case("prior", checkpoint(lambda p: {}), "checkpoint.pt", "'model'"),
    "samples: checkpoint holding a list": Case(
        "samples", checkpoint(lambda p: [1, 2]), "checkpoint.pt", "dict of entries, got list"
    ),
    "eval: checkpoint missing a weight": Case("eval", checkpoint(drop_a_weight), "checkpoint.pt", "'state_dict'"),
    "samples: checkpoint of another model": Case(
        "samples", checkpoint(set_key("model", "mvae")), "checkpoint.pt", "'config'"
    ),
    "samples: checkpoint modalities a dict": Case(
        "samples", checkpoint(set_key("modalities", {})), "checkpoint.pt", "'modalities'"
    ),
    "eval: prior file garbage": Case("eval", write("prior-score.pt", GARBAGE), "prior-score.pt", "corrupt"),
    # resuming in train
    "train: record binary": Case("train", write("record.json", GARBAGE), "record.json", "not valid JSON"),
    "train: checkpoint truncated": Case("train", partial(truncate("checkpoint.pt")), "checkpoint.pt", "corrupt"),
    "train: model-only checkpoint": Case(
        "train", partial(checkpoint(drop("optimizer"))), "checkpoint.pt", "'optimizer' is missing"
    ),
    "train: checkpoint of another model": Case(
        "train", partial(checkpoint(set_key("model", "mvae"))), "checkpoint.pt", "another run's checkpoint"
    ),
    "train: checkpoint steps a string": Case(
        "train", partial(checkpoint(set_key("steps", "2"))), "checkpoint.pt", "'steps'"
    ),
    "train: train log binary": Case("train", partial(write("train_log.jsonl", GARBAGE)), "train_log.jsonl", "text"),
    "train: train log line a list": Case(
        "train", partial(write("train_log.jsonl", "[1, 2]\n")), "train_log.jsonl", "line 1"
    ),
    "train: train log step a string": Case(
        "train", partial(write("train_log.jsonl", '{"step": "two"}\n')), "train_log.jsonl", "'step'"
    ),
    "train: train log {}": Case("train", partial(write("train_log.jsonl", "{}\n")), "train_log.jsonl", "'step'"),
    "train: train log bad middle line": Case(
        "train", partial(write("train_log.jsonl", '{"step": 1}\n{"st\n{"step": 2}\n')), "train_log.jsonl", "line 2"
    ),
    "train: lock {}": Case("train", partial(write("lock.json", "{}")), "lock.json", "'owner' is missing"),
    "train: lock heartbeat a string": Case(
        "train",
        partial(write("lock.json", {"owner": "x:1", "host": "x", "pid": 1, "heartbeat": "now"})),
        "lock.json",
        "'heartbeat'",
    ),
    "train: executions garbage": Case(
        "train", partial(write("executions.jsonl", GARBAGE)), "executions.jsonl", "not JSON lines"
    ),
    "train: executions from_step wrong type": Case(
        "train",
        partial(write("executions.jsonl", '{"owner": "x", "from_step": "0"}\n')),
        "executions.jsonl",
        "'from_step'",
    ),
    # sweep submit (inline, local, dry run)
    "sweep submit: checkpoint truncated": Case("submit", partial(truncate("checkpoint.pt")), "checkpoint.pt"),
    "sweep submit: lock binary": Case("submit", partial(write("lock.json", GARBAGE)), "lock.json", "corrupt"),
    "sweep submit: record {}": Case("submit", write("record.json", "{}"), "record.json", "missing"),
    "sweep submit --executor local: record binary": Case(
        "submit-local", write("record.json", GARBAGE), "record.json", "not valid JSON"
    ),
    "sweep submit --executor local: jobs a list": Case(
        "submit-local", write("../.sweeps/corpus/jobs.json", "[]"), "jobs.json", "JSON object"
    ),
    "sweep submit --dry-run: lock a list": Case(
        "dry-run", partial(write("lock.json", "[]")), "lock.json", "not an mmbench run lock"
    ),
    # sweep logs
    "sweep logs: jobs a list": Case("logs", write("../.sweeps/corpus/jobs.json", "[]"), "jobs.json", "JSON object"),
    "sweep logs: jobs binary": Case("logs", write("../.sweeps/corpus/jobs.json", GARBAGE), "jobs.json", "JSON"),
    "sweep logs: jobs empty": Case("logs", write("../.sweeps/corpus/jobs.json", b""), "jobs.json", "empty"),
    "sweep logs: job id a number": Case(
        "logs", write("../.sweeps/corpus/jobs.json", {"RUN": {"job_id": 1, "executor": "local"}}), "jobs.json", "job_id"
    ),
    "sweep logs: entry without executor": Case(
        "logs", write("../.sweeps/corpus/jobs.json", {"RUN": {"job_id": "1"}}), "jobs.json", "executor"
    ),
    # sweep status: exit 0, the bad folder named
    "sweep status: record binary": Case("status", write("record.json", GARBAGE), "record.json", "not valid JSON"),
    "sweep status: record {}": Case("status", write("record.json", "{}"), "record.json", "missing"),
    "sweep status: record of a newer schema": Case(
        "status", edit("record.json", set_key("schema", 99)), "record.json", "schema 99"
    ),
    "sweep status: lock pid a string": Case(
        "status",
        partial(write("lock.json", {"owner": "x:1", "host": "x", "pid": "1", "heartbeat": 0})),
        "lock.json",
        "'pid'",
    ),
    "sweep status: jobs binary": Case("status", write("../.sweeps/corpus/jobs.json", GARBAGE), "jobs.json", "JSON"),
    "sweep status: jobs entry a string": Case(
        "status", write("../.sweeps/corpus/jobs.json", {"RUN": "1"}), "jobs.json", "must be an object"
    ),
    # report: exit 0, the bad folder named
    "report: record binary": Case("report", write("record.json", GARBAGE), "record.json", "not valid JSON"),
    "report: record truncated": Case("report", truncate("record.json"), "record.json", "not valid JSON"),
    "report: record of a newer schema": Case(
        "report", edit("record.json", set_key("schema", 99)), "record.json", "schema 99"
    ),
    "report: spec {} (its sample grid)": Case("report", write("spec.json", "{}"), "spec.json", "'model' is missing"),
    "report: checkpoint garbage (its sample grid)": Case(
        "report", write("checkpoint.pt", GARBAGE), "checkpoint.pt", "corrupt"
    ),
    "report: checkpoint of another model (its sample grid)": Case(
        "report", checkpoint(set_key("model", "mvae")), "checkpoint.pt", "'config'"
    ),
}


def copy_run(t: Trained, runs: Path) -> Path:
    """A copy of the trained run under ``runs``: checkpoints hard-linked (never written in place), the rest copied."""

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".pt"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    return Path(shutil.copytree(t.run, runs / t.run.name, copy_function=link_or_copy))


def argv(command: str, t: Trained, run: Path, tmp: Path) -> list[str]:
    runs = run.parent
    sweep = tmp / "corpus.toml"
    sweep.write_text(t.sweep_text)
    return {
        "eval": lambda: (
            ["eval", str(run), "--device", "cpu", "--no-progress"]
            + (["--prior", "score"] if (run / "prior-score.pt").exists() else [])
        ),
        "samples": lambda: ["samples", str(run), "--device", "cpu", "--out", str(tmp / "grid.png")],
        "prior": lambda: ["prior", "fit", str(run), "--device", "cpu", "--no-progress", "--set", "prior.steps=2"],
        "train": lambda: train_argv(t.root, runs),
        "submit": lambda: ["sweep", "submit", str(sweep), "--runs", str(runs), "--no-progress"],
        "submit-local": lambda: ["sweep", "submit", str(sweep), "--runs", str(runs), "--executor", "local"],
        "dry-run": lambda: ["sweep", "submit", str(sweep), "--runs", str(runs), "--dry-run"],
        "logs": lambda: ["sweep", "logs", str(sweep), "--runs", str(runs), run.name],
        "status": lambda: ["sweep", "status", str(sweep), "--runs", str(runs)],
        "report": lambda: ["report", "--runs", str(runs), "--out", str(tmp / "report"), "--no-published"],
    }[command]()


def test_the_corpus_is_large_and_covers_every_command():
    assert len(CASES) >= 30
    commands = {c.command for c in CASES.values()}
    assert commands == {"eval", "samples", "prior", "train", "submit", "submit-local", "dry-run"} | {
        "logs",
        "status",
        "report",
    }
    files = {Path(c.file).name for c in CASES.values()}
    assert {"spec.json", "record.json", "lock.json", "jobs.json", "checkpoint.pt"} <= files
    assert {"executions.jsonl", "train_log.jsonl"} <= files


@pytest.mark.parametrize("name", list(CASES))
def test_a_malformed_run_folder_is_one_line_naming_the_file(name, trained, tmp_path, capsys):
    case = CASES[name]
    runs = tmp_path / "runs"
    run = copy_run(trained, runs)
    (runs / ".sweeps" / "corpus").mkdir(parents=True)
    (runs / ".sweeps" / "corpus" / "jobs.json").write_text(
        json.dumps({run.name: {"job_id": "x1", "executor": "local", "submitted_at": "now", "model": "mopoe"}})
    )
    case.breaker(run, trained)
    for jobs in (runs / ".sweeps" / "corpus").glob("jobs.json"):  # a case's registry names the run as RUN
        jobs.write_bytes(jobs.read_bytes().replace(b'"RUN"', json.dumps(run.name).encode()))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}

    code = main(argv(case.command, trained, run, tmp_path))
    out, err = capsys.readouterr()

    assert "Traceback" not in out + err
    if case.command in ("status", "report"):
        assert code == 0, (out, err)
        in_run = case.file != "jobs.json"  # the sweep's registry is beside the runs, not in one
        named = [line for line in (out + err).splitlines() if case.file in line and (run.name in line or not in_run)]
        assert named, (out, err)
        assert case.says in named[0], named[0]
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mmbench: error: "), (code, out, err)
    assert case.file in lines[0] and case.says in lines[0], lines[0]
    assert "\n" not in lines[0]
    if case.command in ("train", "submit"):  # refused before anything was written: no failed record, no lock
        after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
        assert after == before


def test_the_trained_run_itself_is_read_by_every_command(trained, tmp_path, capsys):
    """The corpus's run, unbroken, passes every reader (the refusals above are the breakage, not the checks)."""
    runs = tmp_path / "runs"
    run = copy_run(trained, runs)
    assert main(argv("status", trained, run, tmp_path)) == 0
    assert "1 finished" in capsys.readouterr().out  # the sweep file's one run is the trained one
    assert main(argv("samples", trained, run, tmp_path)) == 0
    (run / "record.json").unlink()  # partial: train resumes it from its checkpoint and finishes it
    assert main(train_argv(trained.root, runs)) == 0
    out = capsys.readouterr().out
    assert f"resuming from {run / 'checkpoint.pt'}" in out and "finished" in out


# -- the benchmark scripts on a fresh --out folder ---------------------------------------------------------


def test_the_ablation_benchmark_prints_an_empty_table_on_a_fresh_out_folder(
    tmp_path, polymnist_pt, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    ablation = importlib.import_module("diffmvae_ablation")
    out = tmp_path / "fresh"
    (out / "data").mkdir(parents=True)
    (out / "data" / "polymnist3").symlink_to(polymnist_pt)  # the data is there; no run is
    assert ablation.main(["--out", str(out), "--table-only"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model | conditioning") and len(lines) == 2  # the header, no row yet
    assert (out / "runs").is_dir()


def test_torch_is_not_asked_to_unpickle_what_fails_its_sha256(tmp_path):
    """A truncated checkpoint is refused by its digest before torch reads a byte of it."""
    from mmbench.errors import MMBenchError

    path = tmp_path / "c.pt"
    path.write_bytes(encode_checkpoint({"x": torch.zeros(3)})[:-5])
    with pytest.raises(MMBenchError, match=r"checkpoint .*c.pt is corrupt"):
        load_checkpoint(path)

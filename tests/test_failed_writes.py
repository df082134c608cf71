"""Full disks and I/O errors: a write (of a checkpoint, the record, the training log, the executions log, the spec
or the lock) that fails at each stage of its save leaves the last good checkpoint loadable and unchanged, an earlier
record byte-identical and no temporary file; the run is partial (or pending) with the reason, the error is one line,
and the next submit resumes the run to the weights of an uninterrupted one.

The failure is injected in the storage modules' view of ``os`` and ``tempfile`` (``Disk``): the n-th call of one
system call on one file raises OSError(ENOSPC or EIO); a failing ``write`` first writes half its bytes, as a disk
that fills mid-write does."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import mmbench.runs.locks as locks
import mmbench.storage.atomic as atomic
from mmbench.cli import main
from mmbench.runs.execute import CHECKPOINT, execute, run_status, stop_reason
from mmbench.storage.atomic import WriteError, append_line, atomic_write_json
from mmbench.storage.checkpoint import checkpoint_exists, load_checkpoint, previous_path
from mmbench.storage.records import RECORD, RunRecord, load_record, write_record
from mmbench.sweeps.files import load_sweep
from mmbench.sweeps.submission import survey
from mmbench.training.log import LOG_FILE, read_log

SWEEP = """[sweep]
name = "disk"
models = ["mopoe"]
[dataset]
name = "synthetic"
views = ["image", "image"]
n = 32
size = 8
[config]
latent_dim = 4
batch_size = 8
max_steps = 6
[evaluate]
metrics = []
[run]
device = "cpu"
checkpoint_every = 2
log_every = 1
tensorboard = false
"""
STEPS = 6  # checkpoints at steps 2, 4 and 6
WORDS = {errno.ENOSPC: "disk full (ENOSPC)", errno.EIO: "I/O error (EIO)"}
CODES = [pytest.param(errno.ENOSPC, id="ENOSPC"), pytest.param(errno.EIO, id="EIO")]


# -- the failing disk --------------------------------------------------------------------------------------


class Disk:
    """Counts the calls of ``op`` whose target (a path; "src -> dst" for a rename) matches ``pattern`` and makes the
    ``nth`` (and, with ``every``, each later one) raise OSError(code). Keeps the bytes of every checkpoint renamed
    into place (``saved``), to compare with what the failure left."""

    def __init__(self, op: str, pattern: str, code: int, nth: int = 1, every: bool = False):
        self.op, self.pattern, self.code, self.nth, self.every = op, re.compile(pattern), code, nth, every
        self.calls, self.failed, self.fds, self.saved = 0, 0, {}, []

    def target(self, name: str, args: tuple, kwargs: dict) -> str:
        if name == "mkstemp":
            return os.path.join(str(kwargs["dir"]), kwargs["prefix"])
        if name in ("replace", "rename", "link"):
            return f"{args[0]} -> {args[1]}"
        if name == "open":
            return str(args[0])
        return self.fds.get(args[0], "?")  # an fd

    def call(self, name: str, real, args: tuple, kwargs: dict):
        target = self.target(name, args, kwargs)
        if name == self.op and self.pattern.search(target):
            self.calls += 1
            if self.calls == self.nth or (self.every and self.calls > self.nth):
                self.failed += 1
                if name == "write":  # a disk that fills mid-write: half the bytes land, then the error
                    real(args[0], bytes(args[1])[: len(args[1]) // 2])
                elif name == "close":  # a close that reports an error still releases the descriptor
                    real(args[0])
                raise OSError(self.code, os.strerror(self.code))
        result = real(*args, **kwargs)
        if name == "mkstemp":
            self.fds[result[0]] = result[1]
        elif name == "open":
            self.fds[result] = str(args[0])
        elif name == "replace" and str(args[1]).endswith("/" + CHECKPOINT):
            self.saved.append(Path(args[1]).read_bytes())
        return result


class View:
    """A module (os, tempfile) as a storage module sees it, its system calls going through ``disk``."""

    CALLS = {"open", "write", "fsync", "fchmod", "close", "replace", "ftruncate", "fdopen", "mkstemp", "link"}

    def __init__(self, module, disk: Disk):
        self._module, self._disk = module, disk

    def __getattr__(self, name):
        real = getattr(self._module, name)
        if name not in self.CALLS:
            return real
        return lambda *args, **kwargs: self._disk.call(name, real, args, kwargs)


@contextmanager
def failing_disk(op: str, pattern: str, code: int, nth: int = 1, every: bool = False):
    disk = Disk(op, pattern, code, nth, every)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic, "os", View(os, disk))
        mp.setattr(atomic, "tempfile", View(tempfile, disk))
        mp.setattr(locks, "os", View(os, disk))
        yield disk


# -- one tiny run ------------------------------------------------------------------------------------------


def the_sweep(tmp: Path):
    (tmp / "disk.toml").write_text(SWEEP)
    return load_sweep(tmp / "disk.toml", runs_dir=tmp / "runs")


def run_once(sweep):
    return execute(sweep.specs[0], sweep.runs_dir, options=sweep.options, progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its final weights."""
    sweep = the_sweep(tmp_path_factory.mktemp("reference"))
    record = run_once(sweep)
    assert record.status == "finished"
    return load_checkpoint(sweep.runs_dir / record.run_id / CHECKPOINT)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def good_checkpoint_bytes(run: Path) -> bytes:
    """The file ``load_checkpoint`` reads: the latest, or the previous one when the latest is missing."""
    path = run / CHECKPOINT
    return (path if path.is_file() else previous_path(path)).read_bytes()


def temporary_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob(".*.tmp"))


def resume_and_finish(sweep, reference) -> None:
    """The next submit: the run resumes and finishes with a record, at the uninterrupted run's weights."""
    record = run_once(sweep)
    run = sweep.runs_dir / record.run_id
    assert record.status == "finished" and record.spec["config"]["max_steps"] == STEPS
    assert load_record(run / RECORD).status == "finished" and run_status(run) == "finished"
    assert_same_weights(load_checkpoint(run / CHECKPOINT)["state_dict"], reference)
    assert [e["step"] for e in read_log(run / LOG_FILE)] == list(range(1, STEPS + 1))  # each step once
    assert not temporary_files(run) and not (run / "lock.json").exists()


# -- a write failing at each stage -------------------------------------------------------------------------

TMP = r"/\.{}\.[^/]*\.tmp$"  # the temporary file of a save of {}


@dataclass(frozen=True)
class Stage:
    op: str  # the system call that fails
    pattern: str  # on which file
    nth: int  # the how-many-th such call
    file: str  # the file the error names
    step: int | None  # the step of the last good checkpoint it leaves (None: no checkpoint)
    state: str = "partial"
    noted: bool = True  # the reason is noted in executions.jsonl (a lock is taken outside the run)


CKPT = re.escape(CHECKPOINT)
STAGES = {
    # the step checkpoint of step 4 (the one of step 2 is the last good one)
    "checkpoint: create the temporary file": Stage("mkstemp", rf"/\.{CKPT}\.$", 2, CHECKPOINT, 2),
    "checkpoint: set its mode": Stage("fchmod", TMP.format(CKPT), 2, CHECKPOINT, 2),
    "checkpoint: write": Stage("write", TMP.format(CKPT), 2, CHECKPOINT, 2),
    "checkpoint: fsync": Stage("fsync", TMP.format(CKPT), 2, CHECKPOINT, 2),
    "checkpoint: close": Stage("close", TMP.format(CKPT), 2, CHECKPOINT, 2),
    "checkpoint: keep the previous": Stage("replace", rf"/{CKPT} -> .*\.prev\.pt$", 1, CHECKPOINT, 2),
    "checkpoint: rename into place": Stage("replace", rf"\.tmp -> .*/{CKPT}$", 2, CHECKPOINT, 2),
    "checkpoint: its config.json": Stage("replace", r"\.tmp -> .*/checkpoint\.config\.json$", 2, "config.json", 4),
    # the final checkpoint (step 6)
    "final checkpoint: write": Stage("write", TMP.format(CKPT), 3, CHECKPOINT, 4),
    "final checkpoint: rename into place": Stage("replace", rf"\.tmp -> .*/{CKPT}$", 3, CHECKPOINT, 4),
    # the record, after training and evaluation
    "record: create the temporary file": Stage("mkstemp", r"/\.record\.json\.$", 1, RECORD, STEPS),
    "record: write": Stage("write", TMP.format(r"record\.json"), 1, RECORD, STEPS),
    "record: fsync": Stage("fsync", TMP.format(r"record\.json"), 1, RECORD, STEPS),
    "record: rename into place": Stage("replace", r"\.tmp -> .*/record\.json$", 1, RECORD, STEPS),
    # the training log's line of step 3 (the checkpoint of step 2 is the last good one)
    "train log: open": Stage("open", rf"/{LOG_FILE}$", 3, LOG_FILE, 2),
    "train log: append": Stage("write", rf"/{LOG_FILE}$", 3, LOG_FILE, 2),
    # the files written before training
    "executions: append": Stage("write", r"/executions\.jsonl$", 1, "executions.jsonl", None, "pending"),
    "spec: rename into place": Stage("replace", r"\.tmp -> .*/spec\.json$", 1, "spec.json", None, "pending"),
    "lock: write": Stage("write", TMP.format(re.escape("lock.json")), 1, "lock.json", None, "pending", noted=False),
    "lock: link into place": Stage("link", r"\.tmp -> .*/lock\.json$", 1, "lock.json", None, "pending", noted=False),
    "lock: first heartbeat": Stage("replace", r"\.tmp -> .*/lock\.json$", 1, "lock.json", None, "pending", False),
}


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("name", list(STAGES))
def test_a_write_failing_at_any_stage_leaves_the_run_partial_and_the_next_submit_resumes_it(
    name, code, reference, tmp_path
):
    stage = STAGES[name]
    sweep = the_sweep(tmp_path)
    run = sweep.runs_dir / sweep.specs[0].run_id
    with failing_disk(stage.op, stage.pattern, code, stage.nth) as disk:
        with pytest.raises(WriteError) as caught:
            run_once(sweep)
    assert disk.failed == 1
    message = str(caught.value)
    assert message.startswith(f"{WORDS[code]} writing {run}") and stage.file in message and "\n" not in message
    if stage.noted:
        assert "left partial with its last good checkpoint" in message

    assert not temporary_files(run) and not (run / "lock.json").exists()
    assert not (run / RECORD).exists()  # no "failed" record: the disk failed, not the run
    if stage.step is None:
        assert not checkpoint_exists(run / CHECKPOINT)
    else:  # the last good checkpoint loads, byte for byte what its save wrote
        assert good_checkpoint_bytes(run) == disk.saved[-1]
        assert load_checkpoint(run / CHECKPOINT)["steps"] == stage.step
    if (run / LOG_FILE).exists():  # whole lines only (a torn one was cut back)
        assert (run / LOG_FILE).read_bytes().endswith(b"\n") and read_log(run / LOG_FILE)

    assert run_status(run) == stage.state
    (found,) = survey(sweep).states
    assert found.state == stage.state and found.action in ("resume", "submit")
    if stage.noted:
        assert found.detail == stop_reason(run) and found.detail.startswith(f"{WORDS[code]} writing ")
        assert found.detail.endswith(stage.file)

    resume_and_finish(sweep, reference)
    assert stop_reason(run) == ""  # the run started again since


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("op, pattern", [(s.op, s.pattern) for k, s in STAGES.items() if k.startswith("record")])
def test_a_failed_record_write_leaves_the_earlier_record_byte_identical(op, pattern, code, reference, tmp_path):
    sweep = the_sweep(tmp_path)
    run = sweep.runs_dir / sweep.specs[0].run_id
    earlier = {"schema": 2, "run_id": run.name, "spec": sweep.specs[0].to_dict(), "status": "failed"}
    earlier |= {"failure": "an earlier failure", "metrics": [], "provenance": {"git": "abc"}}
    write_record(run, RunRecord.from_dict(earlier))  # an earlier attempt's record, as a retry finds it
    before = (run / RECORD).read_bytes()

    with failing_disk(op, pattern, code) as disk:
        with pytest.raises(WriteError, match=f"{re.escape(WORDS[code])} writing .*record.json"):
            run_once(sweep)
    assert disk.failed == 1
    assert (run / RECORD).read_bytes() == before and not temporary_files(run)
    assert run_status(run) == "failed" and load_checkpoint(run / CHECKPOINT)["steps"] == STEPS  # retried next
    assert survey(sweep).states[0].action == "retry"
    resume_and_finish(sweep, reference)


def test_a_folder_that_cannot_be_synced_does_not_fail_a_save(reference, tmp_path, caplog):
    """Syncing the folder after a rename is best effort: the file is complete and in place before it."""
    sweep = the_sweep(tmp_path)
    run = sweep.runs_dir / sweep.specs[0].run_id
    with failing_disk("fsync", rf"{re.escape(str(run))}$", errno.EIO, every=True) as disk:
        with caplog.at_level(logging.WARNING, logger="mmbench.storage.atomic"):
            record = run_once(sweep)
    assert disk.failed > 5 and record.status == "finished"
    assert "could not sync folder" in caplog.text
    assert_same_weights(load_checkpoint(run / CHECKPOINT)["state_dict"], reference)


# -- the writers themselves --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("op", ["mkstemp", "fchmod", "write", "fsync", "close", "replace"])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(op, code, tmp_path):
    path = tmp_path / "file.json"
    atomic_write_json(path, {"old": 1})
    before = path.read_bytes()
    pattern = r"/\.file\.json\.$" if op == "mkstemp" else (r"file\.json$" if op == "replace" else r"\.tmp$")
    with failing_disk(op, pattern, code), pytest.raises(WriteError) as caught:
        atomic_write_json(path, {"new": 2})
    assert str(caught.value) == f"{WORDS[code]} writing {path}"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


def test_a_failed_append_is_cut_back_and_a_torn_line_is_cut_before_the_next(tmp_path):
    path = tmp_path / "log.jsonl"
    append_line(path, json.dumps({"step": 1}))
    with failing_disk("write", r"log\.jsonl$", errno.ENOSPC), pytest.raises(WriteError, match="disk full"):
        append_line(path, json.dumps({"step": 2, "pad": "x" * 100}))
    assert path.read_text() == '{"step": 1}\n'  # the half-written line was cut back
    with path.open("a") as f:
        f.write('{"step": 2, "to')  # a process killed mid-append
    append_line(path, json.dumps({"step": 3}))
    assert [e["step"] for e in read_log(path)] == [1, 3]


# -- the commands ------------------------------------------------------------------------------------------


def test_train_and_an_inline_submit_say_one_line_when_the_disk_fills_and_resume_after(reference, tmp_path, capsys):
    sweep = the_sweep(tmp_path)
    run = sweep.runs_dir / sweep.specs[0].run_id
    file, runs = str(tmp_path / "disk.toml"), str(sweep.runs_dir)
    train = ["train", "--model", "mopoe", "--dataset", "synthetic", "--metrics", "--runs", runs, "--no-progress"]
    train += ["--set", 'dataset.views=["image", "image"]', "--set", "dataset.n=32", "--set", "dataset.size=8"]
    train += ["--set", "latent_dim=4", "--set", "batch_size=8", "--set", f"max_steps={STEPS}"]
    train += ["--checkpoint-every", "2", "--device", "cpu"]
    submit = ["sweep", "submit", file, "--runs", runs, "--no-progress"]

    for argv, nth in ((train, 2), (submit, 1)):  # the second resumes from the first's checkpoint
        capsys.readouterr()
        with failing_disk("write", TMP.format(CKPT), errno.ENOSPC, nth=nth):
            assert main(argv) == 2
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"mmbench: error: disk full (ENOSPC) writing {run / CHECKPOINT}; run {run.name}")
        assert main(["sweep", "status", file, "--runs", runs]) == 0
        assert "partial (disk full (ENOSPC) writing checkpoint.pt)" in capsys.readouterr().out
    assert load_checkpoint(run / CHECKPOINT)["steps"] == 2  # neither got past the save of step 4

    assert main(submit) == 0
    assert "1 finished, 0 failed" in capsys.readouterr().out
    assert_same_weights(load_checkpoint(run / CHECKPOINT)["state_dict"], reference)

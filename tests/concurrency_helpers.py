"""Processes of tests/test_concurrency.py (importable by a forkserver's children)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from pathlib import Path

import torch

from mmbench.storage.checkpoint import save_checkpoint
from mmbench.storage.records import MetricRow, RunRecord, write_record


def forkserver():
    """A forkserver context whose server has imported torch and mmbench once, so that its children start at once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "mmbench.storage.checkpoint", "mmbench.storage.records", "mmbench.runs.locks"])
    return ctx


def weights(writer: int, r: int) -> torch.Tensor:
    """What ``writer`` saves in round ``r``: seeded, so a reader can tell whose bytes a file holds."""
    return torch.randn(128, 256, generator=torch.Generator().manual_seed(1000 * writer + r))


def write_runs(runs: Path, writer: int, rounds: int, shared: int, go, errors) -> None:
    """``rounds`` rounds, each writing a record and a checkpoint (the previous one kept, as the trainer saves) of a
    run of its own and of one of ``shared`` runs that every writer overwrites at once; starts when ``go`` is set."""
    torch.set_num_threads(1)
    try:
        go.wait(120)
        for r in range(rounds):
            for run_id in (f"own-{writer}-{r}", f"shared-{r % shared}"):
                spec = {"model": "mopoe", "dataset": "synthetic", "seed": writer, "sweep": str(r)}
                rows = (MetricRow("coherence", "*", "*", 1, writer + r / 10),)
                write_record(Path(runs) / run_id, RunRecord(run_id, "finished", spec, rows))
                payload = {"writer": writer, "round": r, "state_dict": {"w": weights(writer, r)}}
                save_checkpoint(Path(runs) / run_id / "checkpoint.pt", payload, keep_previous=True)
    except BaseException:
        errors.put(f"writer {writer}: {traceback.format_exc()}")
        sys.exit(1)


def take_lock_repeatedly(run_dir: Path, attempts: int, go, errors, held) -> None:
    """Take ``run_dir``'s run lock ``attempts`` times, racing the other processes and reading it between; inside it,
    claim a marker file that only one holder at a time may have. ``held`` counts the times it was taken."""
    from mmbench.errors import MMBenchError
    from mmbench.runs.locks import RunLock, RunLocked, read_lock

    marker = Path(run_dir) / "inside"
    try:
        go.wait(120)
        for _ in range(attempts):
            try:
                read_lock(run_dir)
                with RunLock(run_dir):
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # FileExistsError: two holders
                    os.close(fd)
                    with held.get_lock():
                        held.value += 1
                    marker.unlink()
            except RunLocked:
                pass
            except MMBenchError:
                errors.put(traceback.format_exc())
                return
    except BaseException:
        errors.put(traceback.format_exc())
        sys.exit(1)


def train_shared_stage(runs: Path, score_lr: float, go, results, errors) -> None:
    """Execute a run of ``test_shared_stage`` (reusable autoencoders whose end takes a second) with its own score
    learning rate, starting when ``go`` is set; put (run id, what its stage one reused, the log's lines)."""
    try:
        import time

        from ddp_helpers import DeterministicStaged

        import mmbench.runs.stages
        from mmbench.registry import MODELS, register_model
        from mmbench.runs.execute import execute
        from mmbench.runs.spec import RunSpec
        from mmbench.stages import Stage
        from mmbench.training.options import RunOptions

        if "test_shared_stage" not in MODELS.names():

            @register_model("test_shared_stage")
            class SharedStage(DeterministicStaged):
                stages = (Stage("autoencoders", ("encoders", "decoders"), reusable=True), Stage("score", ("score",)))

                @classmethod
                def check_modalities(cls, modalities):
                    pass

                def end_stage(self, stage, data):
                    time.sleep(1.0)  # the others arrive while the claim is held
                    super().end_stage(stage, data)

        torch.set_num_threads(1)
        mmbench.runs.stages.CLAIM_POLL_S = 0.1
        lines: list[str] = []
        data = {"views": ["image", "attributes"], "n": 40, "size": 8}
        spec = RunSpec("test_shared_stage", "synthetic", data, {"score.lr": score_lr}, 0, ())
        options = RunOptions(device="cpu", checkpoint_every=50, tensorboard=False)
        go.wait(120)
        record = execute(spec, runs, options=options, progress=False, log=lines.append)
        results.put((record.run_id, record.stages[0]["reused"], lines))
    except BaseException:
        errors.put(traceback.format_exc())
        sys.exit(1)

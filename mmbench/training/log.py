"""The training log of a run: JSON lines (step, epoch, loss terms, lr, throughput) and TensorBoard events.

A resumed run first drops the lines past the step of the checkpoint it resumes from (they will be
written again), so the log has each step once. TensorBoard events are written when the optional
``tensorboard`` package is installed (``pip install mmbench[tensorboard]``); a resumed writer purges
the events past the resumed step, as TensorBoard's ``purge_step`` does.

Each line is appended with ``storage.atomic.append_line``: a line that cannot be written (disk full, I/O error)
raises ``WriteError`` and is cut back, so the log keeps whole lines and the run stops as its checkpoint left it.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmbench.storage.atomic import append_line, atomic_write_bytes
from mmbench.storage.validate import read_json_lines

LOG_FILE = "train_log.jsonl"
STEP = (("step", "int"),)  # what every line of the training log holds
TENSORBOARD_DIR = "tensorboard"


def read_log(path: Path, *, what: str = "training log", required: tuple[tuple[str, str], ...] = STEP) -> list[dict]:
    """The entries of a JSON-lines file (the training log; a run's executions, with their own ``what`` and
    ``required`` fields: (name, kind of ``storage.validate.CHECKS``)); [] when there is none. A line torn by a kill
    mid-write (the last one) is skipped; anything else that is not an entry (binary garbage, a line that is not a
    JSON object, a required field missing or of the wrong type) is refused in one line naming the file, the line
    and the field."""
    path = Path(path)
    if not path.exists():
        return []
    return read_json_lines(path, what, required)


class TrainLog:
    """Append-only log of a run, opened at the step training resumes from (0 for a new run)."""

    def __init__(self, run_dir: Path, resume_step: int = 0, *, tensorboard: bool = True):
        self.path = Path(run_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [e for e in read_log(self.path) if e.get("step", 0) <= resume_step]
        if self.path.exists():
            atomic_write_bytes(self.path, "".join(json.dumps(e) + "\n" for e in kept).encode())
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra is not installed: the JSON log is enough
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=resume_step + 1)

    @property
    def tensorboard_dir(self) -> Path | None:
        return Path(self._writer.log_dir) if self._writer is not None else None

    def write(self, entry: dict) -> None:
        """One line: entry must hold "step"; its other numbers also go to TensorBoard as train/<name>."""
        append_line(self.path, json.dumps(entry))
        if self._writer is not None:
            for k, v in entry.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self._writer.add_scalar(f"train/{k}", v, entry["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

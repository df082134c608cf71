"""Files mmbench writes take the user's umask (0644 under 0022, 0600 under 0077), so lab-mates and web
servers can read reports and records: temporary files renamed into place would otherwise stay 0600."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from helpers import record, row, write

from mmbench.report.build import build_report
from mmbench.resources import published_csv
from mmbench.storage.atomic import atomic_folder, atomic_write_json
from mmbench.storage.checkpoint import save_checkpoint

PUBLISHED = str(published_csv())


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    atomic_write_json(tmp_path / "record.json", {"a": 1})
    save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.zeros(2)})
    with atomic_folder(tmp_path / "built", "test") as tmp:
        (tmp / "x").write_text("x")
    assert mode(tmp_path / "record.json") == 0o666 & ~umask
    assert mode(tmp_path / "checkpoint.pt") == 0o666 & ~umask
    assert mode(tmp_path / "built") == 0o777 & ~umask


def test_the_report_follows_the_umask(tmp_path, umask):
    runs = tmp_path / "runs"
    write(runs, record("a", metrics=[row("coherence", 1, 0.40)]))
    out = tmp_path / "out"
    build_report(runs, out, PUBLISHED, samples=[], log=lambda *_: None)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"index.html", "README.md", "leaderboard.csv", "metrics.csv"} <= {p.name for p in files}
    assert {p.name: mode(p) for p in files} == {p.name: 0o666 & ~umask for p in files}

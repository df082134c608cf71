"""A wheel works outside the checkout: built, installed (not editable) into a fresh venv, run from another folder.
The paper's sweep files and published numbers are package data; nothing resolves paths against the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import record, row

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_runs_the_demo_report_and_packaged_sweeps(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("mmbench-*.whl")
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    assert subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], timeout=300).returncode == 0
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
        ).stdout.strip()
    )
    # install the wheel's files (pip's own 'install' of this interpreter, targeting the new venv's site-packages)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    # the dependencies (torch, pandas, ...) come from this environment, appended after the wheel's site-packages
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing may point back at the checkout

    def mmbench(*args, timeout=900):
        out = subprocess.run(
            [py, "-m", "mmbench", *args], capture_output=True, text=True, cwd=work, timeout=timeout, env=env
        )
        assert out.returncode == 0, (args, out.stderr[-2000:])
        return out.stdout

    where = subprocess.run(
        [py, "-c", "import mmbench, mmbench.resources as r; print(mmbench.__file__); print(r.published_csv())"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    ).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where  # the installed copy, not the checkout
    for args in (
        ["--help"],
        ["list", "--help"],
        ["show", "config", "--help"],
        ["data", "build", "--help"],
        ["data", "check", "--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["prior", "fit", "--help"],
        ["samples", "--help"],
        ["sweep", "plan", "--help"],
        ["sweep", "submit", "--help"],
        ["sweep", "status", "--help"],
        ["report", "--help"],
        ["demo", "--help"],
    ):
        assert "usage: mmbench" in mmbench(*args)
    plan = mmbench("sweep", "plan", "polymnist_scaling", "--runs", "runs")
    assert "120 run(s) would be submitted as one job array" in plan
    mmbench("demo", "--quick", "--out", "demo", "--no-progress", timeout=1200)
    assert (work / "demo" / "report" / "index.html").is_file()
    runs = work / "paper-runs" / "a"
    runs.mkdir(parents=True)
    (runs / "record.json").write_text(json.dumps(record("a", m=5, metrics=[row("coherence", 1, 0.7)])))
    mmbench("report", "--runs", "paper-runs", "--out", "paper-report", "--no-samples")
    assert "paper: " in (work / "paper-report" / "README.md").read_text()  # published.csv read from the wheel

"""A third-party plugin package that imports only mmbench's public names, installed with pip: it is listed, trains,
is evaluated and lands in the leaderboard like a built-in model; old import paths still work with a warning."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import mmbench

EXAMPLE = Path(__file__).parent / "plugin_example"


def test_the_example_imports_only_public_names():
    tree = ast.parse((EXAMPLE / "mmbench_example_plugin" / "model.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmbench"):
            assert node.module == "mmbench", node.module
            assert {a.name for a in node.names} <= set(mmbench.__all__)


@pytest.mark.slow
def test_an_installed_plugin_runs_end_to_end(tmp_path, polymnist_pt):
    target, source = tmp_path / "site", tmp_path / "plugin_example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))  # the build leaves no trace
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}

    def mmbench_cmd(*args):
        out = subprocess.run(
            [sys.executable, "-m", "mmbench", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "poe_example" in mmbench_cmd("list", "models")
    assert "likelihood_scale" in mmbench_cmd("show", "config", "poe_example")
    runs = tmp_path / "runs"
    said = mmbench_cmd(
        "train",
        "--model",
        "poe_example",
        "--data-root",
        str(polymnist_pt),
        "--runs",
        str(runs),
        "--metrics",
        "probe",
        "--set",
        "config.max_steps=20",
        "--set",
        "evaluate.probe.max_train=300",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert "finished" in said
    mmbench_cmd("report", "--runs", str(runs), "--out", str(tmp_path / "report"), "--no-samples")
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "poe_example" in board and "Linear probe accuracy" in board
    assert "PoE (example)" in (tmp_path / "report" / "leaderboard.tex").read_text()


@pytest.mark.parametrize(
    "old, name",
    [
        ("mmbench.checkpoint", "save_checkpoint"),
        ("mmbench.checkpoint", "atomic_write_json"),
        ("mmbench.results", "read_record"),
        ("mmbench.results", "records_frame"),
        ("mmbench.results", "_flat"),
        ("mmbench.train", "train"),
        ("mmbench.run", "execute"),
        ("mmbench.runspec", "RunSpec"),
        ("mmbench.runoptions", "RunOptions"),
        ("mmbench.executors", "scheduler_states"),
        ("mmbench.locks", "process_alive"),
        ("mmbench.evaluate", "make_metric"),
        ("mmbench.memory_format", "to_memory_format"),
        ("mmbench.leaderboards", "to_latex"),
        ("mmbench.plots", "save_figure"),
        ("mmbench.sweeps", "load_sweep"),
        ("mmbench.report", "build_report"),
        ("mmbench.submission", "submit"),
        ("mmbench.provenance", "provenance"),
    ],
)
def test_old_import_paths_work_with_a_deprecation_warning(old, name):
    if old not in ("mmbench.sweeps", "mmbench.report"):  # shim modules; those two are packages now
        sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
        assert callable(getattr(module, name)) or getattr(module, name) is not None
    assert any(issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message) for w in caught), old

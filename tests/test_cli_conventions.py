"""Conventions of the command: --version, python -m mmbench, show (every config field with its default), --dry-run
with the SLURM request, shell completion, run ids for run folders, the exit-code table."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from helpers import installed_models

from mmbench import __version__
from mmbench.cli import EXIT_CODES, main
from mmbench.describe import config_fields
from mmbench.registry import MODELS
from mmbench.resources import packaged_sweeps


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_version_and_python_dash_m():
    for argv in (["-m", "mmbench", "--version"], ["-m", "mmbench.cli", "--version"]):
        out = run(*argv)
        assert out.returncode == 0 and out.stdout.strip() == f"mmbench {__version__}"
    out = run("-m", "mmbench", "list", "models")
    assert out.returncode == 0 and "mopoe" in out.stdout


@pytest.mark.parametrize("model", installed_models())
def test_show_config_prints_every_field_with_its_default(capsys, model):
    assert main(["show", "config", model]) == 0
    out = capsys.readouterr().out
    cls = MODELS.get(model).Config
    defaults = cls()
    rows = {line.split()[0]: line for line in out.splitlines()[3:] if line.strip()}
    _, fields = config_fields(model)
    assert set(rows) == {f.name for f in fields}
    # every field of the config shows, a staged model's stage section as one row per field ("score.lr")
    assert {f.name.split(".")[0] for f in fields} == {f.name for f in dataclasses.fields(cls)}
    for f in fields:
        default = defaults
        for part in f.name.split("."):
            default = getattr(default, part)
        assert f.default == default
        assert f.meaning, f"{model}.{f.name} has no one-line meaning in its config's docstring"
    assert main(["show", "config", model, "--toml"]) == 0
    toml = capsys.readouterr().out
    import tomllib

    assert tomllib.loads(toml)["config"][model]["latent_dim"] == defaults.latent_dim


def test_show_config_applies_and_checks_set(capsys):
    assert main(["show", "config", "mopoe", "--set", "beta=1"]) == 0
    assert "2.5 -> 1.0" in capsys.readouterr().out
    assert main(["show", "config", "mopoe", "--set", "bta=1"]) == 2
    assert "did you mean 'beta'?" in capsys.readouterr().err


def test_show_dataset_metric_and_sweep(capsys):
    assert main(["show", "dataset", "polymnist"]) == 0
    out = capsys.readouterr().out
    assert "pad_to" in out and "(required)" in out
    assert main(["show", "metric", "fid"]) == 0
    assert "n_samples" in capsys.readouterr().out
    assert main(["show", "sweep", "polymnist_scaling", "--set", "config.epochs=5"]) == 0
    out = capsys.readouterr().out
    assert "120 runs" in out and "epochs = 5" in out and "epochs = 250" not in out
    assert main(["show", "metric", "cohrence"]) == 2
    assert "did you mean 'coherence'?" in capsys.readouterr().err


def test_submit_dry_run_shows_the_slurm_request_and_queues_nothing(capsys, tmp_path, polymnist_pt):
    argv = [
        "sweep",
        "submit",
        "polymnist_scaling",
        "--runs",
        str(tmp_path / "runs"),
        "--dry-run",
        "--set",
        f"dataset.root={polymnist_pt}",
        "--set",
        "grid.dataset.modalities=[2]",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "30 run(s) would be submitted as one job array" in out
    assert "SLURM request: sbatch --job-name=mmbench-polymnist-scaling --array=0-29%32 --time=1440" in out
    assert "--gpus-per-node=1" in out and "dry run: nothing was submitted" in out
    assert not (tmp_path / "runs").exists()


def test_packaged_sweeps_by_name(capsys, tmp_path):
    assert {"polymnist_scaling", "polymnist_conditional", "prior_ablation", "demo"} <= set(packaged_sweeps())
    assert main(["sweep", "status", "prior_ablation", "--runs", str(tmp_path)]) == 0
    assert main(["sweep", "status", "polymnist_scalng", "--runs", str(tmp_path)]) == 2
    assert "did you mean 'polymnist_scaling'?" in capsys.readouterr().err


def test_shell_completion_through_argcomplete():
    pytest.importorskip("argcomplete")
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": "mmbench sw",
        "COMP_POINT": "10",
        "_ARGCOMPLETE_STDOUT_FILENAME": "/dev/stdout",
    }
    out = subprocess.run([sys.executable, "-m", "mmbench"], capture_output=True, text=True, env=env, timeout=120)
    assert "sweep" in out.stdout.split()


def test_a_run_is_named_by_folder_or_by_id(capsys, tmp_path):
    runs = tmp_path / "runs"
    (runs / "mopoe-0123456789ab").mkdir(parents=True)
    assert main(["samples", "mopoe-0123", "--runs", str(runs)]) == 2  # found by prefix: then refused for its content
    err = capsys.readouterr().err
    assert "mopoe-0123456789ab" in err and "no run folder" not in err
    assert main(["eval", "mopoe-9", "--runs", str(runs)]) == 2
    assert "no run 'mopoe-9' under" in capsys.readouterr().err


def test_the_exit_codes_are_documented_in_help():
    out = run("-m", "mmbench", "--help").stdout
    assert all(str(code) in out for code in EXIT_CODES)

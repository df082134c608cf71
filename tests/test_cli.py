"""The mmbench command: listings, and one clear line for every kind of bad input."""

import subprocess
import sys

import pytest

from mmbench.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_models_shows_descriptions(capsys):
    code, out, _ = run_cli(capsys, "list", "models")
    assert code == 0
    assert any(line.startswith("mopoe") and "Sutter et al. 2021" in line for line in out.splitlines())


def test_the_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "mmbench.cli", "list", "metrics"], capture_output=True, text=True)
    assert out.returncode == 0 and "coherence" in out.stdout


def one_line_error(code, err, pattern):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmbench: error: "), err
    assert pattern in lines[0], lines[0]


def test_unknown_model_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "train", "--model", "nope", "--data-root", str(tmp_path), "--runs", str(tmp_path / "r")
    )
    one_line_error(code, err, "unknown model 'nope'; known models: ")
    assert "mopoe" in err and "mvtcae" in err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_unknown_config_field_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "train",
        "--model",
        "mopoe",
        "--data-root",
        str(tmp_path),
        "--set",
        "betta=2",
        "--runs",
        str(tmp_path / "r"),
    )
    one_line_error(code, err, "MoPoEConfig has no field 'betta'")


def test_missing_data_folder_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "train", "--model", "mopoe", "--data-root", str(tmp_path / "none"), "--runs", str(tmp_path / "r")
    )
    one_line_error(code, err, "does not exist")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[sweep\nname=1", "is not valid TOML"),
        ("[sweep]\nname='x'\n", "models must be a non-empty list"),
        ("[sweep]\nmodels=['mopoe']\n", "missing table [dataset]"),
        ("[sweep]\nmodels=['mopoe']\n[dataset]\nname='polymnist'\n[grid]\nbeta=2.5\n", "beta must be a non-empty list"),
        ("[sweep]\nmodels=['mopoe']\n[dataset]\nname='polymnist'\n[config]\nbetta=2.5\n", "has no field 'betta'"),
        ("[sweep]\nmodels=['mopoe']\n[dataset]\nname='nodata'\n", "unknown dataset 'nodata'"),
        (
            "[sweep]\nmodels=['mopoe']\n[dataset]\nname='polymnist'\n[executor]\nname='cloud'\n",
            "unknown executor 'cloud'",
        ),
        ("[sweep]\nmodels=['mopoe']\n[dataset]\nname='polymnist'\n[extra]\n", "unknown table(s) ['extra']"),
        (
            "[sweep]\nmodels=['mopoe']\n[dataset]\nname='polymnist'\n[config]\nbeta=-1.0\n",
            "beta = -1.0 is out of range",
        ),
    ],
)
def test_malformed_sweep_files_are_one_line(capsys, tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    code, _, err = run_cli(capsys, "sweep", "submit", str(f), "--runs", str(tmp_path / "r"))
    one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()


def test_report_without_runs_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    one_line_error(code, err, "does not exist")


def test_a_malformed_record_is_named_and_the_report_still_renders(capsys, tmp_path):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "record.json").write_text("{not json")
    code, out, err = run_cli(capsys, "report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o"))
    assert code == 0 and err == "" and "skipped: record" in out and "record.json is not valid JSON" in out
    assert "record.json is not valid JSON" in (tmp_path / "o" / "index.html").read_text()


def test_data_build_refuses_a_bad_modality_count(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "build", "polymnist", "--out", str(tmp_path / "d"), "--modalities", "1")
    one_line_error(code, err, "between 2 and 10")


def test_every_command_has_help():
    for args in (
        ["--help"],
        ["sweep", "submit", "--help"],
        ["data", "build", "--help"],
        ["report", "--help"],
        ["demo", "--help"],
        ["train", "--help"],
        ["list", "--help"],
        ["prior", "fit", "--help"],
    ):
        out = subprocess.run([sys.executable, "-m", "mmbench.cli", *args], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: mmbench" in out.stdout

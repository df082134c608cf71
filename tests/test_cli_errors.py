"""Typos and mistakes on every command: one line, exit status 2, the close match suggested; sweep status and
plan work without the dataset's folder."""

from __future__ import annotations

import pytest

from mmbench.cli import main

SWEEP = """[sweep]
name = "s"
models = ["mopoe"]
[dataset]
name = "polymnist"
root = "{root}"
[config]
max_steps = 2
"""


def one_line(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mmbench: error: "), err
    return err[0]


@pytest.fixture
def sweep_file(tmp_path, polymnist_pt):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.format(root=polymnist_pt))
    return f


def test_typos_suggest_the_close_name(capsys, tmp_path, polymnist_pt, sweep_file):
    root = str(polymnist_pt)
    runs = str(tmp_path / "r")
    cases = [
        (["train", "--model", "mopo", "--data-root", root, "--runs", runs], "did you mean 'mopoe'?"),
        (["train", "--model", "mopoe", "--data-root", root, "--set", "bta=1", "--runs", runs], "did you mean 'beta'?"),
        (
            ["train", "--model", "mopoe", "--dataset", "polymnst", "--data-root", root, "--runs", runs],
            "did you mean 'polymnist'?",
        ),
        (
            ["train", "--model", "mopoe", "--data-root", root, "--set", "dataset.pad=32", "--runs", runs],
            "did you mean 'pad_to'?",
        ),
        (
            ["train", "--model", "mopoe", "--data-root", root, "--set", "evaluate.coherence.max_tst=3", "--runs", runs],
            "did you mean 'max_test'?",
        ),
        (["sweep", "plan", str(sweep_file), "--set", "confg.beta=1"], "did you mean 'config'?"),
        (["sweep", "submit", str(sweep_file), "--set", "config.mopo.beta=1"], "did you mean 'mopoe'?"),
        (["sweep", "status", str(sweep_file), "--set", "sweep.seed=[1]"], "did you mean 'seeds'?"),
        (["data", "check", "synthetic", "--set", "nn=3"], "did you mean 'n'?"),
        (["data", "check", "polymnst", root], "did you mean 'polymnist'?"),
    ]
    for argv, suggestion in cases:
        assert suggestion in one_line(capsys, argv), argv
    assert not (tmp_path / "r").exists()


def test_metric_and_adapter_typos_list_the_valid_options(capsys, tmp_path, polymnist_pt):
    line = one_line(
        capsys,
        [
            "train",
            "--model",
            "mopoe",
            "--data-root",
            str(polymnist_pt),
            "--set",
            "evaluate.coherence.epochs=3",
            "--runs",
            str(tmp_path / "r"),
        ],
    )
    assert "its options are: classifier_epochs" in line
    line = one_line(capsys, ["data", "check", "synthetic", "--set", "colour=1"])
    assert "its options are: root, views, n" in line


def test_status_and_plan_do_not_need_the_data_folder(capsys, tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.format(root=tmp_path / "gone"))
    assert main(["sweep", "status", str(f), "--runs", str(tmp_path / "r")]) == 0
    assert "1 pending" in capsys.readouterr().out
    assert main(["sweep", "plan", str(f), "--runs", str(tmp_path / "r")]) == 0
    assert "note: submit would refuse: PolyMNIST folder" in capsys.readouterr().out
    assert "PolyMNIST folder" in one_line(capsys, ["sweep", "submit", str(f), "--runs", str(tmp_path / "r")])


def test_report_refuses_a_file_as_out_and_an_unknown_sample_run(capsys, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "file").write_text("")
    assert "is a file" in one_line(
        capsys, ["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "file")]
    )
    line = one_line(
        capsys, ["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o"), "--samples", "mopoe-123"]
    )
    assert "--samples mopoe-123: no run of that id" in line and not (tmp_path / "o").exists()


@pytest.fixture
def finished_run_folder(tmp_path):
    """A run folder with a spec but no checkpoint: enough for the commands to get to their option checks."""
    run = tmp_path / "runs" / "mopoe-0123456789ab"
    run.mkdir(parents=True)
    return run


def test_every_command_answers_a_typo_in_one_line_with_a_suggestion(capsys, tmp_path, finished_run_folder):
    runs = str(tmp_path / "runs")
    cases = [
        (["swep", "plan", "x"], "did you mean 'sweep'?"),
        (["list", "model"], "did you mean 'models'?"),
        (["show", "config", "mvea"], "did you mean 'mvae'?"),
        (["show", "dataset", "polymnst"], "did you mean 'polymnist'?"),
        (["show", "metric", "cohrence"], "did you mean 'coherence'?"),
        (["show", "sweep", "polymnist_scalng"], "did you mean 'polymnist_scaling'?"),
        (["data", "build", "polymnst", "--out", str(tmp_path / "d")], "did you mean 'polymnist'?"),
        (["data", "prepare", "celebamask", "src", "--out", str(tmp_path / "d")], "did you mean 'celebamaskhq'?"),
        (["sweep", "plna", "polymnist_scaling"], "did you mean 'plan'?"),
        (["sweep", "submit", "polymnist_scaling", "--executor", "slurmm"], "did you mean 'slurm'?"),
        (["sweep", "plan", "polymnist_scaling", "--set", "run.devce=cpu"], "did you mean 'device'?"),
        (["sweep", "plan", "polymnist_scaling", "--set", "executor.partiton=gpu"], "did you mean 'partition'?"),
        (["eval", "mopoe-0123456789ac", "--runs", runs], "did you mean 'mopoe-0123456789ab'?"),
        (["samples", "mopoe-0123456789ac", "--runs", runs], "did you mean 'mopoe-0123456789ab'?"),
        (["prior", "fitt", "x"], "did you mean 'fit'?"),
        (
            ["report", "--runs", runs, "--out", str(tmp_path / "o"), "--samples", "mopoe-0123456789ac"],
            "did you mean 'mopoe-0123456789ab'?",
        ),
        (["demo", "--quik"], "unrecognized arguments: --quik"),
    ]
    for argv, expected in cases:
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own refusals (an unknown command, choice or flag)
            code = exit_.code
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("mmbench: error: "), (argv, err)
        assert expected in err[0], (argv, err[0])

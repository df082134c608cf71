"""The whole path from data to leaderboard: the reduced demo (about a minute)."""

import json
import shutil

import pandas as pd
import pytest

from mmbench.cli import main
from mmbench.results import read_records


def test_quick_demo_builds_data_trains_evaluates_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "mopoe" in printed

    records = read_records(out / "runs")
    assert len(records) == 1
    rec = records[0]
    assert rec["status"] == "finished" and rec["train"]["steps"] == 40
    assert rec["provenance"]["torch"] and rec["device"].startswith("cpu")
    rows = pd.DataFrame(rec["metrics"])
    means = rows[(rows.metric == "coherence") & (rows.target == "*") & (rows.given == "*")]
    assert sorted(means.n_given) == [1, 2, 3, 4]
    assert means.value.between(0, 1).all()
    assert (rows[rows.metric == "classifier_accuracy"].value >= 0.8).all()
    # 4 targets x 5 singletons + 3 x 10 pairs + 2 x 10 triples + 1 x 5 quadruples
    assert len(rows[(rows.metric == "coherence") & (rows.target != "*")]) == 75

    board = (out / "leaderboard.md").read_text()
    assert "| mopoe" in board and "paper: MultiVae reproduction table" in board and "4 given" in board
    assert (out / "conditional_coherence.png").stat().st_size > 1000
    assert json.loads((out / "runs" / rec["run_id"] / "spec.json").read_text())["model"] == "mopoe"

    # Submitting again skips the finished run.
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    assert "finished before, skipped" in capsys.readouterr().out


@pytest.fixture(scope="module")
def finished_demo(tmp_path_factory):
    """A finished quick demo, trained once for this module; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("shared") / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    return out


def copy_of(demo, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo, out)
    return out, next((out / "runs").glob("mopoe-*"))


def test_prior_fit_on_a_finished_run_adds_rows_and_refuses_runs_without_a_checkpoint(finished_demo, tmp_path, capsys):
    out, run = copy_of(finished_demo, tmp_path)
    fast = ["--set", "steps=3", "--set", "base=8", "--set", "mults=[1]", "--set", "sampler_steps=2", "--no-progress"]
    assert main(["prior", "fit", str(run), *fast]) == 0
    assert (run / "prior-score.pt").is_file()
    metrics = {m["metric"] for m in read_records(out / "runs")[0]["metrics"]}
    assert {"latent_frechet@prior:score", "latent_frechet@prior:gaussian", "coherence@prior:score",
            "coherence@prior:gaussian"} <= metrics
    assert main(["samples", str(run), "--prior", "score", "--n", "4"]) == 0
    assert (run / "samples.png").stat().st_size > 1000
    assert main(["report", "--runs", str(out / "runs"), "--out", str(out / "report")]) == 0
    ablation = (out / "report" / "leaderboard.md").read_text().split("## Prior ablation")[1]
    assert "| mopoe" in ablation and "score" in ablation and "N(0, I)" in ablation
    capsys.readouterr()
    (run / "checkpoint.pt").unlink()
    assert main(["prior", "fit", str(run), *fast]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no encoder checkpoint (checkpoint.pt)" in err[0]


def test_sample_grid_of_a_finished_run_and_its_bad_input(finished_demo, tmp_path, capsys):
    run = next((finished_demo / "runs").glob("mopoe-*"))
    grid = tmp_path / "grid.png"
    assert main(["samples", str(run), "--given", "m1", "m2", "--n", "3", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 1000 and str(grid) in capsys.readouterr().out
    for bad, message in [(["--given", "m9"], "subset ['m9'] must name"), (["--n", "0"], "--n must be at least 1"),
                         (["--prior", "score"], "prior-score.pt does not exist; fit it first")]:
        assert main(["samples", str(run), "--out", str(grid), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err

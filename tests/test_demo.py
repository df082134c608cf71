"""The whole path from data to leaderboard: the reduced demo (about a minute)."""

import json
import shutil

import pandas as pd
import pytest

from mmbench.cli import main
from mmbench.storage.records import read_records

pytestmark = pytest.mark.slow  # SLURM, browser or end-to-end: pytest -m 'not slow' skips them


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
    assert rec["data"] == {"release": "offline build, 4,000/1,000 tuples", "train": 4000, "test": 1000}
    rows = pd.DataFrame(rec["metrics"])
    means = rows[(rows.metric == "coherence") & (rows.target == "*") & (rows.given == "*")]
    assert sorted(means.n_given) == [1, 2, 3, 4]
    assert means.value.between(0, 1).all()
    assert (rows[rows.metric == "classifier_accuracy"].value >= 0.8).all()
    # 4 targets x 5 singletons + 3 x 10 pairs + 2 x 10 triples + 1 x 5 quadruples
    assert len(rows[(rows.metric == "coherence") & (rows.target != "*")]) == 75

    report = out / "report"
    board = (report / "leaderboard.md").read_text()
    # the offline build is not the papers' dataset: no paper rows beside it
    assert "| mopoe" in board and "polymnist (offline build, 4,000/1,000 tuples)" in board and "4 given" in board
    assert "paper:" not in board
    assert (report / "figures" / "figure7c.png").stat().st_size > 1000
    assert (report / "samples" / f"{rec['run_id']}.png").stat().st_size > 1000
    assert "Figure 7a" in (report / "README.md").read_text()  # listed as missing, with its sweep
    assert (report / "index.html").stat().st_size > 10000 and (report / "sweeps" / "demo-quick.toml").is_file()
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
    rows = {(m["metric"], m.get("prior", "")) for m in read_records(out / "runs")[0]["metrics"] if m["n_given"] == 0}
    assert {
        ("latent_frechet", "score"),
        ("latent_frechet", "gaussian"),
        ("coherence", "score"),
        ("coherence", "gaussian"),
    } <= rows
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
    for bad, message in [
        (["--given", "m9"], "subset ['m9'] must name"),
        (["--n", "0"], "--n must be at least 1"),
        (["--prior", "score"], "prior-score.pt does not exist; fit it first"),
    ]:
        assert main(["samples", str(run), "--out", str(grid), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_eval_adds_rows_to_a_finished_run_and_refuses_bad_input_leaving_the_record(
    finished_demo, tmp_path, capsys, monkeypatch
):
    import torch

    from mmbench.metrics.inception import build_fid_inception

    out, run = copy_of(finished_demo, tmp_path)
    before = (run / "record.json").read_text()
    monkeypatch.delenv("MMBENCH_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))
    bad = [
        (["--metrics", "f1"], "f1 needs an attributes or mask modality"),
        (["--metrics", "fid"], "FID needs the Inception weights pt_inception-2015-12-05-6726825d.pth"),
        (["--metrics", "nope"], "unknown metric 'nope'"),
        (["--metrics", "probe", "--option", "fid.dims=64"], "options given for metrics ['fid']"),
    ]
    for args, message in bad:
        assert main(["eval", str(run), "--no-progress", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert (run / "record.json").read_text() == before  # the record is left as it was

    no_checkpoint = tmp_path / "copy"
    shutil.copytree(run, no_checkpoint)
    (no_checkpoint / "checkpoint.pt").unlink()
    assert main(["eval", str(no_checkpoint), "--metrics", "probe"]) == 2
    assert "has no encoder checkpoint" in capsys.readouterr().err

    weights = tmp_path / "test-inception-random-values.pth"  # the architecture's init: the values mean nothing
    torch.manual_seed(0)
    torch.save(build_fid_inception().state_dict(), weights)
    fid = [
        "--metrics",
        "fid",
        "probe",
        "--fid-weights",
        str(weights),
        "--option",
        "fid.dims=64",
        "--option",
        "fid.max_subsets=1",
        "--option",
        "fid.batch_size=64",
        "--option",
        "probe.max_train=300",
        "--n-samples",
        "64",
        "--no-progress",
    ]
    assert main(["eval", str(run), *fid]) == 0
    assert "rows added to" in capsys.readouterr().out
    rec = read_records(out / "runs")[0]
    rows = pd.DataFrame(rec["metrics"])
    fid_rows = rows[rows.metric == "fid"]
    assert set(fid_rows.n_given) == {0, 1, 2, 3, 4} and (fid_rows.n_samples == 64).all()
    assert set(rows[rows.metric == "probe"].n_given) == {1, 2, 3, 4, 5}
    assert len(rows[rows.metric == "coherence"]) == 80  # the training-time rows are kept
    assert rec["metric_provenance"]["fid"]["standard_weights"] is False
    assert rec["evaluations"][-1]["peak_memory_mb"] > 0 and rec["evaluations"][-1]["seconds"] > 0
    n_rows = len(rows)
    again = ["--metrics", "probe", "--option", "probe.max_train=300", "--no-progress"]
    assert main(["eval", str(run), *again]) == 0  # evaluated again: rows replaced, not duplicated
    assert len(read_records(out / "runs")[0]["metrics"]) == n_rows
    assert main(["eval", str(run), *fid[:-1], "--n-samples", "5000"]) == 2
    assert "n_samples = 5000 is more than the 1000 of the test split" in capsys.readouterr().err


def test_coherence_with_mopoe_published_classifiers(finished_demo, tmp_path, capsys):
    """Classifier files in MoPoE's layout (state dicts of its ClfImg, ``encoder.*`` keys), written here from
    the classifiers mmbench trained, give the coherence those give."""
    import torch

    from mmbench.storage.checkpoint import load_checkpoint

    out, run = copy_of(finished_demo, tmp_path)
    published = tmp_path / "trained_clfs_polyMNIST"
    published.mkdir()
    for path in (out / "runs" / ".cache" / "classifiers").glob("m*.pt"):
        state = load_checkpoint(path)["state_dict"]
        torch.save(
            {k.replace("net.", "encoder.", 1): v for k, v in state.items()},
            published / f"pretrained_img_to_digit_clf_{path.name.split('-')[0]}",
        )
    rec = read_records(out / "runs")[0]
    run_spec = json.loads((run / "spec.json").read_text())
    run_spec["metric_options"]["coherence"]["classifiers"] = str(published)
    mine = {(m["target"], m["given"]): m["value"] for m in rec["metrics"] if m["metric"] == "coherence"}
    (run / "spec.json").write_text(json.dumps(run_spec))
    assert main(["eval", str(run), "--metrics", "coherence", "--no-progress"]) == 0
    theirs = {
        (m["target"], m["given"]): m["value"]
        for m in read_records(out / "runs")[0]["metrics"]
        if m["metric"] == "coherence"
    }
    assert theirs == pytest.approx(mine)
    (published / "pretrained_img_to_digit_clf_m0").write_bytes(b"not a state dict")
    assert main(["eval", str(run), "--metrics", "coherence", "--no-progress"]) == 2
    assert "pretrained_img_to_digit_clf_m0 is not a MoPoE PolyMNIST classifier state dict" in capsys.readouterr().err

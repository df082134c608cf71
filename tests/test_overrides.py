"""One override grammar: a command-line value wins over the sweep file everywhere it applies (grid axes, per-model
tables, [run]) or is refused in one line; the plan and the record show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmbench.cli import main
from mmbench.errors import MMBenchError
from mmbench.sweeps.files import load_sweep, train_sweep
from mmbench.sweeps.overrides import parse_overrides

REPO = Path(__file__).resolve().parents[1]

SWEEP = """[sweep]
name = "s"
models = ["mopoe", "mvtcae"]
seeds = [0]

[dataset]
name = "polymnist"
root = "{root}"

[config]
max_steps = 2
latent_dim = 8
batch_size = 64
epochs = 300

[config.mvtcae]
epochs = 250
beta = 1e-5

[grid]
"dataset.modalities" = [2, 3]
beta = [1.0, 2.5]

[evaluate]
metrics = ["coherence"]

[run]
checkpoint_every = 500
"""


@pytest.fixture
def sweep_file(tmp_path, polymnist_pt):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.format(root=polymnist_pt))
    return f


def configs(sweep):
    return [
        (s.model, s.dataset_options.get("modalities"), s.config.get("beta"), s.config.get("epochs"))
        for s in sweep.specs
    ]


def test_without_set_the_file_decides(sweep_file):
    sweep = load_sweep(sweep_file)
    assert sorted({b for m, _, b, _ in configs(sweep) if m == "mopoe"}) == [1.0, 2.5]
    assert {(b, e) for m, _, b, e in configs(sweep) if m == "mvtcae"} == {(1e-5, 250)}  # pinned: once per point


def test_a_config_value_wins_over_the_grid_and_every_per_model_table(sweep_file):
    sweep = load_sweep(sweep_file, ["config.beta=0.5", "config.epochs=5"])
    assert {(m, b, e) for m, _, b, e in configs(sweep)} == {("mopoe", 0.5, 5), ("mvtcae", 0.5, 5)}
    assert len(sweep.specs) == 4  # 2 models x 2 modality counts: the beta axis is gone, not repeated
    for s in sweep.specs:
        assert sweep.from_cli[s.run_id]["beta"] == 0.5 and sweep.from_cli[s.run_id]["epochs"] == 5


def test_a_per_model_value_wins_for_that_model_only(sweep_file):
    sweep = load_sweep(sweep_file, ["config.mopoe.epochs=7"])
    assert {e for m, _, _, e in configs(sweep) if m == "mopoe"} == {7}
    assert {e for m, _, _, e in configs(sweep) if m == "mvtcae"} == {250}
    both = load_sweep(sweep_file, ["config.epochs=5", "config.mvtcae.epochs=9"])
    assert {m: e for m, _, _, e in configs(both)} == {"mopoe": 5, "mvtcae": 9}


def test_grid_axes_are_replaced_from_the_command_line(sweep_file):
    for key in ('grid."dataset.modalities"=[3]', "grid.dataset.modalities=[3]"):
        sweep = load_sweep(sweep_file, [key])
        assert {k for _, k, _, _ in configs(sweep)} == {3}
    sweep = load_sweep(sweep_file, ["grid.beta=[0.5,1.5]"])
    # the command-line axis also replaces the file's [config.mvtcae] pin of beta
    assert {(m, b) for m, _, b, _ in configs(sweep)} == {(m, b) for m in ("mopoe", "mvtcae") for b in (0.5, 1.5)}
    assert {sweep.from_cli[s.run_id]["beta"] for s in sweep.specs} == {0.5, 1.5}
    sweep = load_sweep(sweep_file, ["dataset.modalities=2"])
    assert {k for _, k, _, _ in configs(sweep)} == {2}


def test_run_and_executor_keys_win_and_a_disagreeing_flag_is_refused(sweep_file):
    sweep = load_sweep(sweep_file, ["run.checkpoint_every=7", "run.device=cpu"])
    assert sweep.options.checkpoint_every == 7 and sweep.cli_settings["run.checkpoint_every"] == 7
    assert load_sweep(sweep_file, ["run.device=cpu"], run_options={"device": "cpu"}).options.device == "cpu"
    with pytest.raises(MMBenchError, match="--device auto and --set run.device=cpu disagree"):
        load_sweep(sweep_file, ["run.device=cpu"], run_options={"device": "auto"})
    with pytest.raises(MMBenchError, match="--executor local and --set executor.name=slurm disagree"):
        load_sweep(sweep_file, ["executor.name=slurm"], executor="local")


@pytest.mark.parametrize(
    "item, message",
    [
        ("executor=slurm", "[executor] is a table; set one of its keys, e.g. --set executor.name=slurm"),
        ("config=1", "[config] is a table"),
        ("grid=1", "[grid] is a table"),
        ("grid.beta=0.5", "a grid axis takes a non-empty list"),
        ("grid.beta=[]", "a grid axis takes a non-empty list"),
        ("confg.beta=1", "unknown table 'confg' (did you mean 'config'?)"),
        ("config.mopo.beta=1", "'mopo' is not a model of this sweep"),
        ("config.betta=1", "has no field 'betta'"),
        ("dataset.a.b=1", "dataset options are dataset.OPTION"),
        ("beta", "expected KEY=VALUE"),
        ("config..beta=1", "is not a dotted key"),
    ],
)
def test_values_that_cannot_apply_are_refused_in_one_line(sweep_file, capsys, item, message):
    code = main(["sweep", "plan", str(sweep_file), "--set", item])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_two_command_line_values_for_one_field_are_refused(sweep_file):
    with pytest.raises(MMBenchError, match="both set beta"):
        load_sweep(sweep_file, ["config.beta=1", "grid.beta=[1,2]"])
    with pytest.raises(MMBenchError, match="both set modalities"):
        load_sweep(sweep_file, ["dataset.modalities=2", "grid.dataset.modalities=[2,3]"])


def test_plan_shows_which_values_came_from_the_command_line(sweep_file, capsys, tmp_path):
    assert (
        main(
            [
                "sweep",
                "plan",
                str(sweep_file),
                "--runs",
                str(tmp_path / "r"),
                "--set",
                "config.beta=0.5",
                "--set",
                "run.checkpoint_every=9",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "from --set: run.checkpoint_every=9" in out
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.rstrip().endswith("from --set")
    rows = [line for line in out.splitlines() if line.startswith(("mopoe-", "mvtcae-"))]
    assert len(rows) == 4 and all(line.rstrip().endswith("beta=0.5") for line in rows)


def test_the_record_keeps_the_command_line_value(polymnist_pt, tmp_path, capsys):
    f = tmp_path / "quick.toml"
    f.write_text(
        '[sweep]\nmodels = ["mopoe"]\n[dataset]\nname = "polymnist"\nroot = "nowhere"\n'
        '[config]\nmax_steps = 100\nbeta = 2.0\n[evaluate]\nmetrics = ["coherence"]\n'
    )
    runs = tmp_path / "runs"
    code = main(
        [
            "sweep",
            "submit",
            str(f),
            "--runs",
            str(runs),
            "--no-progress",
            "--set",
            f"dataset.root={polymnist_pt}",
            "--set",
            "config.max_steps=2",
            "--set",
            "config.latent_dim=8",
            "--set",
            "config.beta=0.75",
            "--set",
            "evaluate.metrics=[]",
            "--set",
            "run.tensorboard=false",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(p.read_text()) for p in runs.glob("*/record.json")]
    assert record["status"] == "finished" and record["spec"]["metrics"] == []
    assert record["spec"]["config"]["beta"] == 0.75 and record["spec"]["config"]["max_steps"] == 2
    assert record["options"]["tensorboard"] is False


def test_train_takes_the_same_keys_and_refuses_a_disagreeing_flag(polymnist_pt):
    sweep = train_sweep(
        "mopoe",
        "polymnist",
        str(polymnist_pt),
        0,
        0,
        ["coherence"],
        ["beta=0.5", "config.latent_dim=8", "dataset.modalities=2", "run.checkpoint_every=3"],
        {},
    )
    (spec,) = sweep.specs
    assert spec.config == {"beta": 0.5, "latent_dim": 8} and spec.dataset_options["modalities"] == 2
    assert sweep.options.checkpoint_every == 3 and spec.sweep == "train"
    with pytest.raises(MMBenchError, match="--modalities and --set dataset.modalities=3 disagree"):
        train_sweep("mopoe", "polymnist", str(polymnist_pt), 2, 0, [], ["dataset.modalities=3"], {})
    with pytest.raises(MMBenchError, match="train runs one model once"):
        train_sweep("mopoe", "polymnist", str(polymnist_pt), 0, 0, [], ["grid.beta=[1,2]"], {})
    # --data-root and dataset.root are the same value
    same = train_sweep("mopoe", "polymnist", None, 0, 0, ["coherence"], [f"dataset.root={polymnist_pt}"], {})
    assert same.specs[0].dataset_options["root"] == str(Path(polymnist_pt).resolve())


def test_parse_overrides_reads_toml_values_and_quoted_keys():
    (a, b, c) = parse_overrides(['grid."dataset.modalities"=[2,3]', "config.beta=1e-5", "dataset.root=/x y/z"])
    assert a.path == ("grid", "dataset.modalities") and a.value == [2, 3]
    assert b.value == 1e-5 and c.value == "/x y/z"


def test_the_paper_sweep_keeps_no_silent_loss(polymnist_pt):
    """The issue's example: beta 0.5 and epochs 5 from the command line reach every run of the scaling sweep."""
    sweep = load_sweep(
        REPO / "mmbench" / "resources" / "sweeps" / "polymnist_scaling.toml",
        [f"dataset.root={polymnist_pt}", "config.beta=0.5", "config.epochs=5", "grid.dataset.modalities=[2,3]"],
    )
    assert {(s.config["beta"], s.config["epochs"]) for s in sweep.specs} == {(0.5, 5)}
    assert len(sweep.specs) == 7 * 2 * 3

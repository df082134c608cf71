"""Names that would leave the runs folder are refused in one line naming the field: a sweep's name (in the file
or from --set), the sweep folder and the job ids in its jobs.json, `mmbench sweep logs FILE RUN`, run references
looked up under --runs, --samples and a record's run id; a record's sweep name never reads a file outside."""

from __future__ import annotations

import json

import pytest
from helpers import record, row, write

from mmbench.cli import main
from mmbench.errors import MMBenchError
from mmbench.report.build import build_report
from mmbench.storage.names import check_name, name_problem
from mmbench.storage.records import RunRecord
from mmbench.sweeps.executors import job_log_paths, sweep_folder
from mmbench.sweeps.files import load_sweep

ESCAPES = {
    "../escape": "would leave the folder",
    "..": "would leave the folder",
    "a/../../b": "would leave the folder",
    "/etc/cron.d": "absolute path",
    "\\\\server\\share": "absolute path",
    "C:evil": "absolute path",
    "sub/dir": "path separator",
    "sub\\dir": "path separator",
    ".": "names the folder itself",
    "": "empty",
    "s\n#SBATCH --wrap=evil": "control character",
}

SWEEP = """[sweep]
name = "{name}"
models = ["mopoe"]

[dataset]
name = "polymnist"
root = "/data/pm"

[config]
latent_dim = 8
"""


@pytest.mark.parametrize("name", list(ESCAPES))
def test_a_name_that_would_leave_its_folder_is_refused_naming_the_field(name):
    assert ESCAPES[name] in name_problem(name)
    with pytest.raises(MMBenchError) as refusal:
        check_name(name, "[sweep] name")
    message = str(refusal.value)
    assert message.startswith("[sweep] name = ") and "\n" not in message.replace(repr(name), "")


@pytest.mark.parametrize("name", ["s", "polymnist_scaling", "my.sweep-2", "..hidden", "mopoe-0123456789ab"])
def test_plain_names_pass(name):
    assert name_problem(name) is None and check_name(name, "x") == name


@pytest.mark.parametrize("name", ["../escape", "/tmp/elsewhere", "a/b"])
def test_a_sweep_name_that_would_leave_the_runs_folder_is_refused(tmp_path, capsys, name):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(name=name))
    with pytest.raises(MMBenchError, match=r"s\.toml: \[sweep\] name = .* cannot name a folder"):
        load_sweep(path, check_data=False)
    path.write_text(SWEEP.format(name="fine"))
    assert load_sweep(path, check_data=False).name == "fine"
    assert main(["sweep", "plan", str(path), "--set", f'sweep.name="{name}"', "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[sweep] name" in err
    assert not (tmp_path / ".sweeps").exists()


def test_the_sweep_folder_and_job_ids_stay_inside_the_runs_folder(tmp_path):
    assert sweep_folder(tmp_path, "s") == tmp_path / ".sweeps" / "s"
    with pytest.raises(MMBenchError, match="sweep name = '../../x'"):
        sweep_folder(tmp_path, "../../x")
    with pytest.raises(MMBenchError, match=r"job id in .*jobs\.json = '../../../../home/u/.ssh/id_rsa'"):
        job_log_paths(tmp_path, "s", "../../../../home/u/.ssh/id_rsa")


def test_sweep_logs_refuses_a_run_that_would_leave_and_a_planted_job_id(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(name="s"))
    runs = tmp_path / "runs"
    for run in ("../../secret", "/etc/passwd", "a/b"):
        assert main(["sweep", "logs", str(path), run, "--runs", str(runs)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"mmbench: error: RUN = {run!r}")
    run_id = load_sweep(path, runs_dir=runs, check_data=False).specs[0].run_id
    (runs / ".sweeps" / "s").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    planted = {run_id: {"job_id": "../../../../secret.txt", "executor": "slurm"}}  # someone edited jobs.json
    (runs / ".sweeps" / "s" / "jobs.json").write_text(json.dumps(planted))
    assert main(["sweep", "logs", str(path), run_id, "--runs", str(runs)]) == 2
    captured = capsys.readouterr()
    assert "job id in" in captured.err and "not yours" not in captured.out


def test_a_run_reference_is_looked_up_under_runs_only_as_a_plain_name(tmp_path, capsys, monkeypatch):
    runs, outside = tmp_path / "runs", tmp_path / "outside" / "victim"
    runs.mkdir()
    outside.mkdir(parents=True)
    (outside / "spec.json").write_text("{}")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # from here "../outside/victim" is no folder; from RUNS it would be
    for command in (["eval"], ["samples"], ["prior", "fit"], ["checkpoint", "convert"]):
        extra = ["--trust"] if command[0] == "checkpoint" else []
        assert main([*command, "../outside/victim", "--runs", str(runs), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "RUN = '../outside/victim'" in err and "would leave" in err
    assert main(["eval", "/no/such/run", "--runs", str(runs)]) == 2
    assert "RUN = '/no/such/run'" in capsys.readouterr().err
    assert main(["eval", str(outside), "--runs", str(runs)]) == 2  # a folder given as a path is taken as given
    assert "no run folder" not in capsys.readouterr().err


def test_records_and_samples_name_only_folders_inside_the_runs_folder(tmp_path, capsys):
    with pytest.raises(MMBenchError, match=r"field 'run_id' = '../../x' cannot name a run folder"):
        RunRecord.from_dict(record("../../x"), "r.json")
    runs = tmp_path / "runs"
    write(runs, record("good", metrics=[row("coherence", 1, 0.5)]))
    (runs / "bad").mkdir()
    (runs / "bad" / "record.json").write_text(
        json.dumps(record("../../bad", seed=1, metrics=[row("coherence", 1, 0.4)]))
    )
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "out"), "--samples", "../outside"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--samples = '../outside'" in err
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    assert any("bad/record.json" in s and "cannot name a run folder" in s for s in report.skipped)


def test_a_records_sweep_name_never_reads_a_file_outside_the_runs_folder(tmp_path):
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "sweep.toml").write_text("[sweep]\nseeds = [0, 1, 2]\n")  # RUNS/.sweeps/../../elsewhere/sweep.toml
    write(runs, record("r0", sweep="../../elsewhere", metrics=[row("coherence", 1, 0.5)]))
    (runs / ".sweeps").mkdir()
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    assert report.absent == []  # read, the file outside would have asked for seeds 1 and 2
    (runs / ".sweeps" / "inside").mkdir()
    (runs / ".sweeps" / "inside" / "sweep.toml").write_text("[sweep]\nseeds = [0, 1, 2]\n")
    write(runs, record("r1", sweep="inside", metrics=[row("coherence", 1, 0.5)]))
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    assert [a.split(":")[0] for a in report.absent] == ["sweep inside"]  # the same file inside RUNS is read

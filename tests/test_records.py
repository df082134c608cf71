"""Run records as typed ``RunRecord``s: round-trip, migration of every older schema, one-line refusals of
malformed records naming the file and the field, and a report that renders the good records and names the rest."""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers import record, row, write

from mmbench.errors import MMBenchError
from mmbench.report.build import build_report
from mmbench.report.frames import records_frame
from mmbench.storage.atomic import atomic_write_json
from mmbench.storage.records import (
    MIGRATIONS,
    RECORD,
    SCHEMA,
    MetricRow,
    RunRecord,
    collect_records,
    load_record,
    load_records,
    migrate_1_to_2,
    migrate_2_to_3,
    read_record,
    write_record,
)


def full_record(run_id="r0") -> dict:
    """A record with every field ``runs.execute`` and ``mmbench eval`` write."""
    rec = record(
        run_id, metrics=[{**row("coherence", 1, 0.5), "n_samples": 100}, {**row("fid", 0, 60), "n_samples": 10}]
    )
    rec.update(
        options={"device": "cpu", "nproc": 1, "checkpoint_every": 0},
        job={"owner": "host:1", "executor": "inline"},
        device="cpu (2 threads)",
        device_info={"type": "cpu", "threads": 2},
        data={"release": "published", "train": 64, "test": 32},
        train={
            "steps": 10,
            "epochs": 1,
            "seconds": 1.5,
            "history": [{"epoch": 0, "loss": 1.0}],
            "examples_per_s": 400.0,
            "s_per_step": 0.15,
        },
        generation={"examples_per_s": 1000.0},
        timings={"train_s": 1.5, "eval_s": 0.5, "total_s": 2.0},
        metric_provenance={"fid": {"weights": "pt_inception", "dims": 2048, "standard_weights": True}},
        evaluations=[
            {
                "metrics": ["fid"],
                "priors": ["gaussian"],
                "seconds": 0.5,
                "peak_memory_mb": 10.0,
                "device": "cpu",
                "at": "2026-11-20T10:00:00+00:00",
            }
        ],
    )
    return rec


def put(tmp_path, text: str | bytes, name="bad"):
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# -- round trip ----------------------------------------------------------------------------------------------


def test_a_record_round_trips_and_is_written_as_before(tmp_path):
    rec = full_record()
    typed = RunRecord.from_dict(rec, "r0")
    assert typed.to_dict() == rec
    assert RunRecord.from_dict(typed.to_dict()) == typed
    assert (typed.model, typed.dataset, typed.seed, typed.sweep, typed.git, typed.release) == (
        "mopoe",
        "polymnist",
        0,
        "s",
        "abc",
        "published",
    )
    assert typed.metrics[0] == MetricRow("coherence", "*", "*", 1, 0.5, 100, "")
    assert typed.finished and typed.n_modalities == 5 and typed.train["steps"] == 10

    atomic_write_json(tmp_path / "as_before.json", rec)  # how records were written: the same bytes now
    path = write_record(tmp_path / "r0", typed)
    assert path.read_bytes() == (tmp_path / "as_before.json").read_bytes()
    assert load_record(path) == typed and read_record(path) == rec


def test_keys_this_mmbench_does_not_know_are_kept(tmp_path):
    rec = {**record("r1"), "from_a_plugin": {"x": [1, 2]}, "note": "kept"}
    typed = RunRecord.from_dict(rec)
    assert typed.extra == {"from_a_plugin": {"x": [1, 2]}, "note": "kept"}
    write_record(tmp_path, typed)
    assert json.loads((tmp_path / RECORD).read_text())["from_a_plugin"] == {"x": [1, 2]}


def test_absent_fields_stay_absent_and_a_failed_run_reads():
    rec = record("r2", status="failed", failure="CUDA out of memory")
    for key in ("config", "n_modalities", "data", "provenance", "finished_at"):
        del rec[key]
    typed = RunRecord.from_dict(rec)
    assert typed.config is None and typed.release is None and typed.git == "unknown" and not typed.finished
    assert typed.to_dict() == rec


def test_new_rows_replace_the_rows_that_measure_the_same_thing():
    typed = RunRecord.from_dict(record("r3", metrics=[row("coherence", 1, 0.5), row("fid", 0, 60.0)]))
    again = typed.with_rows(
        [MetricRow("fid", "*", "", 0, 55.0, 10, "gaussian"), MetricRow("fid", "*", "", 0, 70.0, 10, "score")]
    )
    assert [(r.metric, r.prior, r.value) for r in again.metrics] == [
        ("coherence", "", 0.5),
        ("fid", "gaussian", 55.0),
        ("fid", "score", 70.0),
    ]
    assert len(typed.metrics) == 2  # frozen: the record it came from is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.status = "failed"


def test_a_numpy_value_from_a_metric_is_written_as_a_json_number(tmp_path):
    np = pytest.importorskip("numpy")
    typed = RunRecord.from_dict(record("r4")).with_rows([MetricRow("f1", "*", "*", np.int64(1), np.float32(0.25))])
    write_record(tmp_path, typed)
    assert json.loads((tmp_path / RECORD).read_text())["metrics"][0]["value"] == 0.25


# -- migrations ----------------------------------------------------------------------------------------------


def schema1_record(run_id="old") -> dict:
    """A record as mmbench wrote it before schema 2: no "schema", the prior inside the metric's name, rows
    without n_samples or prior."""
    rec = record(
        run_id,
        schema=1,
        metrics=[
            {"metric": "coherence", "target": "*", "given": "*", "n_given": 1, "value": 0.5},
            {"metric": "latent_frechet@prior:score", "target": "*", "given": "", "n_given": 0, "value": 3.0},
            {"metric": "coherence@prior:gaussian", "target": "*", "given": "", "n_given": 0, "value": 0.2},
        ],
    )
    for key in ("schema", "data"):
        del rec[key]
    return rec


def test_every_older_schema_has_a_migration():
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA))


def test_a_schema_1_record_is_migrated_when_read(tmp_path):
    old = schema1_record()
    path = put(tmp_path, json.dumps(old), "old")
    typed = load_record(path)
    assert typed.schema == SCHEMA == 4
    assert [(r.metric, r.prior, r.n_samples) for r in typed.metrics] == [
        ("coherence", "", None),
        ("latent_frechet", "score", None),
        ("coherence", "gaussian", None),
    ]
    assert old["metrics"][1]["metric"] == "latent_frechet@prior:score"  # the migration copies, never edits

    migrated = migrate_1_to_2(old)
    assert migrated["schema"] == 2 and migrated["metrics"][1]["prior"] == "score"

    frame = records_frame([typed])  # the report sees the prior split out, as for a schema-2 record
    assert set(zip(frame.metric, frame.prior)) == {
        ("coherence", ""),
        ("latent_frechet", "score"),
        ("coherence", "gaussian"),
    }

    write_record(path.parent, typed)  # a rewrite (mmbench eval) stores it in the current schema
    again = json.loads(path.read_text())
    assert again["schema"] == 4 and again["metrics"][1] == {
        "metric": "latent_frechet",
        "target": "*",
        "given": "",
        "n_given": 0,
        "value": 3.0,
        "n_samples": None,
        "prior": "score",
    }
    assert load_record(path) == typed


def test_a_schema_2_record_is_migrated_and_reads_as_complete_data(tmp_path):
    old = record("two", schema=2)
    path = put(tmp_path, json.dumps(old), "two")
    typed = load_record(path)
    assert typed.schema == SCHEMA == 4 and typed.observed is None and typed.missing_rate == 0.0
    assert migrate_2_to_3(old) == {**old, "schema": 3} and old["schema"] == 2  # a copy
    write_record(path.parent, typed)
    assert json.loads(path.read_text())["schema"] == 4 and load_record(path) == typed


def test_a_record_keeps_the_observed_fraction_per_modality(tmp_path):
    rec = record("obs", missing_rate=0.25, observed={"m0": 0.75, "m1": 0.8})
    typed = RunRecord.from_dict(rec, "obs")
    assert typed.observed == {"m0": 0.75, "m1": 0.8} and typed.missing_rate == 0.25
    assert RunRecord.from_dict(typed.to_dict(), "obs") == typed
    table = record("tab", missing_rate={"m0": 0.5}, observed={"m0": 0.5, "m1": 1.0})
    assert RunRecord.from_dict(table, "tab").missing_rate == 0.25  # the realised mean missing fraction
    with pytest.raises(MMBenchError, match=r"field 'observed.m1' must be a fraction in \[0, 1\], got float"):
        RunRecord.from_dict(record("bad", observed={"m0": 1.0, "m1": 1.5}), "bad")


# -- refusals: one line naming the file and the field --------------------------------------------------------


def _with(**changes):
    rec = record("x", metrics=[row("coherence", 1, 0.5)])
    for key, value in changes.items():
        if value is _DROP:
            del rec[key]
        else:
            rec[key] = value
    return json.dumps(rec)


def _row_with(**changes):
    r = row("coherence", 1, 0.5)
    for key, value in changes.items():
        if value is _DROP:
            del r[key]
        else:
            r[key] = value
    return _with(metrics=[r])


_DROP = object()
_spec = record("x")["spec"]

MALFORMED = {
    "empty object": ("{}", "field 'metrics' is missing"),
    "no run_id": (_with(run_id=_DROP), "field 'run_id' is missing"),
    "no spec": (_with(spec=_DROP), "field 'spec' is missing"),
    "no status": (_with(status=_DROP), "field 'status' is missing"),
    "run_id a number": (_with(run_id=3), "field 'run_id' must be a string, got int"),
    "run_id empty": (_with(run_id=""), "field 'run_id' must be a non-empty string, got an empty one"),
    "failure a number": (_with(failure=1), "field 'failure' must be a string or null, got int"),
    "spec a list": (_with(spec=[]), "field 'spec' must be an object (the run's spec), got list"),
    "spec without seed": (_with(spec={k: v for k, v in _spec.items() if k != "seed"}), "field 'spec.seed' is missing"),
    "seed a string": (_with(spec={**_spec, "seed": "0"}), "field 'spec.seed' must be an integer, got str"),
    "metrics a dict": (_with(metrics={}), "field 'metrics' must be a list of rows, got dict"),
    "metrics null": (_with(metrics=None), "field 'metrics' must be a list of rows, got null"),
    "a row a number": (_with(metrics=[1.0]), "field 'metrics[0]' must be a row (an object), got float"),
    "a row without value": (_row_with(value=_DROP), "field 'metrics[0].value' is missing"),
    "a value a string": (_row_with(value="0.5"), "field 'metrics[0].value' must be a number, got str"),
    "n_given a boolean": (_row_with(n_given=True), "field 'metrics[0].n_given' must be an integer, got bool"),
    "a row with a stray key": (_row_with(colour="red"), "field 'metrics[0]' has keys ['colour']"),
    "provenance a list": (_with(provenance=["abc"]), "field 'provenance' must be an object, got list"),
    "n_modalities a string": (_with(n_modalities="5"), "field 'n_modalities' must be an integer, got str"),
    "evaluations of strings": (_with(evaluations=["x"]), "field 'evaluations[0]' must be an object, got str"),
    "schema 99": (_with(schema=99), "has schema 99; this mmbench reads schemas 1 to 4: a newer mmbench wrote it"),
    "schema 0": (_with(schema=0), "has schema 0; this mmbench reads schemas 1 to 4"),
    "schema a string": (
        _with(schema="x"),
        "field 'schema' must be an integer (this mmbench reads schemas 1 to 4), got str",
    ),
    "a JSON list": ("[1, 2]", "must be a JSON object, got list"),
    "a JSON string": ('"record"', "must be a JSON object, got str"),
    "truncated JSON": ('{"run_id": "corr', "is not valid JSON"),
    "an empty file": ("", "is not valid JSON"),
    "binary garbage": (bytes(range(256)) * 4, "is not valid JSON"),
    "PNG bytes": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_record_is_refused_in_one_line_naming_file_and_field(tmp_path, case):
    text, says = MALFORMED[case]
    path = put(tmp_path, text)
    with pytest.raises(MMBenchError) as caught:
        load_record(path)
    message = str(caught.value)
    assert message.startswith(f"run record {path}") and says in message
    assert "\n" not in message
    with pytest.raises(MMBenchError, match="run record"):
        read_record(path)


def test_a_missing_or_unreadable_record_is_one_line(tmp_path):
    with pytest.raises(MMBenchError, match=r"run record .*nowhere/record.json does not exist"):
        load_record(tmp_path / "nowhere" / RECORD)
    (tmp_path / "dir" / RECORD).mkdir(parents=True)
    with pytest.raises(MMBenchError, match=r"run record .*dir/record.json cannot be read"):
        load_record(tmp_path / "dir" / RECORD)


def test_from_dict_names_the_record_it_is_given():
    with pytest.raises(
        MMBenchError, match=r"^run record R/record.json: field 'metrics' must be a list of rows, got dict$"
    ):
        RunRecord.from_dict({"run_id": "x", "status": "finished", "spec": {}, "metrics": {}}, "R/record.json")


# -- readers of many records ---------------------------------------------------------------------------------


def test_the_report_renders_the_good_records_and_names_every_bad_one(tmp_path, capsys):
    runs = tmp_path / "runs"
    write(runs, record("good", metrics=[row("coherence", 1, 0.5)]))
    old = schema1_record("old")
    write(runs, old)
    bad = {f"bad{i:02d}": text for i, (text, _) in enumerate(MALFORMED.values())}
    for name, text in bad.items():
        put(runs, text, name)

    records, skipped = collect_records(runs)
    assert [r.run_id for r in records] == ["good", "old"]
    assert sorted(p.parent.name for p, _ in skipped) == sorted(bad)
    for path, why in skipped:
        assert why == str(pytest.raises(MMBenchError, load_record, path).value)
    with pytest.raises(MMBenchError, match="bad00/record.json"):
        load_records(runs)  # the strict reader refuses the first

    report = build_report(runs, tmp_path / "out", None, samples=[], log=print)
    assert report.records == 2 and len(report.skipped) == len(bad)
    text = report.readme.read_text()
    for name in bad:
        assert f"{name}/record.json" in text
    assert "field 'metrics' must be a list of rows, got dict" in text
    assert "| mopoe" in text and "50.0" in text  # the good record's coherence, 1 given
    said = capsys.readouterr().out
    assert "2 record(s)" in said and said.count("skipped: record") == len(bad)

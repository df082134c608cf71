"""Property tests (hypothesis) of the parsers a user feeds: sweep tables, ``--set`` items, run ids and run records.
Whatever the input, a parser returns or refuses in one MMBenchError line; any other exception fails."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from helpers import record, row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmbench.errors import MMBenchError
from mmbench.runs.spec import RunSpec
from mmbench.storage.records import RECORD, SCHEMA, RunRecord, load_record
from mmbench.sweeps.files import load_sweep, sweep_from_doc, train_sweep

DEEP = "[" * 100_000 + "]" * 100_000  # nested beyond any parser's recursion
SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# -- values of any TOML (and JSON) type --------------------------------------------------------------------

words = st.sampled_from(
    [
        "sweep", "dataset", "config", "grid", "evaluate", "run", "executor", "name", "models", "seeds",
        "runs_dir", "root", "views", "n", "size", "seed", "modalities", "beta", "lr", "latent_dim",
        "batch_size", "epochs", "max_steps", "precision", "grad_clip", "mopoe", "mvae", "coherence", "metrics",
        "device", "nproc", "checkpoint_every", "log_every", "tensorboard", "memory_format", "partition",
        "timeout_min", "gpus_per_node", "tasks_per_node", "mem_gb", "dataset.modalities", "dataset.n",
        "classifier_epochs", "synthetic", "inline", "local", "slurm", "classifiers", "checkpoint", "weights",
        "fid", "clip_score", "probe", "f1", "max_test", "n_samples", "dims", "conditional", "attributes",
    ]
)  # fmt: skip
odd = st.sampled_from(["", "~", "~nobody_xyz/d", "a\x00b", "..", "/", "a/b", "-0", "x" * 300, "\n", "image"])
text = st.one_of(words, st.from_regex(r"[a-z_.]{1,8}", fullmatch=True), odd, st.text(max_size=12))
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.5, 1e-5])
ints = st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 600)
dates = st.one_of(st.datetimes(), st.dates(), st.times())
scalars = st.one_of(text, ints, floats, st.booleans(), dates)
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=8,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False), text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=10,
)


def mutate(draw, doc, values, depth=3):
    """``doc`` with a few random edits: a key removed, renamed or added, a value replaced (at any depth)."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(0, 4))):
        node = doc
        for _ in range(draw(st.integers(0, depth))):
            children = [k for k, v in node.items() if isinstance(v, dict)] if isinstance(node, dict) else []
            if not children:
                break
            node = node[draw(st.sampled_from(sorted(children, key=str)))]
        if not isinstance(node, dict):
            continue
        keys = sorted(node, key=str)
        op = draw(st.sampled_from(["drop", "rename", "add", "replace", "replace", "list_item"]))
        if op == "add" or not keys:
            node[draw(text)] = draw(values)
            continue
        key = draw(st.sampled_from(keys))
        if op == "drop":
            del node[key]
        elif op == "rename":
            node[draw(text)] = node.pop(key)
        elif op == "list_item" and isinstance(node[key], list) and node[key]:
            node[key][draw(st.integers(0, len(node[key]) - 1))] = draw(values)
        else:
            node[key] = draw(values)
    return doc


def one_line_error(exc: BaseException, *names: str) -> None:
    message = str(exc)
    assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    for name in names:
        assert name in message, f"{name!r} not named in {message!r}"


# -- sweep files -------------------------------------------------------------------------------------------

SWEEP = {
    "sweep": {"name": "p", "models": ["mopoe", "mvae"], "seeds": [0, 1], "runs_dir": "runs"},
    "dataset": {"name": "synthetic", "root": "data", "n": 16, "size": 8, "views": ["image", "attributes"]},
    "config": {"max_steps": 1, "latent_dim": 4, "batch_size": 8, "mvae": {"beta": 1.0}},
    "grid": {"beta": [1.0, 2.0], "dataset.n": [16, 32]},
    "evaluate": {"metrics": ["coherence"], "coherence": {"classifier_epochs": 1}},
    "run": {"device": "cpu", "checkpoint_every": 10},
    "executor": {"name": "inline"},
}


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def load_or_refuse(doc, overrides=None, runs_dir=None):
    try:
        return sweep_from_doc(copy.deepcopy(doc), "sweep file p.toml", overrides, runs_dir=runs_dir)
    except MMBenchError as exc:
        one_line_error(exc)
        return None


def test_the_skeleton_loads(scratch):
    sweep = load_or_refuse(SWEEP, runs_dir=scratch)
    assert sweep is not None and len(sweep.specs) == 2 * 2 * 2 * 2 - 2 * 2  # mvae pins beta: once per n and seed


@settings(max_examples=400, **SETTINGS)
@given(st.data())
def test_mutated_sweep_documents_load_or_are_refused_in_one_line(data):
    load_or_refuse(mutate(data.draw, SWEEP, toml_values))


@settings(max_examples=60, **SETTINGS)
@given(st.dictionaries(text, toml_values, max_size=6))
def test_arbitrary_sweep_documents_are_refused_in_one_line(doc):
    assert load_or_refuse(doc) is None or set(doc) >= {"sweep", "dataset"}


@settings(max_examples=40, **SETTINGS)
@given(st.text(max_size=80) | st.sampled_from(["[sweep]\nmodels = [", "[a.b]\nx = 1\n[a]\nb = 2", "x = " + DEEP]))
def test_arbitrary_sweep_text_loads_or_is_refused_in_one_line(scratch, source):
    path = scratch / "text.toml"
    path.write_text(source)
    try:
        load_sweep(path)
    except MMBenchError as exc:
        one_line_error(exc)


# -- --set items -------------------------------------------------------------------------------------------

segments = st.one_of(words, words, st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=6))
segments |= st.sampled_from(['"dataset.modalities"', '"dataset.root"', '"a b"', "", '""'])
tables = st.sampled_from(["sweep", "dataset", "config", "grid", "evaluate", "run", "executor"])
plausible_keys = st.sampled_from(
    ["config.beta", "config.lr", "config.latent_dim", "config.epochs", "config.precision", "config.mopoe.beta",
     "config.mvae", "config.mvtcae.beta", "dataset.n", "dataset.size", "dataset.views", "dataset.root",
     "dataset.modalities", "grid.beta", "grid.lr", "grid.dataset.n", 'grid."dataset.size"', "grid.dataset.root",
     "sweep.seeds", "sweep.models", "sweep.name", "sweep.runs_dir", "evaluate.metrics",
     "evaluate.coherence.classifier_epochs", "evaluate.coherence.classifiers", "evaluate.fid.dims", "run.device",
     "run.nproc", "run.checkpoint_every", "run.tensorboard", "run.memory_format", "executor.name",
     "executor.timeout_min", "executor.partition", "executor.mem_gb", "executor.gpus_per_node"]
)  # fmt: skip
keys = st.builds(lambda t, rest: ".".join([t, *rest]), tables | segments, st.lists(segments, max_size=3))
keys = st.integers(0, 9).flatmap(lambda i: plausible_keys if i < 6 else keys if i < 9 else st.text(max_size=12))
toml_literals = st.sampled_from(
    ["1", "1.0", "-0.0", "nan", "inf", "-inf", "true", "[]", "[1, 2]", '["a"]', "{}", "{beta = 1}", '"x"', "'x'",
     "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "0x10", "1e400", "[1, [2]]", '"a\\nb"', "[,]", "{",
     "~nobody_xyz/d", '"a\\u0000b"', "[5]", '["image"]', "[{a = 1}]", '["~nobody_xyz"]', "9223372036854775807", DEEP]
)  # fmt: skip
small = st.integers(-2, 40).map(str) | st.lists(st.integers(0, 40), max_size=3).map(str)
set_values = st.one_of(toml_literals, words, small, st.text(max_size=12), floats.map(repr), ints.map(str))
item = st.builds(lambda k, v, sep: f"{k}{sep}{v}", keys, set_values, st.sampled_from(["=", "=", " = ", "=="]))
items = st.integers(0, 9).flatmap(lambda i: st.text(max_size=16) if i == 0 else item)  # mostly KEY=VALUE


@settings(max_examples=400, **SETTINGS)
@given(st.lists(items, min_size=1, max_size=3))
def test_set_items_apply_or_are_refused_in_one_line(overrides):
    load_or_refuse(SWEEP, overrides)


@settings(max_examples=80, **SETTINGS)
@given(st.lists(items, max_size=3), st.sampled_from([None, "/tmp/data"]), st.sampled_from([0, 2]))
def test_train_set_items_apply_or_are_refused_in_one_line(overrides, data_root, modalities):
    try:
        train_sweep("mopoe", "synthetic", data_root, modalities, 0, [], overrides, {"device": "cpu"})
    except MMBenchError as exc:
        one_line_error(exc)


@settings(max_examples=60, **SETTINGS)
@given(st.floats(min_value=0, max_value=1e30, allow_nan=False, allow_infinity=False))
def test_a_beta_from_the_command_line_is_every_run_s_beta(beta):
    sweep = sweep_from_doc(copy.deepcopy(SWEEP), "sweep file p.toml", [f"config.beta={beta!r}"])
    assert len(sweep.specs) == 2 * 2 * 2  # the grid's beta axis and mvae's pin are replaced, not repeated
    for spec in sweep.specs:
        assert spec.config["beta"] == beta and spec.normalized()["config"]["beta"] == beta
        assert sweep.from_cli[spec.run_id]["beta"] == beta


# -- run ids -----------------------------------------------------------------------------------------------

DEFAULTS = {"latent_dim": 512, "beta": 2.5, "lr": 5e-4, "batch_size": 256, "epochs": 300, "max_steps": 0}
FLOATS = {"beta", "lr", "grad_clip", "likelihood_scale"}
config_values = {
    "latent_dim": st.integers(1, 2048),
    "batch_size": st.integers(1, 1024),
    "epochs": st.integers(0, 500),
    "max_steps": st.integers(0, 10**6),
    "beta": st.floats(0, 100, allow_nan=False) | st.integers(0, 100),
    "lr": st.floats(1e-8, 1, allow_nan=False),
    "grad_clip": st.floats(0, 10, allow_nan=False) | st.integers(0, 10),
    "likelihood_scale": st.floats(0.01, 10, allow_nan=False),
    "precision": st.sampled_from(["fp32", "bf16"]),
}
configs = st.fixed_dictionaries({}, optional=config_values)


def make_spec(config, ds=None, metrics=("coherence",), metric_options=None, seed=0):
    return RunSpec("mopoe", "synthetic", ds or {"n": 16}, config, seed, tuple(metrics), metric_options or {})


def spelled_otherwise(draw, config):
    """The same config written otherwise: default-valued fields added or dropped, whole floats as integers (and
    integers as whole floats), keys in another order."""
    out = {}
    for key, value in config.items():
        if key in FLOATS and float(value).is_integer() and abs(value) < 2**53 and draw(st.booleans()):
            value = int(value) if isinstance(value, float) else float(value)
        elif isinstance(value, int) and key not in FLOATS and draw(st.booleans()):
            value = float(value)
        out[key] = value
    for key, value in DEFAULTS.items():
        if key not in out and draw(st.booleans()):
            out[key] = value
    for key in [k for k, v in out.items() if DEFAULTS.get(k) == v]:
        if draw(st.booleans()):
            del out[key]
    order = draw(st.permutations(sorted(out)))
    return {k: out[k] for k in order}


@settings(max_examples=150, **SETTINGS)
@given(st.data(), configs)
def test_specs_of_one_resolved_config_have_one_id_and_others_another(data, config):
    spec = make_spec(config)
    again = make_spec(
        spelled_otherwise(data.draw, config),
        ds=data.draw(st.sampled_from([{"n": 16}, {"n": 16, "size": 32, "seed": 0}, {"seed": 0, "n": 16}])),
        metrics=data.draw(st.sampled_from([("coherence",), ("coherence", "coherence")])),
        metric_options=data.draw(st.sampled_from([{}, {"coherence": {}}])),
    )
    assert again.run_id == spec.run_id and again.normalized() == spec.normalized()
    assert RunSpec.from_dict(spec.to_dict()).run_id == spec.run_id  # spec.json gives the run back

    field = data.draw(st.sampled_from(sorted(config_values)))
    other = data.draw(config_values[field].filter(lambda v: v != spec.normalized()["config"][field]))
    changed = make_spec({**config, field: other})
    assert changed.run_id != spec.run_id
    assert make_spec(config, seed=1).run_id != spec.run_id
    assert make_spec(config, ds={"n": 17}).run_id != spec.run_id


def test_a_float_field_spelled_as_an_integer_or_minus_zero_is_one_run():
    assert make_spec({"beta": 1}).run_id == make_spec({"beta": 1.0}).run_id
    assert make_spec({"grad_clip": -0.0}).run_id == make_spec({}).run_id
    assert make_spec({"epochs": 300.0}).run_id == make_spec({}).run_id


# -- run records -------------------------------------------------------------------------------------------


def old_record(schema: int) -> dict:
    """A valid record of ``schema`` (1: the prior inside the metric's name, no schema key)."""
    if schema == 1:
        rec = record("r1", metrics=[row("coherence@prior:score", 1, 0.5), row("fid", 0, 60)])
        rec.pop("schema")
        for r in rec["metrics"]:
            r.pop("prior")
        return rec
    rec = record("r2", metrics=[{**row("coherence", 1, 0.5), "n_samples": 100}])
    rec.update(options={"device": "cpu"}, job={"owner": "h:1"}, timings={"total_s": 1.0}, evaluations=[{"at": "x"}])
    rec["schema"] = schema
    if schema < 3:
        rec.pop("observed", None)
    return rec


@st.composite
def records(draw):
    kind = draw(st.sampled_from(["mutated1", "mutated2", "mutated2", "any"]))
    if kind == "any":
        return draw(json_values)
    return mutate(draw, old_record(1 if kind == "mutated1" else 2), json_values, depth=2)


@settings(max_examples=300, **SETTINGS)
@given(records())
def test_records_of_any_schema_load_or_are_refused_naming_the_file(scratch, rec):
    path = scratch / "r" / RECORD
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(rec, default=str))
    try:
        loaded = load_record(path)
    except MMBenchError as exc:
        one_line_error(exc, str(path))
        return
    assert isinstance(loaded, RunRecord)
    assert RunRecord.from_dict(loaded.to_dict()) == loaded  # what was read is written back the same


@settings(max_examples=60, **SETTINGS)
@given(st.binary(max_size=64) | st.sampled_from([b'{"schema": 1e400}', b'{"schema": 2', b"NaN", DEEP.encode()]))
def test_record_bytes_load_or_are_refused_naming_the_file(scratch, data):
    path = scratch / "b" / RECORD
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        load_record(path)
    except MMBenchError as exc:
        one_line_error(exc, str(path))


def test_every_older_schema_migrates():
    for schema in range(1, SCHEMA + 1):
        rec = load_record_dict(old_record(schema))
        assert rec.schema == SCHEMA and all(isinstance(r.prior, str) for r in rec.metrics)
    assert load_record_dict(old_record(1)).metrics[0].prior == "score"


def load_record_dict(d):
    return RunRecord.from_dict(d, "(test)")


# -- inputs that once escaped as tracebacks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "items, message",
    [
        (["dataset.root=~nobody_xyz/d"], "[dataset] root = '~nobody_xyz/d' is not a usable path"),
        (['dataset.root="a\\u0000b"'], "is not a usable path (embedded null byte)"),
        (["dataset.root=5"], "[dataset] root = 5 must be a path (a string)"),
        (["sweep.runs_dir=[1]"], "[sweep] runs_dir = [1] must be a path (a string)"),
        (["#=1"], "'#' is not a dotted key"),
        (['"a\\nb"=1'], "unknown table 'a\\nb'"),
        (["config.beta=nan"], "beta = nan is out of range"),
        (["evaluate.coherence.classifiers=~nobody_xyz"], "bad options for metric 'coherence'"),
        (["dataset.name=[1]"], "unknown dataset [1]"),
    ],
)
def test_inputs_that_raised_tracebacks_are_one_line(items, message):
    with pytest.raises(MMBenchError) as exc:
        sweep_from_doc(copy.deepcopy(SWEEP), "sweep file p.toml", items)
    one_line_error(exc.value, message)


def test_paths_of_train_are_one_line():
    with pytest.raises(MMBenchError, match="--data-root = '~nobody_xyz' is not a usable path"):
        train_sweep("mopoe", "synthetic", "~nobody_xyz", 0, 0, [], [], {})
    with pytest.raises(MMBenchError, match="--set dataset.root = 5 must be a path"):
        train_sweep("mopoe", "synthetic", "/tmp/d", 0, 0, [], ["dataset.root=5"], {})


def test_a_spec_json_number_beyond_a_float_is_one_line():
    with pytest.raises(MMBenchError, match="MoPoEConfig.beta must be a number, got an integer too large"):
        RunSpec.from_dict({"model": "mopoe", "dataset": "synthetic", "config": {"beta": 10**400}}).validate()

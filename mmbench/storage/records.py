"""Run records: one JSON file per run (``record.json``), written atomically and read back as a typed ``RunRecord``.

Reading is the one place a record is checked: the JSON is parsed, its schema is migrated step by step to the
current one (``MIGRATIONS``) and every field's type is validated, so a malformed record is refused with one line
naming the file and the field. Everything above reads the record's attributes, never its keys. ``read_record``
and ``read_records`` give the same records as plain dicts (``RunRecord.to_dict``), for scripts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from mmbench.errors import MMBenchError
from mmbench.storage.atomic import atomic_write_json
from mmbench.storage.names import name_problem
from mmbench.storage.validate import get_field, is_int, is_number, kind_of, parse_json, read_bytes, refuse

RECORD = "record.json"
# The layout of record.json.
#   1: no "schema" key; a row measured under a fitted prior named it inside the metric ("coherence@prior:score")
#      and rows may lack "n_samples" and "prior".
#   2: "schema"; rows carry "prior" (and "n_samples"); device_info, options, job, train throughput, generation
#      (and, optional, "data": the dataset release and split sizes).
#   3: "observed" (optional): {modality: fraction of the training tuples that observe it} (mmbench.data.missing);
#      absent: every modality of every tuple observed, as in every record written before masks existed.
#   4: "stages" (optional): a model trained in stages (mmbench.stages) lists each stage's cost,
#      [{"name", "steps", "epochs", "seconds", "reused": the stored result's id or null}]; absent: one stage.
# A record of an older schema is migrated when read (``MIGRATIONS``); a record of a later schema is refused
# (written by a newer mmbench).
SCHEMA = 4


@dataclass(frozen=True)
class MetricRow:
    """One number: metric, target modality ("*" for an average), given modalities ("m0+m1"; "" when
    unconditional; "*" for an average), n_given (0 when unconditional), value, the number of samples it
    was computed from (None when not sampled) and the prior unconditional samples came from ("" when none;
    "gaussian" for the model's own p(z), or a fitted prior's kind)."""

    metric: str
    target: str
    given: str
    n_given: int
    value: float
    n_samples: int | None = None
    prior: str = ""

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        """What a row measures: a later row with the same key replaces it (``RunRecord.with_rows``)."""
        return (self.metric, self.target, self.given, self.n_given, self.prior)

    def to_dict(self) -> dict:
        return asdict(self)


# -- validation: one line naming the file and the field (mmbench.storage.validate) ----------------------------


def _where(path: Path | str) -> str:
    return f"run record {path}"


def _refuse(path: Path | str, name: str, want: str, value: Any) -> MMBenchError:
    return refuse(_where(path), name, want, value)


def _field(
    d: dict, key: str, kind: str, path: Path | str, *, prefix: str = "", required: bool = False, nullable: bool = False
) -> Any:
    """``d[key]`` checked to be of ``kind`` (None when absent and not required; null allowed when nullable)."""
    return get_field(d, key, kind, _where(path), prefix=prefix, required=required, nullable=nullable)


def _row(d: Any, path: Path | str, i: int) -> MetricRow:
    prefix = f"metrics[{i}]."
    if isinstance(d, MetricRow):
        d = d.to_dict()
    if not isinstance(d, dict):
        raise _refuse(path, f"metrics[{i}]", "a row (an object)", d)
    unknown = sorted(set(d) - set(MetricRow.__dataclass_fields__))
    if unknown:
        raise MMBenchError(
            f"run record {path}: field 'metrics[{i}]' has keys {unknown} that a row does not have "
            f"(a row has {list(MetricRow.__dataclass_fields__)})"
        )
    return MetricRow(
        metric=_field(d, "metric", "str", path, prefix=prefix, required=True),
        target=_field(d, "target", "str", path, prefix=prefix, required=True),
        given=_field(d, "given", "str", path, prefix=prefix, required=True),
        n_given=_field(d, "n_given", "int", path, prefix=prefix, required=True),
        value=_field(d, "value", "number", path, prefix=prefix, required=True),
        n_samples=_field(d, "n_samples", "int", path, prefix=prefix, nullable=True),
        prior=_field(d, "prior", "str", path, prefix=prefix) or "",
    )


STAGE_COST = (("name", "str"), ("steps", "int"), ("epochs", "int"), ("seconds", "number"))


def _stage(d: Any, path: Path | str, i: int) -> dict:
    """One entry of "stages": a stage's name, steps, epochs, seconds and the stored result it reused (or null)."""
    if not isinstance(d, dict):
        raise _refuse(path, f"stages[{i}]", "a stage's cost (an object)", d)
    for key, kind in STAGE_COST:
        _field(d, key, kind, path, prefix=f"stages[{i}].", required=True)
    if "reused" not in d:
        raise MMBenchError(f"run record {path}: field 'stages[{i}].reused' is missing")
    _field(d, "reused", "str", path, prefix=f"stages[{i}].", nullable=True)
    for key in ("steps", "epochs", "seconds"):
        if d[key] < 0:
            raise MMBenchError(f"run record {path}: field 'stages[{i}].{key}' must be >= 0, got {d[key]!r}")
    return d


def _spec(d: Any, path: Path | str) -> dict:
    """The run's resolved spec (``RunSpec.to_dict``), kept as written; the fields the report reads are checked."""
    if not isinstance(d, dict):
        raise _refuse(path, "spec", "an object (the run's spec)", d)
    _field(d, "model", "str", path, prefix="spec.", required=True)
    _field(d, "dataset", "str", path, prefix="spec.", required=True)
    _field(d, "seed", "int", path, prefix="spec.", required=True)
    for key, kind in (
        ("dataset_options", "dict"),
        ("config", "dict"),
        ("metrics", "list"),
        ("metric_options", "dict"),
        ("sweep", "str"),
        ("run_id", "str"),
    ):
        _field(d, key, kind, path, prefix="spec.", nullable=True)
    return d


# -- migrations: schema N -> N + 1, applied in order ---------------------------------------------------------


def migrate_1_to_2(d: dict) -> dict:
    """Schema 1 -> 2: a row's prior moves out of its metric name ("coherence@prior:score" -> metric
    "coherence", prior "score"); a row without a prior gets "" (the fields schema 2 added stay absent).
    Returns a new dict; what is malformed is left as it is, for the validation to name."""
    out = {**d, "schema": 2}
    if isinstance(d.get("metrics"), list):
        out["metrics"] = [_migrate_row_1_to_2(r) if isinstance(r, dict) else r for r in d["metrics"]]
    return out


def _migrate_row_1_to_2(r: dict) -> dict:
    r = {**r, "prior": r.get("prior") or ""}
    if isinstance(r.get("metric"), str) and "@prior:" in r["metric"]:
        r["metric"], r["prior"] = r["metric"].split("@prior:", 1)
    return r


def migrate_2_to_3(d: dict) -> dict:
    """Schema 2 -> 3: "observed" is new and optional; a schema-2 run trained on complete data, which a record
    without "observed" means, so only the schema changes. Returns a new dict."""
    return {**d, "schema": 3}


def migrate_3_to_4(d: dict) -> dict:
    """Schema 3 -> 4: "stages" is new and optional; every schema-3 run trained its model in one stage, which a
    record without "stages" means, so only the schema changes. Returns a new dict."""
    return {**d, "schema": 4}


# schema a record is written in -> the function that turns it into the next schema; one entry per older schema
MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: migrate_1_to_2, 2: migrate_2_to_3, 3: migrate_3_to_4}


def record_schema(d: dict, path: Path | str) -> int:
    """The schema a record says it is written in (1 when it says none), refused when this mmbench cannot read it."""
    schema = d.get("schema", 1)
    if not is_int(schema):
        raise _refuse(path, "schema", f"an integer (this mmbench reads schemas 1 to {SCHEMA})", schema)
    if schema > SCHEMA:
        raise MMBenchError(
            f"run record {path} has schema {schema}; this mmbench reads schemas 1 to {SCHEMA}: a newer mmbench "
            "wrote it, so read it with that version (or upgrade this one)"
        )
    if schema < 1:
        raise MMBenchError(f"run record {path} has schema {schema}; this mmbench reads schemas 1 to {SCHEMA}")
    return int(schema)


def migrate(d: dict, path: Path | str = "(in memory)") -> dict:
    """A record's dict in the current schema: each migration from its schema up to ``SCHEMA`` applied in order."""
    schema = record_schema(d, path)
    for version in range(schema, SCHEMA):
        d = MIGRATIONS[version](d)
    return d


# -- the record ----------------------------------------------------------------------------------------------

# optional fields: (name, kind); absent from the file <-> None here
_OPTIONAL = (
    ("provenance", "dict"),  # code revision, versions (storage.provenance)
    ("options", "dict"),  # the run options (training.options.RunOptions)
    ("job", "dict"),  # who ran it: owner, executor, restarts
    ("device", "str"),
    ("device_info", "dict"),
    ("config", "dict"),  # the model's config as resolved
    ("n_modalities", "int"),
    ("data", "dict"),  # release, train, test
    ("observed", "dict"),  # {modality: fraction of training tuples observing it}; absent: complete data
    ("train", "dict"),  # training throughput: steps, epochs, seconds, history, examples_per_s, s_per_step
    ("generation", "dict"),  # generation throughput at evaluation (training.throughput.GenerationMeter)
    ("timings", "dict"),  # train_s, eval_s, total_s
    ("finished_at", "str"),
    ("traceback", "str"),
    ("metric_provenance", "dict"),  # per metric: weights, dims, ... (mmbench eval)
    ("evaluations", "list"),  # one entry per mmbench eval: metrics, priors, seconds, peak memory, device, at
    ("stages", "list"),  # a staged model's stages: name, steps, epochs, seconds, reused; absent: one stage
)
_REQUIRED = ("schema", "run_id", "status", "failure", "spec", "metrics")


@dataclass(frozen=True)
class RunRecord:
    """One run's record in the current schema. Fields absent from the file are None; keys this mmbench does not
    know are kept in ``extra`` and written back. Frozen: change one with ``dataclasses.replace`` or
    ``with_rows`` (its dict fields are the file's own objects, to be read, not changed)."""

    run_id: str
    status: str  # finished | failed
    spec: dict  # the resolved spec (runs.spec.RunSpec.to_dict)
    metrics: tuple[MetricRow, ...] = ()
    failure: str | None = None
    schema: int = SCHEMA
    provenance: dict | None = None
    options: dict | None = None
    job: dict | None = None
    device: str | None = None
    device_info: dict | None = None
    config: dict | None = None
    n_modalities: int | None = None
    data: dict | None = None
    observed: dict | None = None
    train: dict | None = None
    generation: dict | None = None
    timings: dict | None = None
    finished_at: str | None = None
    traceback: str | None = None
    metric_provenance: dict | None = None
    evaluations: tuple[dict, ...] | None = None
    stages: tuple[dict, ...] | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, path: Path | str = "(in memory)") -> "RunRecord":
        """The record of a parsed record.json, migrated to the current schema; refused (one MMBenchError line
        naming ``path`` and the field) when it is not one."""
        if not isinstance(d, dict):
            raise MMBenchError(f"run record {path} must be a JSON object, got {kind_of(d)}")
        d = migrate(d, path)
        rows = _present(d, "metrics", path)
        if not isinstance(rows, list):
            raise _refuse(path, "metrics", "a list of rows", rows)
        optional = {name: _field(d, name, kind, path) for name, kind in _OPTIONAL}
        for m, v in (optional["observed"] or {}).items():
            if not is_number(v) or not 0 <= v <= 1:
                raise _refuse(path, f"observed.{m}", "a fraction in [0, 1]", v)
        stages = optional.pop("stages")
        if stages is not None:
            stages = tuple(_stage(c, path, i) for i, c in enumerate(stages))
        evaluations = optional.pop("evaluations")
        if evaluations is not None:
            for i, e in enumerate(evaluations):
                if not isinstance(e, dict):
                    raise _refuse(path, f"evaluations[{i}]", "an object", e)
        return cls(
            run_id=_run_id(d, path),
            status=_nonempty(d, "status", path),
            spec=_spec(_present(d, "spec", path), path),
            metrics=tuple(_row(r, path, i) for i, r in enumerate(rows)),
            failure=_field(d, "failure", "str", path, nullable=True),
            evaluations=None if evaluations is None else tuple(evaluations),
            stages=stages,
            extra={k: v for k, v in d.items() if k not in _REQUIRED and k not in dict(_OPTIONAL)},
            **optional,
        )

    def to_dict(self) -> dict:
        """The record as record.json holds it (``from_dict(to_dict())`` is the same record)."""
        out = {
            **self.extra,
            "schema": self.schema,
            "run_id": self.run_id,
            "status": self.status,
            "failure": self.failure,
            "spec": self.spec,
            "metrics": [r.to_dict() for r in self.metrics],
        }
        for name, _ in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    # -- what the report reads --------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.spec["model"]

    @property
    def dataset(self) -> str:
        return self.spec["dataset"]

    @property
    def dataset_options(self) -> dict:
        return self.spec.get("dataset_options") or {}

    @property
    def seed(self) -> int:
        return self.spec["seed"]

    @property
    def sweep(self) -> str:
        """The sweep the run was submitted from ("" when none)."""
        return self.spec.get("sweep") or ""

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def git(self) -> str:
        """The code revision that ran it ("unknown" when not recorded)."""
        return (self.provenance or {}).get("git") or "unknown"

    @property
    def release(self) -> str | None:
        """The dataset release the run read as the record names it ("" when the adapter did not say), None
        when the record predates the field."""
        return (self.data or {}).get("release")

    @property
    def missing_rate(self) -> float:
        """The run's missing rate: its ``missing_rate`` option when one number, else (a table of rates, a mask
        file) the mean fraction of training tuples that miss a modality, from ``observed``; 0.0 for complete data."""
        rate = self.dataset_options.get("missing_rate", 0.0)
        if is_number(rate):
            return float(rate)
        observed = list((self.observed or {}).values())
        return round(1.0 - sum(observed) / len(observed), 4) if observed else 0.0

    def with_rows(self, rows: list[MetricRow]) -> "RunRecord":
        """The record with ``rows`` added, replacing the rows that measure the same thing again (``MetricRow.key``)."""
        new = tuple(_row(r, "(new rows)", i) for i, r in enumerate(rows))
        keys = {r.key for r in new}
        return replace(self, metrics=tuple(r for r in self.metrics if r.key not in keys) + new)


def _present(d: dict, key: str, path: Path | str) -> Any:
    if key not in d:
        raise MMBenchError(f"run record {path}: field {key!r} is missing")
    return d[key]


def _nonempty(d: dict, key: str, path: Path | str) -> str:
    value = _field(d, key, "str", path, required=True)
    if not value:
        raise MMBenchError(f"run record {path}: field {key!r} must be a non-empty string, got an empty one")
    return value


def _run_id(d: dict, path: Path | str) -> str:
    """The record's run id: a name its run folder can have (the report draws ``RUNS/<run id>``'s samples)."""
    value = _nonempty(d, "run_id", path)
    problem = name_problem(value)
    if problem:
        raise MMBenchError(f"run record {path}: field 'run_id' = {value!r} cannot name a run folder: {problem}")
    return value


# -- files ---------------------------------------------------------------------------------------------------


def write_record(run_dir: Path, record: RunRecord) -> Path:
    """Write ``run_dir/record.json`` atomically (sorted keys, as every record has been written)."""
    path = Path(run_dir) / RECORD
    atomic_write_json(path, record.to_dict())
    return path


def load_record(path: Path) -> RunRecord:
    """The record in ``path``, migrated and validated; MMBenchError (one line naming the file) when it cannot be."""
    path = Path(path)
    return RunRecord.from_dict(parse_json(read_bytes(path, "run record"), path, "run record"), path)


def read_record(path: Path) -> dict:
    """``load_record`` as a dict in the current schema (for scripts; mmbench itself reads ``RunRecord``)."""
    return load_record(path).to_dict()


def _record_paths(runs_dir: Path) -> list[Path]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise MMBenchError(f"runs folder {runs_dir} does not exist; run a sweep first (mmbench sweep submit FILE)")
    return sorted(runs_dir.glob(f"*/{RECORD}"))


def load_records(runs_dir: Path) -> list[RunRecord]:
    """Every record under runs_dir; the first malformed one is refused."""
    return [load_record(p) for p in _record_paths(runs_dir)]


def read_records(runs_dir: Path) -> list[dict]:
    """``load_records`` as dicts (for scripts)."""
    return [r.to_dict() for r in load_records(runs_dir)]


def collect_records(runs_dir: Path) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """Every readable record under runs_dir, and (path, reason) for each one skipped (unreadable, not an
    mmbench record, a schema this version does not know): the report renders what it can and names the rest."""
    records, skipped = [], []
    for path in _record_paths(runs_dir):
        try:
            records.append(load_record(path))
        except MMBenchError as exc:
            skipped.append((path, str(exc)))
    return records, skipped

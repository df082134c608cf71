"""Run records: one JSON file per run (``record.json``), written atomically and read back with its schema checked."""

from __future__ import annotations

import json
from pathlib import Path

from mmbench.errors import MMBenchError
from mmbench.storage.atomic import atomic_write_json

RECORD = "record.json"
# The layout of record.json. 2: device_info, options, job, train throughput, generation (and, optional, "data":
# the dataset release and split sizes); records without "schema" are 1 and still read. A record of a later
# schema is refused (written by a newer mmbench).
SCHEMA = 2


def write_record(run_dir: Path, record: dict) -> Path:
    path = Path(run_dir) / RECORD
    atomic_write_json(path, record)
    return path


def read_record(path: Path) -> dict:
    try:
        rec = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise MMBenchError(f"run record {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rec, dict):
        raise MMBenchError(f"run record {path} is not a JSON object")
    schema = rec.get("schema", 1)
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise MMBenchError(
            f"run record {path} has schema {schema!r}; this mmbench reads schemas 1 to {SCHEMA} "
            "(was it written by another version?)"
        )
    for key in ("run_id", "status", "spec", "metrics"):
        if key not in rec:
            raise MMBenchError(f"run record {path} has no field {key!r}")
    return rec


def read_records(runs_dir: Path) -> list[dict]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise MMBenchError(f"runs folder {runs_dir} does not exist; run a sweep first (mmbench sweep submit FILE)")
    return [read_record(p) for p in sorted(runs_dir.glob(f"*/{RECORD}"))]


def collect_records(runs_dir: Path) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Every readable record under runs_dir, and (path, reason) for each one skipped (unreadable, not an
    mmbench record, a schema this version does not know): the report renders what it can and names the rest."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise MMBenchError(f"runs folder {runs_dir} does not exist; run a sweep first (mmbench sweep submit FILE)")
    records, skipped = [], []
    for path in sorted(runs_dir.glob(f"*/{RECORD}")):
        try:
            rec = read_record(path)
            if (
                not isinstance(rec["spec"], dict)
                or not isinstance(rec["metrics"], list)
                or not {"model", "dataset", "seed"} <= set(rec["spec"])
            ):
                raise MMBenchError(f"run record {path} is not an mmbench record (spec or metrics malformed)")
            records.append(rec)
        except (MMBenchError, OSError, UnicodeDecodeError) as exc:
            skipped.append((path, str(exc)))
    return records, skipped

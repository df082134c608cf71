"""Reading mmbench's own files back: parse, then check each field, refusing in one line that names the file and
the field.

Every reader of a run folder's files (``records.load_record``, ``runs.spec.RunSpec.load``, ``runs.locks.read_lock``,
``sweeps.executors.read_jobs``, ``training.log.read_log``, the checkpoints' payloads) goes through these helpers,
so a malformed file (empty, ``{}``, missing keys, wrong types, truncated, binary garbage) is one ``MMBenchError``
of the same form: ``<what> <path>: field 'x' must be an integer, got str``.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any, Callable, Iterable

from mmbench.errors import MMBenchError


def kind_of(value: Any) -> str:
    """The JSON-ish name of a value's type, as a refusal says what it got."""
    return "null" if value is None else type(value).__name__


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# the checks a field's value passes, and how a refusal says what it must be
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (is_int, "an integer"),
    "number": (is_number, "a number"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}


def refuse(where: str, name: str, want: str, value: Any) -> MMBenchError:
    """``<where>: field 'name' must be <want>, got <kind>``."""
    return MMBenchError(f"{where}: field {name!r} must be {want}, got {kind_of(value)}")


def get_field(
    d: dict, key: str, kind: str, where: str, *, prefix: str = "", required: bool = False, nullable: bool = False
) -> Any:
    """``d[key]`` checked to be of ``kind`` (a key of ``CHECKS``): None when absent and not required, or null and
    allowed (``nullable``, or not required); refused in one line starting with ``where`` otherwise."""
    name = f"{prefix}{key}"
    if key not in d:
        if required:
            raise MMBenchError(f"{where}: field {name!r} is missing")
        return None
    value = d[key]
    check, want = CHECKS[kind]
    if value is None and (nullable or not required):
        return None
    if not check(value):
        raise refuse(where, name, want + (" or null" if nullable else ""), value)
    if kind == "int":
        return int(value)
    if kind == "number" and not isinstance(value, (int, float)):
        return float(value)  # a numpy scalar: written as a JSON number
    return value


def known_keys(d: dict, allowed: Iterable[str], where: str, *, hint: str = "") -> None:
    """Refuse keys of ``d`` outside ``allowed`` (a file a newer mmbench wrote, or another program's)."""
    allowed = list(allowed)
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise MMBenchError(
            f"{where}: fields {unknown} are not fields this mmbench knows ({', '.join(allowed)})"
            + (hint and f"; {hint}")
        )


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``; one line naming it when it is missing or cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise MMBenchError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise MMBenchError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None


def parse_json(data: bytes, path: Path | str, what: str) -> Any:
    """Parsed JSON of a file's bytes; one line naming the file when they are not JSON text."""
    if not data.strip():
        raise MMBenchError(f"{what} {path} is not valid JSON (the file is empty)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MMBenchError(f"{what} {path} is not valid JSON (not text: binary content)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MMBenchError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # e.g. a number too long to convert
        raise MMBenchError(f"{what} {path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise MMBenchError(f"{what} {path} is not valid JSON (nested too deeply)") from None


def read_json(path: Path, what: str) -> Any:
    """The JSON value in ``path`` (``what`` names the file's role in refusals: "run spec", "lock file", ...)."""
    return parse_json(read_bytes(path, what), path, what)


def read_json_object(path: Path, what: str) -> dict:
    """``read_json``, refused unless it is a JSON object."""
    value = read_json(path, what)
    if not isinstance(value, dict):
        raise MMBenchError(f"{what} {path} must be a JSON object, got {kind_of(value)}")
    return value


def read_json_lines(path: Path, what: str, required: Iterable[tuple[str, str]] = ()) -> list[dict]:
    """The objects of a JSON-lines file, one per line (blank lines skipped), each with the ``required`` fields
    ((name, kind of ``CHECKS``)). The last line is skipped when it is
    torn (no newline after it, the start of an object that does not parse: a process killed mid-write); any other line that is not a JSON object
    is refused in one line naming the file and the line."""
    data = read_bytes(path, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MMBenchError(f"{what} {path} is not JSON lines (not text: binary content)") from None
    lines = text.split("\n")
    entries = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except RecursionError:
            raise MMBenchError(f"{what} {path}: line {i} is not valid JSON (nested too deeply)") from None
        except ValueError as exc:
            if i == len(lines) and line.lstrip().startswith("{"):  # no newline after it: torn by a kill mid-write
                continue
            why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise MMBenchError(f"{what} {path}: line {i} is not valid JSON ({why})") from None
        if not isinstance(entry, dict):
            raise MMBenchError(f"{what} {path}: line {i} must be a JSON object, got {kind_of(entry)}")
        for name, kind in required:
            get_field(entry, name, kind, f"{what} {path}: line {i}", required=True)
        entries.append(entry)
    return entries

"""What ``mmbench show`` prints: a model's config fields (type, default = the paper's preset, meaning), a dataset's
or metric's options, a sweep file as resolved, as text or as TOML to start a sweep file from."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS, METRICS, MODELS

_DOC_FIELD = re.compile(r"^\s{0,8}([A-Za-z_][\w, ]*):\s+(\S.*)$")


@dataclass(frozen=True)
class Field:
    """One option: its name, type, default, the value after ``--set`` (None: the default) and meaning."""

    name: str
    type: str
    default: Any
    value: Any
    meaning: str


def documented_fields(*docs: str | None) -> dict[str, str]:
    """``name: meaning`` entries of docstrings (``a, b: meaning`` names two), each meaning's first sentence."""
    out: dict[str, str] = {}
    for doc in docs:
        current: list[str] = []
        for line in inspect.cleandoc(doc or "").splitlines():
            m = _DOC_FIELD.match(line)
            if m and not line.startswith(" " * 9):
                current = [n.strip() for n in m.group(1).split(",")]
                for n in current:
                    out.setdefault(n, m.group(2).strip())
            elif line.strip() and current and line.startswith(" "):
                for n in current:
                    if not out[n].rstrip().endswith("."):
                        out[n] = out[n] + " " + line.strip()
            else:
                current = []
    return {k: _first_sentence(v) for k, v in out.items()}


def _first_sentence(text: str) -> str:
    m = re.search(r"(?<=[a-z0-9)\]\"'])\.\s", text + " ")
    return (text[: m.start() + 1] if m else text).strip()


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def config_fields(model: str, overrides: dict | None = None) -> tuple[str, list[Field]]:
    """(the preset's source line, every config field) of a registered model, ``overrides`` applied and checked."""
    cls = MODELS.get(model).Config
    built = build_config(cls, overrides or {})
    hints = typing.get_type_hints(cls)
    docs = documented_fields(*(k.__doc__ for k in cls.__mro__ if dataclasses.is_dataclass(k)))
    if any(f.name not in docs for f in dataclasses.fields(cls)):  # a field another model's preset documents
        others = documented_fields(*(MODELS.get(m).Config.__doc__ for m in MODELS.names()))
        docs = {**others, **docs}
    defaults = cls()
    fields = []
    for f in dataclasses.fields(cls):
        hint, default, value = hints[f.name], getattr(defaults, f.name), getattr(built, f.name)
        if dataclasses.is_dataclass(hint):  # a stage section: one row per field, "section.field"
            sub = documented_fields(hint.__doc__)
            section = docs.get(f.name, "")
            for g, g_hint in typing.get_type_hints(hint).items():
                meaning = sub.get(g, "") + (f" ({f.name}: {section})" if section and g == "epochs" else "")
                fields.append(
                    Field(f"{f.name}.{g}", _type_name(g_hint), getattr(default, g), getattr(value, g), meaning.strip())
                )
            continue
        fields.append(Field(f.name, _type_name(hint), default, value, docs.get(f.name, "")))
    source = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    return source, fields


def callable_options(fn: Callable, skip: tuple[str, ...] = ()) -> list[Field]:
    """The keyword options of ``fn`` (a dataset's ``load``, a metric's ``__init__``) with defaults and meanings."""
    params = inspect.signature(fn).parameters
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: show them as written
        hints = {}
    docs = documented_fields(fn.__doc__, getattr(getattr(fn, "__self__", None), "__doc__", None))
    out = []
    for name, p in params.items():
        if name in skip or name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = "(required)" if p.default is p.empty else p.default
        hint = hints.get(name, p.annotation)
        out.append(Field(name, "" if hint is p.empty else _type_name(hint), default, default, docs.get(name, "")))
    return out


def dataset_options(name: str) -> tuple[str, list[Field]]:
    adapter = DATASETS.get(name)
    return _summary(adapter), callable_options(adapter.load, skip=("split",))


def metric_options(name: str) -> tuple[str, list[Field]]:
    cls = METRICS.get(name)
    fields = callable_options(cls.__init__)
    docs = documented_fields(cls.__doc__)
    return _summary(cls), [dataclasses.replace(f, meaning=f.meaning or docs.get(f.name, "")) for f in fields]


def _summary(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")


def toml_value(value: Any) -> str:
    """A value as TOML (strings quoted, booleans lower case, lists and tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        raise MMBenchError("TOML has no null: leave the key out")
    return json.dumps(str(value))


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _shown(value: Any) -> str:
    return "(none)" if value is None else value if value == "(required)" else toml_value(value)


def fields_as_text(title: str, fields: list[Field]) -> str:
    rows = [("field", "type", "default", "meaning")]
    for f in fields:
        default = _shown(f.default)
        changed = f" -> {_shown(f.value)}" if f.value != f.default else ""
        rows.append((f.name, f.type, default + changed, f.meaning))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [title, ""] + ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def fields_as_toml(table: str, title: str, fields: list[Field]) -> str:
    """A TOML table of every field at its value (defaults included), each with its meaning as a comment; the
    fields of a section (``score.lr``, a staged model's stage) as its sub-table ``[table.score]``."""
    lines = [f"# {title}", f"[{table}]"]
    plain = [f for f in fields if "." not in f.name]
    sections: dict[str, list[Field]] = {}
    for f in fields:
        if "." in f.name:
            head, rest = f.name.split(".", 1)
            sections.setdefault(head, []).append(dataclasses.replace(f, name=rest))
    for f in plain:
        lines.append(_toml_line(f))
    for head, rows in sections.items():
        lines.extend(["", f"[{table}.{_toml_key(head)}]"])
        lines.extend(_toml_line(f) for f in rows)
    return "\n".join(lines)


def _toml_line(f: Field) -> str:
    if f.value == "(required)" or f.value is None:
        return f"# {f.name} = ...  # {f.meaning}".rstrip()
    return f"{f.name} = {toml_value(f.value)}" + (f"  # {f.meaning}" if f.meaning else "")


def doc_as_toml(doc: dict) -> str:
    """A sweep document as a TOML file: top-level tables, then their sub-tables."""
    lines: list[str] = []

    def table(path: list[str], node: dict) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if path:
            lines.extend(["", "[" + ".".join(_toml_key(p) for p in path) + "]"])
        lines.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                table(path + [k], v)

    table([], doc)
    return "\n".join(lines).lstrip("\n") + "\n"

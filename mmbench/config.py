"""Model configs: frozen dataclasses whose defaults are a paper's preset, built from user overrides."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Sequence

from mmbench.errors import MMBenchError, did_you_mean


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters every model shares.

    latent_dim: size of the shared latent z.
    beta:       weight of the KL (or regulariser) term.
    lr:         Adam learning rate.
    batch_size: training batch size.
    epochs:     passes over the training set.
    max_steps:  stop after this many optimiser steps (0: no limit), for short runs.
    precision:  "fp32" or "bf16" (autocast for the forward pass and loss, fp32 master weights;
                log-variances, KL and likelihoods stay fp32; see mmbench.device).
    grad_clip:  clip the gradients' global L2 norm to this value before each step (0: no clipping).
    """

    latent_dim: int = 512
    beta: float = 2.5
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 300
    max_steps: int = 0
    precision: str = "fp32"
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        check_range(self, "latent_dim", lo=1)
        check_range(self, "beta", lo=0.0)
        check_range(self, "lr", lo=0.0, lo_open=True)
        check_range(self, "batch_size", lo=1)
        check_range(self, "epochs", lo=0)
        check_range(self, "max_steps", lo=0)
        check_choice(self, "precision", ("fp32", "bf16"))
        check_range(self, "grad_clip", lo=0.0)


def check_range(
    cfg: Any, field: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> None:
    """Raise a one-line MMBenchError when cfg.field is outside [lo, hi] (or (lo, hi] with lo_open)."""
    v = getattr(cfg, field)
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi) or v != v  # v != v: NaN
    if bad:
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        interval = f"{'(' if lo_open else '['}{lo_s}, {hi_s}]"
        raise MMBenchError(f"{type(cfg).__name__}.{field} = {v!r} is out of range; allowed: {interval}")


def check_choice(cfg: Any, field: str, allowed: Sequence[Any]) -> None:
    """Raise a one-line MMBenchError when cfg.field is not one of ``allowed``."""
    v = getattr(cfg, field)
    if v not in allowed:
        raise MMBenchError(f"{type(cfg).__name__}.{field} = {v!r}; allowed: {', '.join(map(repr, allowed))}")


SHARED_STAGE_FIELDS = ("epochs", "lr", "batch_size", "max_steps")  # top-level fields a stage section inherits


def build_config(cls: type, overrides: Mapping[str, Any] | None = None) -> Any:
    """cls(**defaults updated by overrides), with unknown fields and wrong types refused by name.

    A field typed as a dataclass (a staged model's ``StageConfig`` section) takes a table (``{"score": {"lr": 1e-3}}``)
    or dotted keys (``{"score.lr": 1e-3}``) that replace only the given fields of its default; the top-level
    ``epochs``, ``lr``, ``batch_size`` and ``max_steps``, when given, apply to every section that does not set them.
    """
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    sections = {n for n in fields if dataclasses.is_dataclass(hints[n])}
    plain, nested = _split_sections(cls, overrides, sections)
    unknown = sorted(set(plain) - set(fields))
    if unknown:
        raise MMBenchError(
            f"{cls.__name__} has no field {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], fields)}; "
            f"its fields are: {', '.join(fields)} (mmbench show config MODEL lists them with defaults)"
        )
    values = {k: _coerce(cls.__name__, k, v, hints[k]) for k, v in plain.items() if k not in sections}
    for name in sections:
        given = plain.get(name)
        if given is not None and dataclasses.is_dataclass(given) and not nested.get(name):
            values[name] = given
            continue
        if given is not None and not dataclasses.is_dataclass(given):
            names = ", ".join(g.name for g in dataclasses.fields(hints[name]))
            raise MMBenchError(
                f"{cls.__name__}.{name} must be a table of its fields ({names}), e.g. {name}.epochs = 5; got {given!r}"
            )
        inherited = {k: plain[k] for k in SHARED_STAGE_FIELDS if k in plain}
        table = {**inherited, **nested.get(name, {})}
        if table:
            values[name] = _section(cls, fields[name], hints[name], table)
    return cls(**values)


def _split_sections(cls: type, overrides: dict, sections: set[str]) -> tuple[dict, dict]:
    """(the top-level overrides, {section: {field: value}}) of ``overrides``: a section's table and its dotted keys
    (``"score.lr"``) merged, a dotted key winning; a table or dotted key of a config without sections refused."""
    plain: dict = {}
    nested: dict[str, dict] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".") if isinstance(key, str) else (key, "", "")
        is_table = isinstance(value, Mapping) and not rest
        if (rest or is_table) and head not in sections:
            if head in _field_names(cls) and not rest:
                plain[key] = value  # a field of another type given a table: _coerce names the type
                continue
            raise MMBenchError(_not_a_section(cls, head, sections))
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif is_table:
            nested[head] = {**dict(value), **nested.get(head, {})}
        else:
            plain[key] = value
    return plain, nested


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _not_a_section(cls: type, name: str, sections: set[str]) -> str:
    """The one-line refusal of a section (a table or a ``name.field`` key) that ``cls`` does not have."""
    if sections:
        return (
            f"{cls.__name__} has no stage section {name!r}{did_you_mean(name, sections)}; "
            f"its stage sections are: {', '.join(sorted(sections))}"
        )
    from mmbench.registry import MODELS

    owners = [n for n in MODELS.names() if MODELS.get(n).Config is cls]
    staged = [n for n in MODELS.names() if getattr(MODELS.get(n), "stages", ())]
    who = (MODELS.get(owners[0]).display_name or owners[0]) if owners else cls.__name__
    with_it = [n for n in staged if name in {s.name for s in MODELS.get(n).stages}]
    listed = f" ({', '.join(with_it or staged)})" if (with_it or staged) else ""
    return (
        f"{who} trains in one stage; {name!r} is a stage section of models that declare stages{listed}, "
        f"so give it only to those (in a sweep: [config.MODEL.{name}])"
    )


def _section(cls: type, f: dataclasses.Field, hint: type, table: Mapping[str, Any]) -> Any:
    """The default of section field ``f`` with the fields of ``table`` replaced, each checked by name and type."""
    where = f"{cls.__name__}.{f.name}"
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    names = [g.name for g in dataclasses.fields(hint)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise MMBenchError(
            f"{where} has no field {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], names)}; "
            f"its fields are: {', '.join(names)}"
        )
    sub_hints = typing.get_type_hints(hint)
    values = {k: _coerce(where, k, v, sub_hints[k]) for k, v in table.items()}
    try:
        return dataclasses.replace(default, **values)
    except MMBenchError as exc:  # the section's range check names its own class: name the field instead
        raise MMBenchError(str(exc).replace(f"{hint.__name__}.", f"{where}.", 1)) from None


def _coerce(owner: str, name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    where = f"{owner}.{name}"
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise MMBenchError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise MMBenchError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MMBenchError(f"{where} must be a number, got {value!r}")
        try:
            return float(value) + 0.0  # -0.0 is 0.0: one value, one run id
        except OverflowError:  # an integer beyond any float (JSON has no limit)
            raise MMBenchError(f"{where} must be a number, got an integer too large for one") from None
    if hint is str:
        if not isinstance(value, str):
            raise MMBenchError(f"{where} must be a string, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise MMBenchError(f"{where} must be a list, got {value!r}")
        return tuple(value) if origin is tuple else list(value)
    return value


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def check_keywords(fn: Any, given: Mapping[str, Any], what: str, *, fixed: Mapping[str, Any] | None = None) -> None:
    """Refuse in one line keyword ``given`` options that ``fn`` does not take (naming the valid ones and the
    closest) or required ones that are missing; ``fixed`` are arguments the caller itself passes (``split``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    names = [
        n
        for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in (fixed or {})
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else sorted(set(given) - set(names))
    if unknown:
        raise MMBenchError(
            f"bad options for {what}: unexpected keyword argument {unknown[0]!r}"
            f"{did_you_mean(unknown[0], names)}; its options are: {', '.join(names) or 'none'}"
        )
    missing = [n for n in names if params[n].default is params[n].empty and n not in given]
    if missing:
        raise MMBenchError(f"bad options for {what}: missing a required argument: {missing[0]!r}")

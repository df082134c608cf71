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


def build_config(cls: type, overrides: Mapping[str, Any] | None = None) -> Any:
    """cls(**defaults updated by overrides), with unknown fields and wrong types refused by name."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise MMBenchError(
            f"{cls.__name__} has no field {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], fields)}; "
            f"its fields are: {', '.join(fields)} (mmbench show config MODEL lists them with defaults)"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(cls.__name__, k, v, hints[k]) for k, v in overrides.items()}
    return cls(**values)


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

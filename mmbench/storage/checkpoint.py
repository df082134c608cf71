"""Atomic, self-verifying checkpoints: one file per save, with its sha256 inside, the previous one kept.

File format: a header line ``MMBENCH-CHECKPOINT 1 sha256=<hex>\\n`` followed by the ``torch.save``
bytes the digest covers. A save writes a temporary file, fsyncs it, moves the current file to
``<name>.prev<suffix>`` and renames the new one into place (both renames atomic), so a process killed
at any instant leaves a loadable latest, or no latest and a loadable previous one. ``load_checkpoint``
falls back to the previous file, with a warning, when the latest is missing or corrupt; it never
starts over silently. Files of the older layout (payload with a ``.sha256`` file beside it) still load.

A save that fails (disk full, I/O error: ``storage.atomic.WriteError``) at any stage leaves the checkpoint it
would have replaced loadable: a failure before the renames leaves the files as they were (the temporary file
removed); a failed rename of the new file moves the current one back from the previous slot (or, when that
fails too, leaves it there, where ``load_checkpoint`` finds it).

Every load unpickles with ``torch.load(weights_only=True)``: a payload is tensors, numbers, strings and
lists, tuples and dicts of them (configs as dicts, RNG states as tensors, provenance as strings), so a file
someone else could write into a shared runs folder cannot run code in the account of whoever loads it.
A checkpoint that holds anything else (an older mmbench's, or one crafted to run code) is refused with
``UnsafeCheckpointError``, naming the command that converts a trusted one: ``convert_checkpoint``
(``mmbench checkpoint convert RUN --trust``) unpickles it in full, turns it into the safe form, writes it
like a save (the original kept as the previous file) and checks that it now loads safely.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import os
import pickle
import re
import shlex
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.storage.atomic import atomic_write_bytes, atomic_write_json
from mmbench.storage.provenance import provenance
from mmbench.storage.validate import get_field, kind_of, read_bytes

FAMILY = b"MMBENCH-CHECKPOINT "  # then the format's version
MAGIC = FAMILY + b"1 sha256="


class CheckpointFallbackWarning(UserWarning):
    """The latest checkpoint was missing or corrupt and the previous good one was loaded."""


class UnsafeCheckpointError(MMBenchError):
    """A verified checkpoint holding objects that ``torch.load(weights_only=True)`` refuses: rebuilding them would
    need a full unpickling, which can run any code. ``convert_checkpoint`` converts one its owner trusts."""


def convert_command(path: Path) -> str:
    """The command that converts the checkpoints in ``path``'s folder, as the refusal of an unsafe one names it."""
    return f"mmbench checkpoint convert {shlex.quote(str(Path(path).parent))} --trust"


def previous_path(path: Path) -> Path:
    """Where the previous good checkpoint of ``path`` is kept: ``name.prev.pt`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def encode_checkpoint(payload: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


_PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size, torch.dtype, torch.device)


def unsafe_entry(obj: Any, where: str = "payload") -> str | None:
    """The first entry of ``obj`` that ``torch.load(weights_only=True)`` would refuse, as "where (type)"; None when
    it holds only tensors, numbers, strings, bytes, and lists, tuples, sets and dicts of them."""
    if isinstance(obj, torch.Tensor):
        return None if type(obj) in (torch.Tensor, torch.nn.Parameter) else f"{where} ({type(obj).__qualname__})"
    if type(obj) in _PLAIN:
        return None
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            found = unsafe_entry(k, f"{where} key {k!r}") or unsafe_entry(v, f"{where}[{k!r}]")
            if found:
                return found
        return None
    if type(obj) in (list, tuple, set):
        return next((f for i, v in enumerate(obj) if (f := unsafe_entry(v, f"{where}[{i}]"))), None)
    return f"{where} ({type(obj).__module__}.{type(obj).__qualname__})"


def save_checkpoint(path: Path, payload: dict, *, keep_previous: bool = False) -> None:
    """Write payload to ``path`` as one self-verifying file, atomically.

    The payload must load with ``weights_only=True``: anything else (a dataclass, a ``TorchVersion``) is refused
    here, naming the entry, before a file is written that no load would accept.

    With ``keep_previous`` the file it replaces is kept as ``previous_path(path)``: new bytes are written
    and synced first, then the old file is renamed to the previous slot, then the new one into place. A write
    that fails raises ``WriteError`` with the old file still loadable (module docstring).
    """
    path = Path(path)
    found = unsafe_entry(payload)
    if found:
        raise MMBenchError(
            f"checkpoint {path}: {found} would need a full unpickling to load; a checkpoint holds tensors, numbers, "
            "strings and lists, tuples and dicts of them (a config as dataclasses.asdict(...), a version as str(...))"
        )
    _remove_abandoned_temps(path)
    atomic_write_bytes(path, encode_checkpoint(payload), previous=previous_path(path) if keep_previous else None)


ABANDONED_S = 600.0  # a temporary file untouched this long belongs to no save in progress


def _remove_abandoned_temps(path: Path) -> None:
    """Remove the temporary files of saves of ``path`` that were killed before their rename; one that another
    process is writing now (a save of the same path, e.g. a classifier cache shared by runs) is left alone."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - stale.stat().st_mtime > ABANDONED_S:
                stale.unlink(missing_ok=True)
        except OSError:
            pass  # gone already, or removed by a later save; readers never look at temporary files


def _verified_body(path: Path) -> bytes:
    """The ``torch.save`` bytes of one checkpoint file, their sha256 checked; MMBenchError naming the file when
    they cannot be verified."""
    data = read_bytes(path, "checkpoint")
    if not data:
        raise MMBenchError(f"checkpoint {path} is empty (a save that never wrote its bytes)")
    if data.startswith(MAGIC):
        newline = data.find(b"\n", len(MAGIC))
        digest, body = data[len(MAGIC) : newline].decode("ascii", "replace"), data[newline + 1 :]
        if newline < 0 or hashlib.sha256(body).hexdigest() != digest:
            raise MMBenchError(
                f"checkpoint {path} is corrupt (truncated or changed): its content does not match the sha256 in "
                "its header"
            )
        return body
    if data.startswith(FAMILY) and data[len(FAMILY) : len(FAMILY) + 1] != b"1":
        version = data[len(FAMILY) :].split(b" ", 1)[0][:16].decode("ascii", "replace")
        raise MMBenchError(
            f"checkpoint {path} is in format {version!r}; this mmbench reads format 1: a newer mmbench wrote it, "
            "so load it with that version (or upgrade this one)"
        )
    digest_file = _digest_file(path)  # the older layout: payload + name.sha256 beside it
    if not digest_file.is_file():
        raise MMBenchError(
            f"checkpoint {path} is corrupt or not an mmbench checkpoint (no header, no {digest_file.name} beside it)"
        )
    if (
        hashlib.sha256(data).hexdigest()
        != read_bytes(digest_file, "checkpoint digest").decode(errors="replace").strip()
    ):
        raise MMBenchError(f"checkpoint {path} is corrupt: its sha256 does not match {digest_file.name}")
    return data


def _digest_file(path: Path) -> Path:
    return Path(str(path) + ".sha256")


def _unpickle(body: bytes, path: Path, *, trusted: bool = False) -> Any:
    """``torch.load`` of verified bytes: with ``weights_only=True`` unless ``trusted`` (only ``convert_checkpoint``
    passes it, for a file its owner vouched for with --trust)."""
    try:
        if trusted:
            return torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
        with _known_safe_globals():
            return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if trusted:
            raise MMBenchError(
                f"checkpoint {path} cannot be unpickled ({(str(exc).splitlines() or [''])[0]})"
            ) from None
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds {found.group(1) if found else 'an object'}, which only a full unpickling can "
            "rebuild (an older mmbench wrote it, or it was made to run code when loaded), so it is not loaded; "
            f"if you trust whoever wrote it, convert it: {convert_command(path)}"
        ) from None
    except Exception as exc:  # verified bytes that torch cannot read: a foreign or future format
        raise MMBenchError(f"checkpoint {path} cannot be read by this torch ({type(exc).__name__}: {exc})") from None


def _known_safe_globals():
    """The one non-container type earlier mmbench checkpoints hold: torch's own version string (``TorchVersion``, a
    str subclass, in their provenance), allowed so that they resume as they are; everything else stays refused."""
    from contextlib import nullcontext

    from torch.torch_version import TorchVersion

    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    return allow([TorchVersion]) if allow is not None else nullcontext()


def _decode(path: Path) -> dict:
    """The payload of one checkpoint file, unpickled with ``weights_only=True``; it must be a dict of entries."""
    payload = _unpickle(_verified_body(path), path)
    if not isinstance(payload, dict):
        raise MMBenchError(f"checkpoint {path} must hold a dict of entries, got {kind_of(payload)}")
    return payload


def checkpoint_exists(path: Path) -> bool:
    """Whether ``path`` or its previous copy exists (a save killed between its renames leaves only the latter)."""
    return Path(path).is_file() or previous_path(path).is_file()


def load_checkpoint(path: Path) -> dict:
    """Load and verify ``path``; if it is missing or corrupt, the previous good one with a warning.

    Raises one clear MMBenchError when neither can be loaded; an ``UnsafeCheckpointError`` for a latest that holds
    more than tensors and plain containers (no fallback: the file is intact, only not loadable safely).
    """
    path = Path(path)
    prev = previous_path(path)
    if not path.is_file():
        if prev.is_file():
            warnings.warn(
                f"checkpoint {path} is missing (a save was interrupted); loading the previous one, {prev.name}",
                CheckpointFallbackWarning,
                stacklevel=2,
            )
            return _decode(prev)
        raise MMBenchError(f"checkpoint {path} does not exist")
    try:
        return _decode(path)
    except UnsafeCheckpointError:
        raise
    except MMBenchError as exc:
        if not prev.is_file():
            raise
        warnings.warn(
            f"{exc}; loading the previous good checkpoint, {prev.name}", CheckpointFallbackWarning, stacklevel=2
        )
        try:
            return _decode(prev)
        except MMBenchError as exc_prev:
            raise MMBenchError(f"{exc}, and the previous one cannot be loaded either: {exc_prev}") from None


def model_payload(model: Any, extra: dict | None = None) -> dict:
    """Weights + model name + config + modalities + provenance (package version, git revision)."""
    from mmbench.config import config_to_dict

    return {
        "model": type(model).registry_name,
        "config": config_to_dict(model.config),
        "modalities": [m.to_dict() for m in model.modalities],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "provenance": provenance(),
        **(extra or {}),
    }


def save_model(path: Path, model: Any, extra: dict | None = None, *, keep_previous: bool = False) -> None:
    """``model_payload`` saved with ``save_checkpoint``, and its description as ``name.config.json`` beside it."""
    payload = model_payload(model, extra)
    save_checkpoint(path, payload, keep_previous=keep_previous)
    recorded = ("model", "config", "modalities", "provenance")
    atomic_write_json(Path(path).with_suffix(".config.json"), {k: payload[k] for k in recorded})


def model_entries(payload: dict, path: Path | str) -> tuple[str, dict, list[Modality], dict]:
    """(model name, config, modalities, weights) of a loaded checkpoint (``model_payload``'s layout), each checked;
    refused in one line naming the file and the field."""
    where = f"checkpoint {path}"
    name = get_field(payload, "model", "str", where, required=True)
    config = get_field(payload, "config", "dict", where, required=True)
    modalities = []
    for i, d in enumerate(get_field(payload, "modalities", "list", where, required=True)):
        if not isinstance(d, dict):
            raise MMBenchError(f"{where}: field 'modalities[{i}]' must be an object, got {kind_of(d)}")
        get_field(d, "name", "str", where, prefix=f"modalities[{i}].", required=True)
        get_field(d, "shape", "list", where, prefix=f"modalities[{i}].", required=True)
        try:
            modalities.append(Modality.from_dict(d))
        except (TypeError, ValueError, KeyError) as exc:
            raise MMBenchError(f"{where}: field 'modalities[{i}]' is not a modality ({exc})") from None
    weights = get_field(payload, "state_dict", "dict", where, required=True)
    return name, config, modalities, weights


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[Any, dict]:
    """Rebuild the registered model of a checkpoint, load its weights, move it to ``device``; (model, payload).
    A checkpoint that does not describe a model this installation can rebuild is refused in one line naming it."""
    from mmbench.config import build_config
    from mmbench.registry import MODELS

    payload = load_checkpoint(path)
    name, config, modalities, weights = model_entries(payload, path)
    try:
        cls = MODELS.get(name)
    except MMBenchError as exc:
        raise MMBenchError(f"checkpoint {path}: field 'model': {exc}") from None
    try:
        built = build_config(cls.Config, config)
    except MMBenchError as exc:
        raise MMBenchError(f"checkpoint {path}: field 'config': {exc}") from None
    try:
        model = cls(modalities, built)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as exc:
        raise MMBenchError(
            f"checkpoint {path}: field 'modalities' does not build a {name!r} model ({_first_line(exc)})"
        ) from None
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise MMBenchError(
            f"checkpoint {path}: field 'state_dict' does not fit a {name!r} model of its config ({_first_line(exc)})"
        ) from None
    return model.to(device), payload


def _first_line(exc: BaseException, limit: int = 240) -> str:
    """An exception's message on one line (torch's load_state_dict spreads its own over several), shortened."""
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_form(obj: Any, where: str = "payload") -> Any:
    """``obj`` as what ``torch.load(weights_only=True)`` reads: tensors, numbers, strings, bytes, and lists, tuples,
    sets and dicts of them. Dataclasses and named tuples become dicts, enums their values, subclasses of str, int
    and float (``TorchVersion``) the base type, NumPy values tensors or numbers, paths strings; anything else is
    refused in one line naming ``where`` it is."""
    import numpy as np

    if isinstance(obj, torch.Tensor):
        return obj if type(obj) in (torch.Tensor, torch.nn.Parameter) else obj.as_subclass(torch.Tensor)
    if isinstance(obj, enum.Enum):
        return safe_form(obj.value, where)
    if obj is None or type(obj) in (bool, int, float, complex, str, bytes, bytearray, torch.Size):
        return obj
    if isinstance(obj, (torch.dtype, torch.device)):
        return obj
    for base in (bool, str, int, float, complex, bytes):
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return safe_form(obj.tolist(), where)
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return safe_form(obj.item(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: safe_form(getattr(obj, f.name), f"{where}.{f.name}") for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {k: safe_form(v, f"{where}.{k}") for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        items = [(safe_form(k, f"{where} key"), safe_form(v, f"{where}[{k!r}]")) for k, v in obj.items()]
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if isinstance(obj, (list, tuple)):
        items = [safe_form(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, (set, frozenset)):
        return {safe_form(v, f"{where} item") for v in obj}
    raise MMBenchError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which has no safe form (tensors, numbers, "
        "strings, and lists and dicts of them); it cannot be converted"
    )


def convert_checkpoint(path: Path, *, trust: bool) -> bool:
    """Rewrite the checkpoint ``path`` in the safe form; True when it was converted, False when it already loads
    with ``weights_only=True``.

    Only with ``trust``: the file is unpickled in full (``weights_only=False``), which runs any code it holds.
    Its sha256 is checked first; the payload is turned into its ``safe_form``, encoded and checked to load with
    ``weights_only=True`` before anything is written; then it is saved like a step checkpoint (atomically, the
    original kept as ``previous_path(path)``, a ``.sha256`` file of the older layout moving with it) and the
    written file is loaded again, safely. With only the previous file there (a save interrupted between its
    renames), the converted payload becomes the latest and the original stays the previous one.
    """
    path = Path(path)
    if not trust:
        raise MMBenchError(
            f"converting {path} unpickles it in full, which runs any code it holds; do it only for checkpoints "
            "you or someone you trust wrote, and say so with --trust"
        )
    source = path if path.is_file() else previous_path(path)
    if not source.is_file():
        raise MMBenchError(f"checkpoint {path} does not exist")
    body = _verified_body(source)
    try:
        _unpickle(body, source)
        return False
    except UnsafeCheckpointError:
        pass
    payload = safe_form(_unpickle(body, source, trusted=True), f"checkpoint {source}: the payload")
    encoded = encode_checkpoint(payload)
    _unpickle(encoded[encoded.index(b"\n") + 1 :], source)  # the safe form loads safely, before anything is written
    save_checkpoint(path, payload, keep_previous=True)
    if source == path and _digest_file(path).is_file():  # the original, of the older layout, is now the previous
        os.replace(_digest_file(path), _digest_file(previous_path(path)))
    _decode(path)
    return True


def latest_slots(folder: Path) -> list[Path]:
    """The checkpoints in ``folder``: each ``name.pt`` file with an mmbench header or a ``.sha256`` file beside it,
    and the latest slot of a ``name.prev.pt`` whose latest is missing."""
    found = set()
    for file in Path(folder).glob("*.pt"):
        with file.open("rb") as f:
            framed = f.read(len(MAGIC)) == MAGIC
        if not (framed or _digest_file(file).is_file()):
            continue
        stem = file.stem
        found.add(file.with_name(stem[: -len(".prev")] + file.suffix) if stem.endswith(".prev") else file)
    return sorted(found)


def convert_folder(folder: Path, *, trust: bool) -> list[tuple[Path, bool]]:
    """``convert_checkpoint`` on every checkpoint in ``folder`` (a run folder: checkpoint.pt, prior-*.pt); each
    with whether it was converted. MMBenchError when there is none."""
    folder = Path(folder)
    if not trust:
        raise MMBenchError(
            f"converting the checkpoints in {folder} unpickles them in full, which runs any code they hold; do it "
            "only for checkpoints you or someone you trust wrote, and say so with --trust"
        )
    slots = latest_slots(folder)
    if not slots:
        raise MMBenchError(f"{folder} holds no mmbench checkpoint (*.pt with an MMBENCH-CHECKPOINT header)")
    return [(slot, convert_checkpoint(slot, trust=True)) for slot in slots]

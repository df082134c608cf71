"""Atomic, self-verifying checkpoints: one file per save, with its sha256 inside, the previous one kept.

File format: a header line ``MMBENCH-CHECKPOINT 1 sha256=<hex>\\n`` followed by the ``torch.save``
bytes the digest covers. A save writes a temporary file, fsyncs it, moves the current file to
``<name>.prev<suffix>`` and renames the new one into place (both renames atomic), so a process killed
at any instant leaves a loadable latest, or no latest and a loadable previous one. ``load_checkpoint``
falls back to the previous file, with a warning, when the latest is missing or corrupt; it never
starts over silently. Files of the older layout (payload with a ``.sha256`` file beside it) still load.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.storage.atomic import atomic_write_json, fsync_dir, write_temp_file
from mmbench.storage.provenance import provenance
from mmbench.storage.validate import get_field, kind_of, read_bytes

FAMILY = b"MMBENCH-CHECKPOINT "  # then the format's version
MAGIC = FAMILY + b"1 sha256="


class CheckpointFallbackWarning(UserWarning):
    """The latest checkpoint was missing or corrupt and the previous good one was loaded."""


def previous_path(path: Path) -> Path:
    """Where the previous good checkpoint of ``path`` is kept: ``name.prev.pt`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def encode_checkpoint(payload: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def save_checkpoint(path: Path, payload: dict, *, keep_previous: bool = False) -> None:
    """Write payload to ``path`` as one self-verifying file, atomically.

    With ``keep_previous`` the file it replaces is kept as ``previous_path(path)``: new bytes are written
    and synced first, then the old file is renamed to the previous slot, then the new one into place.
    """
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed before its rename
        stale.unlink(missing_ok=True)
    tmp = write_temp_file(path, encode_checkpoint(payload))
    try:
        if keep_previous and path.is_file():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _decode(path: Path) -> dict:
    """The payload of one checkpoint file; MMBenchError naming the file when it cannot be verified."""
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
    elif data.startswith(FAMILY) and data[len(FAMILY) : len(FAMILY) + 1] != b"1":
        version = data[len(FAMILY) :].split(b" ", 1)[0][:16].decode("ascii", "replace")
        raise MMBenchError(
            f"checkpoint {path} is in format {version!r}; this mmbench reads format 1: a newer mmbench wrote it, "
            "so load it with that version (or upgrade this one)"
        )
    else:  # the older layout: payload + name.sha256 beside it
        digest_file = Path(str(path) + ".sha256")
        if not digest_file.is_file():
            raise MMBenchError(
                f"checkpoint {path} is corrupt or not an mmbench checkpoint (no header, no "
                f"{digest_file.name} beside it)"
            )
        if (
            hashlib.sha256(data).hexdigest()
            != read_bytes(digest_file, "checkpoint digest").decode(errors="replace").strip()
        ):
            raise MMBenchError(f"checkpoint {path} is corrupt: its sha256 does not match {digest_file.name}")
        body = data
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    except Exception as exc:  # verified bytes that torch cannot read: a foreign or future format
        raise MMBenchError(f"checkpoint {path} cannot be read by this torch ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict):
        raise MMBenchError(f"checkpoint {path} must hold a dict of entries, got {kind_of(payload)}")
    return payload


def checkpoint_exists(path: Path) -> bool:
    """Whether ``path`` or its previous copy exists (a save killed between its renames leaves only the latter)."""
    return Path(path).is_file() or previous_path(path).is_file()


def load_checkpoint(path: Path) -> dict:
    """Load and verify ``path``; if it is missing or corrupt, the previous good one with a warning.

    Raises one clear MMBenchError when neither can be loaded.
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

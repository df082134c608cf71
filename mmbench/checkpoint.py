"""Atomic, verified checkpoints: a model's weights with its recorded config, and a sha256 beside it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.provenance import provenance


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save payload to path atomically and write path.sha256 with its digest."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    atomic_write_bytes(Path(path), data)
    atomic_write_bytes(Path(str(path) + ".sha256"), (hashlib.sha256(data).hexdigest() + "\n").encode())


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint after checking its sha256; a missing or corrupt file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise MMBenchError(f"checkpoint {path} does not exist")
    digest_file = Path(str(path) + ".sha256")
    data = path.read_bytes()
    if not digest_file.is_file():
        raise MMBenchError(f"checkpoint {path} has no {digest_file.name} beside it; it cannot be verified")
    if hashlib.sha256(data).hexdigest() != digest_file.read_text().strip():
        raise MMBenchError(f"checkpoint {path} is corrupt: its sha256 does not match {digest_file.name}")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def save_model(path: Path, model: Any, extra: dict | None = None) -> None:
    """Weights + model name + config + modalities + provenance (package version, git revision)."""
    from mmbench.config import config_to_dict

    payload = {
        "model": type(model).registry_name,
        "config": config_to_dict(model.config),
        "modalities": [m.to_dict() for m in model.modalities],
        "state_dict": model.state_dict(),
        "provenance": provenance(),
        **(extra or {}),
    }
    save_checkpoint(path, payload)
    recorded = ("model", "config", "modalities", "provenance")
    atomic_write_json(Path(path).with_suffix(".config.json"), {k: payload[k] for k in recorded})


def load_model(path: Path) -> tuple[Any, dict]:
    """Rebuild the registered model of a checkpoint and load its weights; returns (model, payload)."""
    from mmbench.config import build_config
    from mmbench.registry import MODELS

    payload = load_checkpoint(path)
    cls = MODELS.get(payload["model"])
    modalities = [Modality.from_dict(d) for d in payload["modalities"]]
    model = cls(modalities, build_config(cls.Config, payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model, payload

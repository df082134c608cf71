"""Where a result came from: package versions and git revision (the device: ``mmbench.device.device_info``)."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

from mmbench._version import __version__


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes); "unknown" for an installed wheel."""
    root = Path(__file__).resolve().parents[2]  # the folder holding the mmbench package
    if not (root / "pyproject.toml").is_file():  # site-packages, maybe inside some other git checkout
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        rev = out.stdout.strip()
        if out.returncode != 0 or not rev:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    """{"mmbench", "torch", "python", "git"}: strings only (a checkpoint keeps it; ``torch.__version__`` is a
    ``TorchVersion``, which ``torch.load(weights_only=True)`` refuses)."""
    return {
        "mmbench": str(__version__),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "git": git_revision(),
    }

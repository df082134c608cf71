"""Where a result came from: package versions, git revision, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        rev = out.stdout.strip()
        if out.returncode != 0 or not rev:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance() -> dict:
    import mmbench

    return {
        "mmbench": mmbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git": git_revision(),
    }

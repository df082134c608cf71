"""Sweeps: sweep files and the command-line override grammar (``files``, ``overrides``), executors (inline, local,
SLURM through submitit: ``executors``) and submission, status and cancelling (``submission``).

``from mmbench.sweeps import load_sweep`` (the flat layout's module) still works for this release, with a
DeprecationWarning: import from ``mmbench.sweeps.files``.
"""

from __future__ import annotations

import importlib
import warnings


def __getattr__(name: str):
    files = importlib.import_module("mmbench.sweeps.files")

    if name.startswith("__") or not hasattr(files, name):
        raise AttributeError(f"module 'mmbench.sweeps' has no attribute {name!r}")
    warnings.warn(
        f"mmbench.sweeps.{name} moved to mmbench.sweeps.files.{name}; import from there (docs/architecture.md)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(files, name)

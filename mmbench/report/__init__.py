"""The report: run records as frames (``frames``), leaderboards (``leaderboards``), the paper's figures
(``figures``) and the whole report folder (``build``).

``from mmbench.report import build_report`` (the flat layout's module) still works for this release, with a
DeprecationWarning: import from ``mmbench.report.build``.
"""

from __future__ import annotations

import importlib
import warnings


def __getattr__(name: str):
    build = importlib.import_module("mmbench.report.build")

    if name.startswith("__") or not hasattr(build, name):
        raise AttributeError(f"module 'mmbench.report' has no attribute {name!r}")
    warnings.warn(
        f"mmbench.report.{name} moved to mmbench.report.build.{name}; import from there (docs/architecture.md)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(build, name)

"""Old module paths of the flat layout, kept for one release: importing one warns (DeprecationWarning) and gives
the module it moved to. An import hook serves them, so the old files are gone from the tree."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module -> (where its names live now, {old name: new name})
OLD_PATHS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "mmbench.checkpoint": (
        ("mmbench.storage.checkpoint", "mmbench.storage.atomic"),
        {"_fsync_dir": "fsync_dir", "_write_temp": "write_temp_file"},
    ),
    "mmbench.distributed": (("mmbench.training.distributed",), {}),
    "mmbench.evalrun": (("mmbench.runs.evaluate",), {}),
    "mmbench.evaluate": (("mmbench.metrics.runner",), {}),
    "mmbench.executors": (("mmbench.sweeps.executors", "mmbench.runs.scheduler"), {}),
    "mmbench.latents": (("mmbench.runs.latents",), {}),
    "mmbench.leaderboards": (("mmbench.report.leaderboards",), {}),
    "mmbench.locks": (("mmbench.runs.locks", "mmbench.runs.scheduler"), {}),
    "mmbench.memory_format": (("mmbench.training.memory_format",), {}),
    "mmbench.plots": (("mmbench.storage.figures",), {}),
    "mmbench.priorfit": (("mmbench.runs.prior_fit",), {}),
    "mmbench.provenance": (("mmbench.storage.provenance",), {}),
    "mmbench.report_figures": (("mmbench.report.figures",), {}),
    "mmbench.results": (("mmbench.storage.records", "mmbench.report.frames"), {"_flat": "flat_setting"}),
    "mmbench.run": (("mmbench.runs.execute",), {}),
    "mmbench.runoptions": (("mmbench.training.options",), {}),
    "mmbench.runspec": (("mmbench.runs.spec",), {}),
    "mmbench.samples": (("mmbench.runs.samples",), {}),
    "mmbench.submission": (("mmbench.sweeps.submission",), {}),
    "mmbench.throughput": (("mmbench.training.throughput",), {}),
    "mmbench.train": (("mmbench.training.trainer",), {}),
    "mmbench.trainlog": (("mmbench.training.log",), {}),
}


def moved(old: str, *targets: str, renames: dict[str, str] | None = None) -> None:
    """Make module ``old`` the module ``targets[0]`` (or, for a module split in several, every name of each
    target plus ``renames`` {old name: new name}), warning with a DeprecationWarning."""
    warnings.warn(
        f"{old} moved to {' and '.join(targets)}; import from there (docs/architecture.md); "
        f"the old path goes in the next release",
        DeprecationWarning,
        stacklevel=4,
    )
    if len(targets) == 1 and not renames:
        sys.modules[old] = importlib.import_module(targets[0])
        return
    module = sys.modules[old]
    for target in targets:
        for name, value in vars(importlib.import_module(target)).items():
            if not name.startswith("__"):
                setattr(module, name, value)
    for old_name, new_name in (renames or {}).items():
        setattr(module, old_name, getattr(module, new_name))


class OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths (``OLD_PATHS``) and loads each as the module it moved to."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in OLD_PATHS else None

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        targets, renames = OLD_PATHS[module.__name__]
        moved(module.__name__, *targets, renames=renames)


def forward_to(package: str, module: str):
    """A package's ``__getattr__`` that serves the names of the flat layout's module of the same path from
    ``module``, with a DeprecationWarning (``mmbench.sweeps`` and ``mmbench.report`` were modules)."""

    def __getattr__(name: str):
        target = importlib.import_module(module)
        if name.startswith("__") or not hasattr(target, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        warnings.warn(
            f"{package}.{name} moved to {module}.{name}; import from there (docs/architecture.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(target, name)

    return __getattr__


def install() -> None:
    """Serve the old paths (once per interpreter)."""
    if not any(isinstance(f, OldPathFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, OldPathFinder())  # before any finder that could see a stale old file

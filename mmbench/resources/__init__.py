"""Package data: the paper's sweep files (``sweeps/*.toml``) and the numbers the papers report
(``published.csv``), read with importlib.resources so that an installed wheel finds them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mmbench.errors import MMBenchError, did_you_mean


def resource_path(*parts: str) -> Path:
    """A file shipped inside the package (a wheel installs it unzipped, so it has a real path)."""
    return Path(str(resources.files("mmbench.resources").joinpath(*parts)))


def published_csv() -> Path:
    """The papers' numbers (``mmbench report``'s default --published)."""
    return resource_path("published.csv")


def packaged_sweeps() -> list[str]:
    """The names of the sweep files mmbench ships (polymnist_scaling, demo, ...)."""
    return sorted(p.stem for p in resource_path("sweeps").glob("*.toml"))


def sweep_file(name_or_path: str | Path) -> Path:
    """A sweep file given as a path, or by the name of a packaged one (``polymnist_scaling``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    packaged = resource_path("sweeps", f"{name}.toml")
    if (len(path.parts) == 1 or path.parts[0] == "sweeps") and packaged.is_file():
        return packaged
    raise MMBenchError(
        f"sweep file {path} does not exist, and mmbench ships no sweep of that name "
        f"(packaged: {', '.join(packaged_sweeps())}){did_you_mean(name, packaged_sweeps())}"
    )

"""Names that become one path component under the runs folder: a sweep's name (``RUNS/.sweeps/<name>``), a run id
(``RUNS/<run id>``), a job id (``.../logs/<job id>``). Sweep names come from users and run references from the
command line, so one that would leave its folder (``..``, an absolute path, a path separator) is refused in one
line naming the field, before any path is built from it."""

from __future__ import annotations

from pathlib import PureWindowsPath

from mmbench.errors import MMBenchError


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component inside a folder, or None when it can."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "it is an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts or name == ".":
        return "it would leave the folder ('..')" if ".." in parts else "it names the folder itself ('.')"
    if len(parts) > 1:
        return "it holds a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    return None


def check_name(name: object, field: str) -> str:
    """``name`` when it can be one path component; else an MMBenchError naming ``field``."""
    problem = name_problem(name)
    if problem:
        raise MMBenchError(
            f"{field} = {name!r} cannot name a folder or file inside the runs folder: {problem}; use a plain name "
            "(letters, digits, '-', '_', '.')"
        )
    return name  # type: ignore[return-value]

"""Debian's headless Chromium for the report's browser tests (installed by .ci/run: apt-get install chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# No background networking: this machine's closed network refuses Chromium's own connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]


def chromium() -> str:
    """The browser's path; a skip where it is not installed, a failure in CI (which installs it)."""
    path = shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(args: list[str], profile: Path) -> str:
    out = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran (load event included)."""
    return _run(["--dump-dom", page.resolve().as_uri()], profile)


def screenshot(page: Path, png: Path, profile: Path, size: str = "1280,2400") -> Path:
    _run([f"--screenshot={png.resolve()}", f"--window-size={size}", page.resolve().as_uri()], profile)
    return png

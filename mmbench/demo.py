"""The CPU demo: PolyMNIST built offline -> MoPoE trained -> coherence -> records -> leaderboard and plot."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from mmbench.errors import MMBenchError
from mmbench.resources import published_csv, resource_path

logger = logging.getLogger(__name__)

DEMO_SWEEPS = {False: "demo", True: "demo_quick"}  # packaged sweep files (mmbench.resources)


def run_demo(out: Path, *, quick: bool = False, progress: bool = True, log: Callable[[str], None] | None = None):
    """Run the demo sweep under ``out`` and write the report in ``out/report``; returns the ``Report``."""
    log = log or logger.info
    from mmbench.data.polymnist_build import build_polymnist
    from mmbench.report.build import build_report
    from mmbench.sweeps.files import load_sweep
    from mmbench.sweeps.submission import submit

    sweep_file = resource_path("sweeps", f"{DEMO_SWEEPS[quick]}.toml")
    t0 = time.perf_counter()
    out = Path(out).resolve()
    data = out / "data" / "polymnist"
    if not (data / "manifest.json").is_file():
        log(f"building PolyMNIST (5 modalities) offline in {data}")
        if data.exists() and not any(data.iterdir()):
            data.rmdir()
        build_polymnist(data, 5, seed=0, progress=progress)
    else:
        log(f"using PolyMNIST in {data}")
    sweep = load_sweep(sweep_file, [f"dataset.root={_toml_str(data)}"], None, out / "runs")
    records = submit(sweep, progress=progress, log=log)
    failed = [r for r in records if r["status"] != "finished"]
    if failed:
        raise MMBenchError(f"demo run {failed[0]['run_id']} failed: {failed[0].get('failure')}")
    report = build_report(out / "runs", out / "report", published_csv(), device="cpu", log=log)
    log((report.out / "leaderboard.md").read_text())
    log(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is under {out}; the report: {report.index}")
    return report


def _toml_str(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

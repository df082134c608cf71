"""A sweep on one machine: the local executor against running the same runs inline, one after another.

    python benchmarks/local_executor.py [--runs 4] [--steps 100] [--repeats 1] [--modes inline before after ...]
                                        [--out benchmarks/out/local_executor]

The sweep is issue 22's: MoPoE at latent 32, batch 32, ``--steps`` steps, one run per seed, on the offline
PolyMNIST (5 modalities; built under OUT once), no metrics. Each mode starts from an empty runs folder and is
timed from the command's start until every run has its record:

- ``inline``: ``mmbench sweep submit --executor inline``, the runs one after another in one process;
- ``before``: what the local executor did before issue 22, every run as its own submitit local job at once with
  torch's default threads (submitit's LocalExecutor and ``mmbench.runs.execute.execute``, as the old job did);
- ``after``: ``mmbench sweep submit --executor local`` with its default share of this machine;
- ``after-1cpu``: the same with ``[executor] cpus_per_task = 1`` (as many one-thread jobs as cores).

Prints the median wall time of each mode over ``--repeats`` (``before``, the slow reference, runs in the first
repeat only unless ``--repeat-before``) and its ratio to inline (the goal for ``after``:
<= 1.1x), and writes the table to OUT/local_executor.md. Run it alone: it uses every core.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mmbench.data.polymnist_build import build_polymnist
from mmbench.device import machine_cores

HERE = Path(__file__).resolve().parent
GOAL = 1.1
MODES = ("inline", "before", "after", "after-1cpu")

SWEEP = """[sweep]
name = "local-bench"
models = ["mopoe"]
seeds = {seeds}

[dataset]
name = "polymnist"
root = "{root}"

[config]
latent_dim = 32
batch_size = 32
max_steps = {steps}
epochs = 1000

[evaluate]
metrics = []

[run]
device = "cpu"
tensorboard = false

[executor]
name = "local"
timeout_min = 60
{extra}"""


def sweep_file(out: Path, root: Path, runs: int, steps: int, extra: str = "") -> Path:
    path = out / f"sweep{'-' + extra.split()[0] if extra else ''}.toml"
    path.write_text(SWEEP.format(seeds=list(range(runs)), root=root, steps=steps, extra=extra))
    return path


def wait_for_records(runs_dir: Path, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while len(list(runs_dir.glob("*/record.json"))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the runs in {runs_dir} did not finish within {limit_s:.0f} s")
        time.sleep(0.2)


def mmbench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mmbench", "-q", *args, "--no-progress"], check=True)


def run_before(sweep: Path, runs_dir: Path) -> None:
    """Every run as its own local job at once, torch's default threads: the local executor before issue 22."""
    import submitit

    from mmbench.runs.execute import execute
    from mmbench.sweeps.files import load_sweep

    loaded = load_sweep(sweep, runs_dir=runs_dir)
    ex = submitit.LocalExecutor(runs_dir / ".sweeps" / "before" / "%j")
    ex.update_parameters(timeout_min=60)
    jobs = [ex.submit(execute, spec, runs_dir, options=loaded.options, progress=False) for spec in loaded.specs]
    for job in jobs:
        job.result()


def time_mode(mode: str, out: Path, root: Path, runs: int, steps: int, repeat: int) -> float:
    runs_dir = out / f"runs-{mode}-{repeat}"
    shutil.rmtree(runs_dir, ignore_errors=True)
    extra = "cpus_per_task = 1\n" if mode == "after-1cpu" else ""
    sweep = sweep_file(out, root, runs, steps, extra)
    start = time.perf_counter()
    if mode == "inline":
        mmbench("sweep", "submit", str(sweep), "--runs", str(runs_dir), "--executor", "inline")
    elif mode == "before":
        run_before(sweep, runs_dir)
    else:
        mmbench("sweep", "submit", str(sweep), "--runs", str(runs_dir))
    wait_for_records(runs_dir, runs, limit_s=3600)
    seconds = time.perf_counter() - start
    shutil.rmtree(runs_dir, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeat-before", action="store_true", help="time 'before' in every repeat")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "local_executor")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.out / "polymnist"
    if not (root / "manifest.json").exists():
        build_polymnist(root, 5, seed=0, layout="pt", progress=False)
    times: dict[str, list[float]] = {m: [] for m in args.modes}
    for repeat in range(args.repeats):  # modes interleaved, so a noisy minute hits each alike
        for mode in args.modes:
            if mode == "before" and repeat and not args.repeat_before:
                continue
            times[mode].append(time_mode(mode, args.out, root, args.runs, args.steps, repeat))
            print(f"  {mode} #{repeat + 1}: {times[mode][-1]:.1f} s", flush=True)
    inline = statistics.median(times["inline"]) if "inline" in times else None
    lines = [
        f"{args.runs} MoPoE runs (latent 32, batch 32, {args.steps} steps each) on {machine_cores()} cores, "
        f"median of {args.repeats}" + ("" if args.repeat_before or "before" not in args.modes else " (before: 1)"),
        "",
        "| mode | wall s | vs inline | goal |",
        "| --- | ---: | ---: | --- |",
    ]
    for mode in args.modes:
        median = statistics.median(times[mode])
        ratio = f"{median / inline:.2f}x" if inline else "-"
        goal = f"<= {GOAL}x" if mode.startswith("after") else ""
        lines.append(f"| {mode} | {median:.1f} | {ratio} | {goal} |")
    table = "\n".join(lines)
    print(table)
    (args.out / "local_executor.md").write_text(table + "\n")


if __name__ == "__main__":
    main()

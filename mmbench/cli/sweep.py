"""``mmbench sweep``: plan, submit, follow, cancel and read the logs of a sweep file's runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.cli.common import add_progress_flag, add_run_flags, epilog, run_flags


def load(args: argparse.Namespace, with_run_flags: bool = False, check_data: bool = True):
    from mmbench.sweeps.files import load_sweep

    return load_sweep(
        Path(args.file),
        args.set or [],
        getattr(args, "executor", None),
        Path(args.runs) if args.runs else None,
        run_flags(args) if with_run_flags else None,
        check_data=check_data,
    )


def cmd_sweep_plan(args: argparse.Namespace) -> int:
    from mmbench.sweeps.files import data_problems
    from mmbench.sweeps.submission import survey

    sweep = load(args, with_run_flags=True, check_data=False)
    found = survey(sweep)
    print_header(sweep)
    for problem in data_problems(sweep):
        print(f"note: submit would refuse: {problem}")
    print_states(found.states, show_action=True, from_cli=sweep.from_cli if args.set else None)
    print_problems(found.problems)
    print_request(sweep, sum(s.to_submit for s in found.states))
    return 0


def print_problems(problems: list[str]) -> None:
    """The files status and plan could not read, one line each (the runs they belong to show as unreadable)."""
    for problem in problems:
        print(f"skipped, unreadable: {problem}")


def print_request(sweep, todo: int) -> None:
    """How many runs submit would queue: for SLURM the request of the job array, for the local executor this
    machine's share (jobs at once, threads, GPUs)."""
    from mmbench.errors import MMBenchError
    from mmbench.sweeps.executors import slurm_request
    from mmbench.sweeps.machine_share import local_share

    print(
        f"{todo} run(s) would be submitted"
        + (" as one job array" if todo > 1 and sweep.executor.name == "slurm" else "")
    )
    if todo and sweep.executor.name == "slurm":
        print(f"SLURM request: {slurm_request(sweep.executor, todo, sweep.name)}")
    if todo and sweep.executor.name == "local":
        try:
            print(f"this machine: {local_share(sweep.executor.resources, todo).describe()}")
        except MMBenchError as exc:
            print(f"note: submit would refuse: {exc}")


def print_header(sweep) -> None:
    print(
        f"sweep {sweep.name}: {len(sweep.specs)} runs, executor {sweep.executor.name}, device {sweep.options.device}, "
        f"records in {sweep.runs_dir}"
    )
    if sweep.cli_settings:
        print("from --set: " + " ".join(f"{k}={v}" for k, v in sweep.cli_settings.items()))


def print_states(states, *, show_action: bool, from_cli: dict | None = None) -> None:
    from_cli = from_cli or {}
    rows = [
        (
            s.spec.run_id,
            s.spec.model,
            grid_point(s.spec),
            s.state + (f" ({s.detail})" if s.detail and s.state != "unreadable" else ""),
            s.job_id or "-",
            s.job_state or "-",
            s.action if show_action else "",
            " ".join(f"{k}={v}" for k, v in from_cli.get(s.spec.run_id, {}).items()) if from_cli else "",
        )
        for s in states
    ]
    heads = (
        "run",
        "model",
        "config",
        "state",
        "job",
        "scheduler",
        "action" if show_action else "",
        "from --set" if from_cli else "",
    )
    widths = [max(len(str(r[i])) for r in [heads, *rows]) for i in range(len(heads))]
    for r in [heads, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())


def grid_point(spec) -> str:
    items = {
        **{f"dataset.{k}": v for k, v in spec.dataset_options.items() if k != "root"},
        **spec.config,
        "seed": spec.seed,
    }
    return " ".join(f"{k}={v}" for k, v in items.items()) or "-"


def cmd_sweep_submit(args: argparse.Namespace) -> int:
    from mmbench.sweeps.submission import run_states, submit

    if args.dry_run:
        sweep = load(args, with_run_flags=True)
        states = run_states(sweep)
        print_header(sweep)
        print_states(
            [s for s in states if s.to_submit], show_action=True, from_cli=sweep.from_cli if args.set else None
        )
        print_request(sweep, sum(s.to_submit for s in states))
        print("dry run: nothing was submitted")
        return 0
    sweep = load(args, with_run_flags=True)
    print_header(sweep)
    results = submit(sweep, progress=not args.no_progress)
    if sweep.executor.name != "inline":
        for r in results:
            if r["submitted"]:
                print(f"{r['run_id']:<28} submitted as job {r['job_id']}")
            else:
                print(f"{r['run_id']:<28} left alone: {r['status']}" + (f" (job {r['job_id']})" if r["job_id"] else ""))
        queued = [r for r in results if r["submitted"]]
        print(
            f"{len(queued)} queued, {len(results) - len(queued)} left alone; follow with: mmbench sweep status {args.file}"
        )
        return 0
    failed = [r for r in results if r["status"] not in ("finished", "running")]
    running = sum(r["status"] == "running" for r in results)
    print(
        f"{sum(r['status'] == 'finished' for r in results)} finished, {len(failed)} failed"
        + (f", {running} running elsewhere" if running else "")
    )
    return 1 if failed else 0


def cmd_sweep_status(args: argparse.Namespace) -> int:
    from mmbench.sweeps.submission import survey

    found = survey(load(args, check_data=False))
    print_states(found.states, show_action=False)
    print_problems(found.problems)
    kinds = ("finished", "running", "queued", "partial", "pending", "failed", "unreadable")
    counts = {k: sum(s.state == k for s in found.states) for k in kinds}
    print(", ".join(f"{n} {k}" for k, n in counts.items() if n or k != "unreadable"))
    return 0


def cmd_sweep_cancel(args: argparse.Namespace) -> int:
    from mmbench.sweeps.submission import cancel

    ids = cancel(load(args, check_data=False))
    print(f"cancelled {len(ids)} job(s): {', '.join(ids)}" if ids else "no queued or running job to cancel")
    return 0


def cmd_sweep_logs(args: argparse.Namespace) -> int:
    from mmbench.sweeps.submission import log_files

    job_id, out, err = log_files(load(args, check_data=False), args.run)
    for name, path in (("stdout", out), ("stderr", err)):
        print(f"==> job {job_id} {name}: {path}")
        print(path.read_text(errors="replace") if path.is_file() else "(not written yet)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    sp = sub.add_parser("sweep", help="plan, submit and follow sweeps described by TOML files")
    ssub = sp.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")

    def sweep_args(s, executor: bool = False):
        s.add_argument("file", help="sweep file (TOML), or the name of a packaged one (polymnist_scaling)")
        if executor:
            s.add_argument(
                "--executor",
                choices=["inline", "local", "slurm"],
                default=None,
                help="where runs execute (default: the file's [executor] name)",
            )
        s.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a sweep-file value; it wins over the file's [grid] and [config.MODEL] too, "
            "e.g. --set dataset.root=DIR --set config.epochs=5 --set 'grid.beta=[0.5,1]'",
        )
        s.add_argument("--runs", default=None, help="runs folder (default: the file's runs_dir or results/runs)")

    example = "mmbench sweep {} sweeps/polymnist_scaling.toml --set dataset.root=data/polymnist"
    s = ssub.add_parser(
        "plan",
        help="show each run, its id, its state, what submit would do and the SLURM request, submitting nothing",
        epilog=epilog(example.format("plan"), "Sweep files"),
        formatter_class=raw,
    )
    sweep_args(s, executor=True)
    add_run_flags(s)
    s.set_defaults(func=cmd_sweep_plan)
    s = ssub.add_parser(
        "submit",
        help="run (inline) or queue (local, slurm: one job array) every run not finished, "
        "running or queued; partial runs resume",
        epilog=epilog(example.format("submit") + " --dry-run", "Executors and SLURM"),
        formatter_class=raw,
    )
    sweep_args(s, executor=True)
    add_run_flags(s)
    add_progress_flag(s)
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="validate everything and show what would be queued, with the SLURM request; submit nothing",
    )
    s.set_defaults(func=cmd_sweep_submit)
    s = ssub.add_parser(
        "status",
        help="each run's state with its job and the scheduler's state of that job",
        epilog=epilog(example.format("status"), "Executors and SLURM"),
        formatter_class=raw,
    )
    sweep_args(s)
    s.set_defaults(func=cmd_sweep_status)
    s = ssub.add_parser(
        "cancel",
        help="cancel the sweep's queued and running jobs (runs keep their checkpoints)",
        epilog=epilog(example.format("cancel"), "Executors and SLURM"),
        formatter_class=raw,
    )
    sweep_args(s)
    s.set_defaults(func=cmd_sweep_cancel)
    s = ssub.add_parser(
        "logs",
        help="print the stdout and stderr of a run's last job",
        epilog=epilog(example.format("logs") + " mopoe-0123", "Executors and SLURM"),
        formatter_class=raw,
    )
    sweep_args(s)
    s.add_argument("run", help="run id (or a unique prefix of it)")
    s.set_defaults(func=cmd_sweep_logs)

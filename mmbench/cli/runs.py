"""One run: ``mmbench train``, and what is done with a finished run: ``eval``, ``prior fit``, ``samples``;
``mmbench demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.cli.common import (
    add_device_flag,
    add_progress_flag,
    add_run_argument,
    add_run_flags,
    epilog,
    run_flags,
    run_folder,
)


def cmd_train(args: argparse.Namespace) -> int:
    from mmbench.runs.execute import execute
    from mmbench.sweeps.files import train_sweep

    sweep = train_sweep(
        args.model,
        args.dataset,
        args.data_root,
        args.modalities,
        args.seed,
        args.metrics,
        args.set or [],
        run_flags(args),
    )
    record = execute(sweep.specs[0], Path(args.runs), options=sweep.options, progress=not args.no_progress)
    if record is None:  # a rank other than 0 of a data-parallel run (torchrun): rank 0 reports
        return 0
    print(f"run {record.run_id} {record.status}: {Path(args.runs) / record.run_id}")
    return 0 if record.finished else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from mmbench.runs.evaluate import evaluate_run
    from mmbench.sweeps.overrides import metric_options, parse_overrides

    run = run_folder(args)
    options = metric_options(parse_overrides((args.set or []) + (args.option or []), "evaluate.fid.dims=768"))
    rows = evaluate_run(
        run,
        args.metrics,
        n_samples=args.n_samples,
        priors=args.prior or [],
        fid_weights=args.fid_weights,
        device=args.device,
        unconditional_only=args.unconditional_only,
        options=options,
        progress=not args.no_progress,
    )
    summary = [r for r in rows if (r.target == "*" and r.given in ("*", "")) or r.metric == "classifier_accuracy"]
    for r in summary:
        where = "unconditional" if r.n_given == 0 else f"{r.n_given} given"
        prior = f" ({r.prior})" if r.prior else ""
        print(f"{r.metric:<20} {r.target:<4} {where:<14}{prior:<12} {r.value:.4f}")
    print(f"{len(rows)} rows added to {run / 'record.json'}")
    return 0


def cmd_prior_fit(args: argparse.Namespace) -> int:
    from mmbench.runs.prior_fit import fit_prior
    from mmbench.sweeps.overrides import apply_to_table, parse_overrides

    run = run_folder(args)
    kind = args.prior or args.kind or "score"
    config = apply_to_table({}, parse_overrides(args.set or [], "prior.steps=4000"), "prior")
    rows = fit_prior(run, kind, config, device=args.device, progress=not args.no_progress)
    width = max(len(r.metric) for r in rows)
    for r in rows:
        if r.target == "*":
            print(f"{r.metric:<{width}}  {r.prior:<10} {r.value:.4f}")
    print(f"prior saved to {run / f'prior-{kind}.pt'}; rows added to {run / 'record.json'}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from mmbench.runs.samples import save_sample_grid

    n = args.n_samples if args.n_samples is not None else args.n
    out = save_sample_grid(
        run_folder(args),
        Path(args.out) if args.out else None,
        given=args.given,
        n=n,
        seed=args.seed,
        prior=args.prior,
        device=args.device,
    )
    print(f"sample grid written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mmbench.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=not args.no_progress)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    sp = sub.add_parser(
        "train",
        help="train and evaluate one model (one run, recorded like a sweep's)",
        epilog=epilog(
            "mmbench train --model mopoe --data-root data/polymnist --set config.epochs=5 --device cpu",
            "A five-minute tour",
        ),
        formatter_class=raw,
    )
    sp.add_argument("--model", required=True, help="registered model name (mmbench list models)")
    sp.add_argument("--dataset", default="polymnist", help="registered dataset name (default polymnist)")
    sp.add_argument("--data-root", default=None, help="dataset folder (same as --set dataset.root=DIR)")
    sp.add_argument("--modalities", type=int, default=0, help="use only the first k modalities (default all)")
    sp.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config.FIELD (or FIELD), dataset.OPTION, evaluate.METRIC.OPTION or run.OPTION, "
        "e.g. --set config.beta=1.0 --set dataset.pad_to=32 (mmbench show config MODEL)",
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--metrics", nargs="*", default=["coherence"], help="metrics to evaluate (default coherence)")
    sp.add_argument("--runs", default="results/runs", help="runs folder (default results/runs)")
    add_run_flags(sp)
    add_progress_flag(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser(
        "eval",
        help="evaluate a finished run (again, or with new metrics) without retraining",
        epilog=epilog(
            "mmbench eval results/runs/mopoe-0123456789ab --metrics fid --fid-weights "
            "pt_inception-2015-12-05-6726825d.pth",
            "Metrics",
        ),
        formatter_class=raw,
    )
    add_run_argument(sp, "checkpoint.pt and record.json")
    sp.add_argument("--metrics", nargs="+", default=None, help="metrics (default: the run's; mmbench list metrics)")
    sp.add_argument("--n-samples", type=int, default=None, help="FID samples (default 10,000, as the paper)")
    sp.add_argument(
        "--prior",
        action="append",
        metavar="KIND",
        help="also generate unconditionally from prior-KIND.pt (after mmbench prior fit); repeatable",
    )
    sp.add_argument(
        "--fid-weights",
        default=None,
        metavar="PATH",
        help="pt_inception-2015-12-05-6726825d.pth (default: $MMBENCH_FID_WEIGHTS, then the torch hub cache)",
    )
    sp.add_argument("--unconditional-only", action="store_true", help="skip conditional generation")
    sp.add_argument(
        "--set",
        action="append",
        metavar="evaluate.METRIC.KEY=VALUE",
        help="a metric option for this evaluation, e.g. --set evaluate.fid.dims=768 (mmbench show metric NAME)",
    )
    sp.add_argument(
        "--option",
        action="append",
        metavar="METRIC.KEY=VALUE",
        help="the same as --set evaluate.METRIC.KEY=VALUE, e.g. --option fid.max_subsets=2",
    )
    add_device_flag(sp, "auto")
    add_progress_flag(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("prior", help="priors over z fitted on a finished run's encoder")
    psub = sp.add_subparsers(dest="prior_command", required=True, metavar="ACTION")
    pf = psub.add_parser(
        "fit",
        help="fit a prior (default: Diff-MVAE's score prior) on a run and compare it with N(0, I)",
        epilog=epilog("mmbench prior fit results/runs/mopoe-0123456789ab --set prior.steps=4000", "Metrics"),
        formatter_class=raw,
    )
    add_run_argument(pf, "checkpoint.pt and spec.json")
    pf.add_argument(
        "--prior", default=None, metavar="KIND", help="registered prior (default score; mmbench list priors)"
    )
    pf.add_argument("--kind", default=None, help=argparse.SUPPRESS)  # the earlier name of --prior
    pf.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="prior config override (prior.FIELD or FIELD), e.g. --set prior.steps=4000",
    )
    add_device_flag(pf, "auto")
    add_progress_flag(pf)
    pf.set_defaults(func=cmd_prior_fit)

    sp = sub.add_parser(
        "samples",
        help="draw a sample grid of a trained run: inputs, conditional and unconditional samples",
        epilog=epilog("mmbench samples results/runs/mopoe-0123456789ab --given m0 m1", "The report"),
        formatter_class=raw,
    )
    add_run_argument(sp, "checkpoint.pt and spec.json")
    sp.add_argument("--given", nargs="+", help="observed modalities for the conditional rows (default: the first)")
    sp.add_argument(
        "--n-samples", type=int, default=None, help="columns: test examples and unconditional draws (default 8)"
    )
    sp.add_argument("--n", type=int, default=8, help=argparse.SUPPRESS)  # the earlier name of --n-samples
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument(
        "--prior", default=None, help="draw unconditional z from prior-<PRIOR>.pt (after mmbench prior fit)"
    )
    sp.add_argument("--out", default=None, help="PNG path (default RUN/samples.png)")
    add_device_flag(sp, "auto")
    sp.set_defaults(func=cmd_samples)

    sp = sub.add_parser(
        "demo",
        help="the CPU demo: build PolyMNIST, train MoPoE, evaluate, leaderboard and plot",
        epilog=epilog("mmbench demo --quick --out demo-output", "The demo"),
        formatter_class=raw,
    )
    sp.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    sp.add_argument("--quick", action="store_true", help="the reduced demo the tests run (about a minute)")
    add_progress_flag(sp)
    sp.set_defaults(func=cmd_demo)

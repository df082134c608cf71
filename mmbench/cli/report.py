"""``mmbench report``: leaderboards, the paper's figures, sample grids and the HTML page from run records."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.cli.common import add_device_flag, epilog


def cmd_report(args: argparse.Namespace) -> int:
    from mmbench.report.build import build_report
    from mmbench.resources import published_csv

    published = None if args.no_published else Path(args.published) if args.published else published_csv()
    samples = [] if args.no_samples else args.samples
    build_report(Path(args.runs), Path(args.out), published, samples=samples, device=args.device)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "report",
        help="leaderboards (Markdown, LaTeX, CSV), the paper's figures, sample grids, "
        "index.html and README.md from run records",
        epilog=epilog("mmbench report --runs results/runs --out results/reports", "The report"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("--runs", default="results/runs", help="runs folder (default results/runs)")
    sp.add_argument("--out", default="results/reports", help="output folder (default results/reports)")
    sp.add_argument(
        "--published",
        default=None,
        help="CSV of paper-reported numbers (default: the one mmbench ships, published.csv)",
    )
    sp.add_argument("--no-published", action="store_true", help="leave the paper rows out")
    sp.add_argument(
        "--samples",
        nargs="+",
        metavar="RUN_ID",
        default=None,
        help="runs whose sample grid to draw (default: the best run per model at one given modality)",
    )
    sp.add_argument("--no-samples", action="store_true", help="draw no sample grids")
    add_device_flag(sp, "auto")
    sp.set_defaults(func=cmd_report)

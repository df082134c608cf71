"""``mmbench list`` and ``mmbench show``: what is registered, and every option of a model, dataset, metric or sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.cli.common import epilog


def cmd_list(args: argparse.Namespace) -> int:
    from mmbench.registry import DATASETS, METRICS, MODELS, PRIORS

    registry = {"models": MODELS, "datasets": DATASETS, "metrics": METRICS, "priors": PRIORS}[args.what]
    entries = registry.entries()
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.description}")
    return 0


def cmd_show_config(args: argparse.Namespace) -> int:
    from mmbench import describe
    from mmbench.sweeps.overrides import apply_to_table, parse_overrides

    overrides = apply_to_table({}, parse_overrides(args.set or [], "config.beta=0.5"), "config")
    source, fields = describe.config_fields(args.model, overrides)
    if args.toml:
        print(describe.fields_as_toml(f"config.{args.model}", f"{args.model}: {source}", fields))
    else:
        print(describe.fields_as_text(f"{args.model}: {source}", fields))
    return 0


def cmd_show_options(args: argparse.Namespace) -> int:
    from mmbench import describe

    summary, fields = (describe.dataset_options if args.kind == "dataset" else describe.metric_options)(args.name)
    table = "dataset" if args.kind == "dataset" else f"evaluate.{args.name}"
    if args.toml:
        print(describe.fields_as_toml(table, f"{args.name}: {summary}", fields))
    else:
        print(describe.fields_as_text(f"{args.name}: {summary}", fields))
    return 0


def cmd_show_sweep(args: argparse.Namespace) -> int:
    from mmbench import describe
    from mmbench.sweeps.files import load_sweep, resolved_document

    sweep = load_sweep(args.file, args.set or [], check_data=False)
    print(
        f"# {args.file} as resolved{' with ' + ' '.join('--set ' + s for s in args.set) if args.set else ''}: "
        f"{len(sweep.specs)} runs"
    )
    print(describe.doc_as_toml(resolved_document(Path(args.file), args.set or [])), end="")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "list",
        help="list registered models, datasets, metrics or priors",
        epilog=epilog("mmbench list models", "Models"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("what", choices=["models", "datasets", "metrics", "priors"])
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser(
        "show", help="every field of a model's config, a dataset's or metric's options, or a sweep file as resolved"
    )
    ssub = sp.add_subparsers(dest="show_command", required=True, metavar="WHAT")
    raw = argparse.RawDescriptionHelpFormatter
    c = ssub.add_parser(
        "config",
        help="a model's config: every field, type, default (the paper's preset), meaning",
        epilog=epilog("mmbench show config mopoe --set beta=1 --toml", "Sweep files"),
        formatter_class=raw,
    )
    c.add_argument("model", help="registered model name (mmbench list models)")
    c.add_argument("--set", action="append", metavar="FIELD=VALUE", help="show the config with this value (checked)")
    c.add_argument("--toml", action="store_true", help="print a [config.MODEL] table to start a sweep file from")
    c.set_defaults(func=cmd_show_config)
    for kind in ("dataset", "metric"):
        o = ssub.add_parser(
            kind,
            help=f"a {kind}'s options: type, default, meaning",
            epilog=epilog(
                f"mmbench show {kind} {'polymnist' if kind == 'dataset' else 'coherence'}",
                "Data" if kind == "dataset" else "Metrics",
            ),
            formatter_class=raw,
        )
        o.add_argument("name", help=f"registered {kind} name (mmbench list {kind}s)")
        o.add_argument("--toml", action="store_true", help="print the options as a TOML table")
        o.set_defaults(func=cmd_show_options, kind=kind)
    s = ssub.add_parser(
        "sweep",
        help="a sweep file as resolved (--set applied), as TOML",
        epilog=epilog("mmbench show sweep sweeps/polymnist_scaling.toml --set config.epochs=5", "Sweep files"),
        formatter_class=raw,
    )
    s.add_argument("file", help="sweep file (TOML) or the name of a packaged one (polymnist_scaling)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a command-line override, as for sweep plan")
    s.set_defaults(func=cmd_show_sweep)

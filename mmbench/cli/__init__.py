# PYTHON_ARGCOMPLETE_OK
"""The ``mmbench`` command: one module per command group, each adding its parsers; logic lives in the package.

Exit status: 0 success; 1 a run or sweep finished with failed runs; 2 bad input (one line ``mmbench: error: ...``);
130 interrupted (Ctrl-C or SIGTERM: partial runs resume from their checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import NoReturn

from mmbench.errors import MMBenchError, did_you_mean

EXIT_CODES = {
    0: "success",
    1: "a run or sweep finished with failed runs",
    2: "bad input (one line on stderr)",
    130: "interrupted: partial runs resume from their checkpoint",
}


class Parser(argparse.ArgumentParser):
    """argparse with mmbench's error line: ``mmbench: error: ...`` alone, a close match for a mistyped choice,
    exit status 2 (argparse prints its usage first and suggests nothing)."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = [c.strip(" '") for c in choice.group(2).split(",")]
            message += did_you_mean(choice.group(1), options)
        command = self.prog.removeprefix("mmbench").strip()
        print(f"mmbench: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from mmbench import __version__
    from mmbench.cli import checkpoint, data, plugins, report, runs, sweep

    p = Parser(
        prog="mmbench",
        description="Train and compare multimodal VAEs on shared data and metrics.",
        epilog="exit status: "
        + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items())
        + '. Environment variables and shell completion: README, section "Reference".',
    )
    p.add_argument("--version", action="version", version=f"mmbench {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (plugins, data, runs, sweep, report, checkpoint):
        group.add_parsers(sub)
    return p


def configure_logging(verbose: int, quiet: bool) -> None:
    """mmbench's loggers: progress lines on stdout (INFO; DEBUG with -vv, none with -q), warnings on stderr."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    plain = logging.Formatter("%(message)s" if verbose < 2 else "%(name)s: %(message)s")
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(plain)
    root = logging.getLogger("mmbench")
    root.handlers[:] = [out, err]
    root.setLevel(level)
    root.propagate = False


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler, kill) ends a command like Ctrl-C: runs stay partial and resume, never "failed"."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete when it is installed (pip install "mmbench[completion]")."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
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
        print(
            "mmbench: interrupted; finished runs are recorded and partial runs resume from their checkpoint",
            file=sys.stderr,
        )
        return 130


__all__ = ["EXIT_CODES", "build_parser", "main"]

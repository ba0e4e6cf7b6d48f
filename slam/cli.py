"""Command line: `slam <command> ...`; each command lives in slam/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from slam.errors import InputError
from slam.priority import keep_freed_memory, one_blas_thread

one_blas_thread()  # before NumPy is imported (the command modules import it)
keep_freed_memory()

# name -> one-line help; the module slam.commands.<name> provides add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "run": "run SLAM on a source and write a run folder",
    "eval": "compare an estimated trajectory with ground truth (ATE/RPE)",
    "pgo": "optimize a pose graph (g2o) in a chosen precision",
    "ba": "solve a bundle-adjustment problem (BAL) in a chosen precision",
    "simulate": "render a synthetic sequence with exact ground truth",
    "view": "show a run folder in the 3-D viewer",
    "info": "describe a source: kind, frames, calibration, ground truth, problems",
    "demo": "run the built-in demo (no download needed)",
    "places": "find the images of a folder that revisit an earlier place (no calibration)",
    "calibrate": "calibrate a camera from chessboard views (the YAML `slam run --calibration` reads)",
    "study": "run a precision study (many runs, distributions, report.html)",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; command modules are imported only to add their own arguments."""
    parser = argparse.ArgumentParser(prog="slam", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = _load(name)
        if module is not None:
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def _load(name: str):
    try:
        return importlib.import_module(f"slam.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"slam.commands.{name}":
            return None  # command not implemented yet
        raise


def _warning_printer(command: str):
    """A warnings.showwarning that prints one line `slam CMD: warning: ...` without source paths.

    Our own warnings (dataset problems a source worked around, skipped lines of a file) are
    UserWarnings whose message names the file; anything else is shown with its kind so that it
    can be reported.
    """

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        text = str(message) if issubclass(category, UserWarning) else f"{category.__name__}: {message}"
        print(f"slam {command}: warning: {text}", file=sys.stderr if file is None else file, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `slam` console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        parser.error(f"command '{args.command}' is not available in this version")
    try:
        with warnings.catch_warnings():  # restores the caller's display of warnings afterwards
            warnings.showwarning = _warning_printer(args.command)
            return int(module.run(args) or 0)
    except InputError as exc:
        print(f"slam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slam {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `slam eval ... --json | head`): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

"""The ``lesion-suite`` command line.

Each sub-command lives in its own module with ``register(subparsers)``; :mod:`.tasks`
registers ``<task> predict|train|evaluate`` for every task of :mod:`lesion_core.tasks`. User errors (:class:`~lesion_core.errors.LesionSuiteError`) print
one line and exit with code 2; Cancel (Ctrl-C) exits with 130; anything else is a bug and
keeps its traceback.

Two options serve a parent process (the Slicer modules run the CLI as a child):
``--progress-lines`` reports progress as machine-readable lines on stdout, and
``--error-json FILE`` also writes a user error to FILE
(:func:`~lesion_core.errors.error_to_json`), so the parent raises the same error class.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__
from ..errors import (EXIT_CANCELLED, EXIT_USER_ERROR, LesionSuiteError, OperationCancelled,
                      error_to_json)
from . import demo, info, synth, tasks, validate

_COMMANDS = (info, validate, synth, demo, tasks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-suite",
        description="Brain lesion quantification (WMH, microbleeds, haemorrhage) with "
                    "label-efficient deep learning.")
    parser.add_argument("--version", action="version", version=f"lesion-suite {__version__}")
    parser.add_argument("--progress-lines", action="store_true",
                        help="report progress as machine-readable lines on stdout "
                             "(used when the Slicer extension runs this as a child process)")
    parser.add_argument("--error-json", metavar="FILE",
                        help="on a user error, also write its class, problem, fix and file "
                             "to FILE as JSON (for a parent process to raise it again)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except LesionSuiteError as exc:
        print(f"lesion-suite: error: {exc}", file=sys.stderr)
        if args.error_json:
            _write_error(exc, Path(args.error_json))
        return EXIT_USER_ERROR
    except (OperationCancelled, KeyboardInterrupt):
        print("lesion-suite: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0


def _write_error(exc: LesionSuiteError, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(error_to_json(exc), encoding="utf-8")
    except OSError as failure:
        # The one-line message is already out; a parent without the file reports the log.
        print(f"lesion-suite: could not write {path}: {failure}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

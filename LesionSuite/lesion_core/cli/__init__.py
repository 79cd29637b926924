"""The ``lesion-suite`` command line.

Each sub-command lives in its own module with ``register(subparsers)``; the task packages
add theirs the same way. User errors (:class:`~lesion_core.errors.LesionSuiteError`) print
one line and exit with code 2; Cancel (Ctrl-C) exits with 130; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import LesionSuiteError, OperationCancelled
from . import demo, info, synth, validate

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130
_COMMANDS = (info, validate, synth, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-suite",
        description="Brain lesion quantification (WMH, microbleeds, haemorrhage) with "
                    "label-efficient deep learning.")
    parser.add_argument("--version", action="version", version=f"lesion-suite {__version__}")
    parser.add_argument("--progress-lines", action="store_true",
                        help="report progress as machine-readable lines on stdout "
                             "(used when the Slicer extension runs this as a child process)")
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
        return EXIT_USER_ERROR
    except (OperationCancelled, KeyboardInterrupt):
        print("lesion-suite: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

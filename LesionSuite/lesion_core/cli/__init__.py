"""The ``lesion-suite`` command line.

Each sub-command lives in its own module with ``register(subparsers)``; :mod:`.tasks`
registers ``<task> predict|train|evaluate`` for every task of :mod:`lesion_core.tasks`.

Exit codes and what the user sees on stderr:

* 0: done;
* 2: a user error (:class:`~lesion_core.errors.LesionSuiteError`): one line naming the file,
  what is wrong and what to do;
* 130: Cancel (Ctrl-C);
* 1: anything else, which is a bug of ours, not of the input: one line
  (``lesion-suite: internal error: <type>: <message> (details in <log file>); please report
  it``) and the full traceback in a new log file, ``lesion-suite-<time>-<pid>.log`` in the
  folder ``LESION_SUITE_LOG_DIR`` names, by default the user's cache folder
  (``$XDG_CACHE_HOME`` or ``~/.cache``, ``%LOCALAPPDATA%`` on Windows, then
  ``lesion-suite/logs``). Where that folder cannot be written the log goes to the system
  temporary folder; where neither can, the traceback follows the line on stderr.

Two options serve a parent process (the Slicer modules run the CLI as a child):
``--progress-lines`` reports progress as machine-readable lines on stdout, and
``--error-json FILE`` also writes a user error to FILE
(:func:`~lesion_core.errors.error_to_json`), so the parent raises the same error class.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from .. import __version__
from ..errors import (EXIT_CANCELLED, EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, LesionSuiteError,
                      OperationCancelled, error_to_json, internal_error_line)
from . import batch, demo, info, report, review, synth, tasks, validate

_COMMANDS = (info, validate, synth, demo, tasks, batch, report, review)

#: The environment variable naming the folder of internal-error logs (module notes).
LOG_DIR_VARIABLE = "LESION_SUITE_LOG_DIR"

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
        return _run(args, argv)
    finally:
        if argv is None:
            # Run as the program (the arguments are the process's): it ends next. Frozen
            # objects are skipped by the interpreter's last garbage collection, which would
            # otherwise walk everything torch and MONAI made (~0.7 s at every exit).
            gc.freeze()


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
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
    except Exception as exc:  # a bug of ours: one line for the user, the details in a log
        return _report_internal_error(exc, sys.argv[1:] if argv is None else argv)


def _write_error(exc: LesionSuiteError, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(error_to_json(exc), encoding="utf-8")
    except OSError as failure:
        # The one-line message is already out; a parent without the file reports the log.
        print(f"lesion-suite: could not write {path}: {failure}", file=sys.stderr)


def _report_internal_error(exc: Exception, argv: list[str]) -> int:
    """Print the one line of an unexpected exception and keep its traceback in a log file
    (on stderr when no log can be written); return the exit code."""
    details = traceback.format_exc()
    log = _write_log(_log_text(argv, details))
    where = f"details in {log}" if log is not None else "details below"
    print(f"lesion-suite: {internal_error_line(exc)} ({where}); please report it",
          file=sys.stderr)
    if log is None:
        print(details, file=sys.stderr, end="")
    return EXIT_INTERNAL_ERROR


def _log_text(argv: list[str], details: str) -> str:
    """What a report needs: the command, the versions, the traceback."""
    return (f"command: lesion-suite {' '.join(map(str, argv))}\n"
            f"lesion-suite {__version__}, Python {platform.python_version()}, "
            f"{platform.platform()}\n"
            f"time: {datetime.now().isoformat(timespec='seconds')}\n\n{details}")


def log_folders() -> list[Path]:
    """Where internal-error logs go, in the order tried: ``LESION_SUITE_LOG_DIR`` (when
    set) or the user's cache folder, then the system temporary folder."""
    folders = []
    given = os.environ.get(LOG_DIR_VARIABLE)
    if given:
        folders.append(Path(given).expanduser())
    elif os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        folders.append(Path(os.environ["LOCALAPPDATA"]) / "lesion-suite" / "logs")
    else:
        try:
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            folders.append(cache / "lesion-suite" / "logs")
        except RuntimeError:  # no home folder (a service account): the temporary one
            pass
    return folders + [Path(tempfile.gettempdir()) / "lesion-suite-logs"]


def _write_log(text: str) -> Path | None:
    """Write ``text`` to a new log file in the first folder of :func:`log_folders` that
    takes it; ``None`` when none does. An existing log is never overwritten."""
    stem = f"lesion-suite-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for folder in log_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):  # the same process failing twice in a second (tests)
                path = folder / (f"{stem}.log" if n == 0 else f"{stem}-{n}.log")
                try:
                    with path.open("x", encoding="utf-8") as handle:
                        handle.write(text)
                    return path
                except FileExistsError:
                    continue
        except OSError:
            continue
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

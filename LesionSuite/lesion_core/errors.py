"""The one error family that every entry point raises for a user's mistake.

A ``LesionSuiteError`` message always has three parts: the file (or object) concerned,
what is wrong with it, and what the user should do. The CLI prints it as one line and
exits with code 2 (:data:`EXIT_USER_ERROR`); the Slicer widgets show it in a dialog.
Anything else that escapes is a bug of ours, not of the input.

A parent process that runs the CLI gets the error back whole: ``--error-json FILE`` makes
the CLI write :func:`error_to_json`, and :func:`error_from_json` rebuilds the same class
(or its nearest base defined here) with the same parts.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Exit codes of the ``lesion-suite`` command (0: done): an internal error (a bug of ours,
#: its traceback in a log file), a user error, and Cancel (Ctrl-C).
EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


class LesionSuiteError(Exception):
    """Base class: ``<source>: <problem>. <fix>``, always one line (line breaks inside a
    library's message become spaces)."""

    def __init__(self, problem: str, fix: str, source: str | Path | None = None):
        self.problem = _one_line(problem).rstrip(". ")
        fix = _one_line(fix)
        self.fix = fix[:1].upper() + fix[1:]
        self.source = str(source) if source is not None else None
        prefix = f"{self.source}: " if self.source else ""
        super().__init__(f"{prefix}{self.problem}. {self.fix}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


#: An internal error's message is cut to this many characters on its one line.
INTERNAL_MESSAGE_CHARS = 300


def internal_error_line(exc: BaseException) -> str:
    """``internal error: <type>: <message>`` on one line, cut to a readable length: what
    the command line prints (and a batch records) for a bug of ours."""
    message = _one_line(exc)
    if len(message) > INTERNAL_MESSAGE_CHARS:
        message = message[:INTERNAL_MESSAGE_CHARS - 3] + "..."
    return f"internal error: {type(exc).__name__}: {message}"


class UnreadableFileError(LesionSuiteError):
    """The file does not exist, is not an image, or is truncated/corrupt."""


class InvalidImageError(LesionSuiteError):
    """The image was read but cannot be used: wrong dimensionality, NaN, constant, spacing..."""


class ModalityError(InvalidImageError):
    """The image's intensities do not match the modality the task expects (CT in HU vs MR)."""


class ModelBundleError(LesionSuiteError):
    """A model folder is incomplete, altered, or names a network we do not allow."""


class FeedbackStoreError(LesionSuiteError):
    """A feedback store cannot be written or read."""


class CohortError(LesionSuiteError):
    """A folder or table that is not a usable cohort (for training or evaluation)."""


class CommandError(LesionSuiteError):
    """Options of a command that do not fit together, or a data source it cannot use."""


class OperationCancelled(Exception):
    """Raised inside long work when the user pressed Cancel; not a user error."""


def error_to_json(exc: LesionSuiteError) -> str:
    """The error's class and parts as JSON: ``{"type", "problem", "fix", "source"}``.

    ``type`` is the nearest class of this module in the error's ancestry (a command's own
    error class is known to no other process)."""
    known = next(c for c in type(exc).__mro__ if c.__module__ == __name__)
    return json.dumps({"type": known.__name__, "problem": exc.problem, "fix": exc.fix,
                       "source": exc.source})


def error_from_json(text: str) -> LesionSuiteError:
    """The error :func:`error_to_json` described, as its class (``LesionSuiteError`` when
    the name is unknown here)."""
    body = json.loads(text)
    cls = globals().get(str(body.get("type")))
    if not (isinstance(cls, type) and issubclass(cls, LesionSuiteError)):
        cls = LesionSuiteError
    return cls(body.get("problem") or "the command failed", body.get("fix") or "see the log",
               source=body.get("source"))

"""Progress reporting and cancellation for long work (training, cohort inference).

Every long operation takes one ``progress: Progress | None`` argument. It calls
``progress.update(fraction, message)``; the CLI shows a bar, the Slicer widget a progress
bar, and a child process prints machine-readable lines (:func:`format_progress_line`) that
the Slicer side parses back (:func:`parse_progress_line`). ``update`` raises
:class:`~lesion_core.errors.OperationCancelled` once :meth:`Progress.cancel` was called,
so cancelling needs no cooperation beyond calling ``update`` regularly.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from .errors import OperationCancelled

#: Prefix of the progress lines a child process writes to stdout.
PROGRESS_LINE_PREFIX = "lesion-suite:progress"


class ProgressCallback(Protocol):
    def __call__(self, fraction: float, message: str) -> None:
        """``fraction`` in [0, 1] of the whole operation; ``message`` says what runs now."""


class Progress:
    """A callback plus a cancel flag, shareable between threads.

    ``sub(start, end)`` gives a child reporter for one stage whose 0..1 maps onto
    ``start..end`` of this one, so nested stages need not know the whole plan.
    """

    def __init__(self, callback: ProgressCallback | None = None,
                 cancel_event: threading.Event | None = None,
                 _span: tuple[float, float] = (0.0, 1.0)):
        self._callback = callback
        self._cancel = cancel_event or threading.Event()
        self._span = _span

    def update(self, fraction: float, message: str = "") -> None:
        if self._cancel.is_set():
            raise OperationCancelled(message or "cancelled")
        lo, hi = self._span
        if self._callback is not None:
            self._callback(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)

    def sub(self, start: float, end: float) -> "Progress":
        lo, hi = self._span
        return Progress(self._callback, self._cancel,
                        (lo + (hi - lo) * start, lo + (hi - lo) * end))

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


def ensure_progress(progress: Progress | None) -> Progress:
    """The reporter to use inside a function whose caller may have passed ``None``."""
    return progress if progress is not None else Progress()


def format_progress_line(fraction: float, message: str) -> str:
    """One line for a child process's stdout: ``lesion-suite:progress 0.420 message``."""
    return f"{PROGRESS_LINE_PREFIX} {fraction:.3f} {' '.join(message.split())}"


def parse_progress_line(line: str) -> tuple[float, str] | None:
    """Inverse of :func:`format_progress_line`; ``None`` for any other line."""
    if not line.startswith(PROGRESS_LINE_PREFIX + " "):
        return None
    rest = line[len(PROGRESS_LINE_PREFIX) + 1:].rstrip("\n")
    number, _, message = rest.partition(" ")
    try:
        return float(number), message
    except ValueError:
        return None


def line_printer(write: Callable[[str], object]) -> ProgressCallback:
    """A callback that writes :func:`format_progress_line` lines through ``write``."""
    def callback(fraction: float, message: str) -> None:
        write(format_progress_line(fraction, message) + "\n")
    return callback

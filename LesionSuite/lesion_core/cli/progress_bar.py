"""The CLI's view of :class:`~lesion_core.progress.Progress`: a tqdm bar or progress lines."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..progress import Progress, line_printer


class ProgressBar:
    """Context manager giving a :class:`Progress` shown as a bar (or lines for a parent).

    The bar appears with the first update, so a command that fails on its input before
    any work starts prints its one-line error alone.
    """

    def __init__(self, args: argparse.Namespace, description: str):
        self._lines = bool(getattr(args, "progress_lines", False))
        self._description = description
        self._bar: tqdm | None = None

    def __enter__(self) -> Progress:
        if self._lines:
            return Progress(line_printer(lambda text: (sys.stdout.write(text), sys.stdout.flush())))
        return Progress(self._show)

    def _show(self, fraction: float, message: str) -> None:
        if self._bar is None:
            self._bar = tqdm(total=1000, desc=self._description, unit="", leave=False,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
                             file=sys.stderr)
        self._bar.n = int(round(fraction * 1000))
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()

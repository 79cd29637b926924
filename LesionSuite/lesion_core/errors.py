"""The one error family that every entry point raises for a user's mistake.

A ``LesionSuiteError`` message always has three parts: the file (or object) concerned,
what is wrong with it, and what the user should do. The CLI prints it as one line and
exits with code 2; the Slicer widgets show it in a dialog. Anything else that escapes is
a bug of ours, not of the input.
"""

from __future__ import annotations

from pathlib import Path


class LesionSuiteError(Exception):
    """Base class: ``<source>: <problem>. <fix>``."""

    def __init__(self, problem: str, fix: str, source: str | Path | None = None):
        self.problem = problem.rstrip(". ")
        fix = fix.strip()
        self.fix = fix[:1].upper() + fix[1:]
        self.source = str(source) if source is not None else None
        prefix = f"{self.source}: " if self.source else ""
        super().__init__(f"{prefix}{self.problem}. {self.fix}")


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


class OperationCancelled(Exception):
    """Raised inside long work when the user pressed Cancel; not a user error."""

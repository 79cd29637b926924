"""The reader's ARWMC ratings of one case: written at once, shown in the table, undoable.

:class:`RatingReview` binds a feedback-store case (:class:`lesion_core.feedback.CaseFeedback`)
to the ARWMC table node of a result. Every change is one record written (and fsync-ed)
through :func:`lesion_core.wmh.reader_ratings.record_rating` before the table shows it, with
the reader and the model id/version that produced the prediction being reviewed. Nothing
is kept only in memory, so a crash loses at most the rating being written. The ratings
shown are always the store's standing ones (:func:`~lesion_core.wmh.reader_ratings.
standing_ratings`): reopening a case, or running the model again on it, shows the reader's
ratings again and never erases them.

Case id: ``<volume name>-<12 hex digits of the image's digest>``, found by
:func:`LesionSuiteLib.review_cases.open_volume_case` (see
:mod:`lesion_core.feedback_cases` for why a digest; ``case_id_for_volume``,
``find_case_id`` and ``case_image`` are re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesion_core.errors import FeedbackStoreError
from lesion_core.feedback import CaseFeedback
from lesion_core.feedback_cases import case_id_for_volume, find_case_id
from lesion_core.volume import Volume
from LesionSuiteLib.review_cases import (case_image, open_volume_case, read_noting_damage,
                                         store_case_image)

from .outputs import READER_COLUMN, TOTAL, rating_targets


@dataclass(frozen=True)
class ReviewRow:
    """One row as the widget shows it. ``predicted``: expected rating (None in the T1
    mode); ``level``: most probable rating; ``reader``: the standing reader rating or
    None; ``high``: the largest rating allowed (3 per region-side, 30 for the total)."""

    target: str
    region: str
    side: str
    predicted: float | None
    level: int | None
    lesion_ml: float | None
    reader: int | None
    high: int


class RatingReview:
    """The reader's ratings of one case, bound to a result's ARWMC table node.

    Args:
        case: the case in the feedback store.
        table_node: the ARWMC table of a result (rows in :func:`rating_targets` order),
            or None (ratings only).
        image: the case's image (a Volume, or its file), stored with the first rating
            so that training can open it later; None to store no image.
        modality: ``"FLAIR"`` or ``"T1"``, recorded with the image.
        reader: the reader's name (default: the operating-system login).
        model_id, model_version: the model whose prediction is being reviewed.
    """

    def __init__(self, case: CaseFeedback, table_node=None, image: Volume | Path | None = None,
                 modality: str = "FLAIR", reader: str | None = None,
                 model_id: str | None = None, model_version: str | None = None):
        self.case = case
        self.table_node = table_node
        self.image = image
        self.modality = modality
        self.reader = reader or None
        self.model_id = model_id
        self.model_version = model_version
        self.targets = rating_targets()
        #: Lines of the records file that could not be read (e.g. cut off by a crash).
        self.skipped_lines: list[str] = []
        self._ratings: dict[str, int] = {}
        self._undo_stack: list[str] = []
        self.reload()

    @classmethod
    def for_result(cls, result, feedback_root: str | Path, reader: str | None = None
                   ) -> "RatingReview":
        """The review of a :class:`.logic.WMHResultNodes` (case id from its input)."""
        opened = open_volume_case(feedback_root, result.input)
        return cls(opened.case, result.table, image=opened.stored_image,
                   modality=result.modality or "FLAIR", reader=reader,
                   model_id=result.model_id, model_version=result.model_version)

    # ------------------------------------------------------------------ state
    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def ratings(self) -> dict[str, int]:
        """The standing ratings: target -> 0-3 (region-side) or 0-30 (``total``)."""
        return dict(self._ratings)

    def rating(self, target: str) -> int | None:
        return self._ratings.get(target)

    @property
    def can_undo(self) -> bool:
        """Whether this review wrote a change that :meth:`undo` can take back."""
        return bool(self._undo_stack)

    def reload(self) -> dict[str, int]:
        """Read the standing ratings from the store and show them in the table."""
        from lesion_core.wmh.reader_ratings import standing_ratings

        self._ratings, self.skipped_lines = read_noting_damage(
            lambda: standing_ratings(self.case))
        for target in self.targets:
            self._show(target)
        return self.ratings

    # ---------------------------------------------------------------- changes
    def set_rating(self, target: str, value: int | None):
        """Record ``value`` (None clears) for ``target`` at once; returns the record, or
        None when ``value`` is already the standing rating (nothing is written).

        Raises ``FeedbackStoreError`` for an unknown target or a value off the scale, or
        when the store cannot be written (then nothing changes on screen either)."""
        from lesion_core.wmh.reader_ratings import record_rating

        if target not in self.targets:
            raise FeedbackStoreError(f"{target!r} is not an ARWMC region-side",
                                     f"Use one of {', '.join(self.targets)}",
                                     source=self.case.records_path)
        value = self._checked(target, value)
        if value == self._ratings.get(target):
            return None
        self._store_image()
        record = record_rating(self.case, target, value, reader=self.reader,
                               model_id=self.model_id, model_version=self.model_version)
        self._undo_stack.append(record.record_id)
        self.reload()
        return record

    def set_rating_text(self, target: str, text: str):
        """:meth:`set_rating` from what the reader typed ("" clears, else a whole number)."""
        text = (text or "").strip()
        return self.set_rating(target, text or None)

    def _checked(self, target: str, value) -> int | None:
        """``value`` checked on the target's scale before anything is written."""
        from lesion_core.wmh.reader_ratings import check_rating

        return check_rating(target, value, source=self.case.records_path)

    def clear(self, target: str):
        """Remove the reader's rating of ``target`` (recorded as a clearing record)."""
        return self.set_rating(target, None)

    def undo(self) -> bool:
        """Take back the last change made through this review; False when there is none."""
        if not self._undo_stack:
            return False
        self.case.undo(self._undo_stack.pop(), reader=self.reader)
        self.reload()
        return True

    # ------------------------------------------------------------------ table
    def rows(self) -> list[ReviewRow]:
        """What the widget shows: predicted values from the table, reader ratings."""
        from LesionSuiteLib.mrml_bridge import table_to_rows

        table = table_to_rows(self.table_node) if self.table_node is not None else []
        rows = []
        for index, target in enumerate(self.targets):
            row: dict[str, Any] = table[index] if index < len(table) else {}
            region, _, side = target.rpartition("_") if target != TOTAL else (TOTAL, "", "")
            rows.append(ReviewRow(target, region, side, _number(row.get("rating")),
                                  _whole(row.get("level")), _number(row.get("lesion_ml")),
                                  self._ratings.get(target), 30 if target == TOTAL else 3))
        return rows

    def _show(self, target: str) -> None:
        """Put the standing rating of ``target`` in the table's reader column."""
        if self.table_node is None:
            return
        table = self.table_node.GetTable()
        column = table.GetColumnByName(READER_COLUMN)
        row = self.targets.index(target)
        if column is None or row >= table.GetNumberOfRows():
            return
        value = self._ratings.get(target)
        column.SetValue(row, "" if value is None else str(value))
        column.Modified()
        table.Modified()
        self.table_node.Modified()

    def _store_image(self) -> None:
        """Name the case's image in the store before its first rating (training needs it)."""
        if self.image is None:
            return
        store_case_image(self.case, self.image, self.modality)
        self.image = None  # stored once: later ratings need not check again


def _number(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _whole(value) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


__all__ = ["RatingReview", "ReviewRow", "case_id_for_volume", "case_image", "find_case_id"]

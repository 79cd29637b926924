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
``find_case_id`` and ``case_image`` are re-exported here). The case, the reader, the
undo stack and the case image are :class:`LesionSuiteLib.case_review.CaseReview`'s.
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
from LesionSuiteLib.case_review import CaseReview
from LesionSuiteLib.review_cases import case_image

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


class RatingReview(CaseReview):
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

    default_modality = "FLAIR"

    def __init__(self, case: CaseFeedback, table_node=None, image: Volume | Path | None = None,
                 modality: str = "FLAIR", reader: str | None = None,
                 model_id: str | None = None, model_version: str | None = None):
        super().__init__(case, image, modality, reader, model_id, model_version)
        self.table_node = table_node
        self.targets = rating_targets()
        self._ratings: dict[str, int] = {}
        self.reload()

    @classmethod
    def result_arguments(cls, result, opened) -> dict[str, Any]:
        """From a :class:`.logic.WMHResultNodes`: its table and modality."""
        return {"table_node": result.table, "modality": result.modality}

    # ------------------------------------------------------------------ state
    @property
    def ratings(self) -> dict[str, int]:
        """The standing ratings: target -> 0-3 (region-side) or 0-30 (``total``)."""
        return dict(self._ratings)

    def rating(self, target: str) -> int | None:
        return self._ratings.get(target)

    def reload(self) -> dict[str, int]:
        """Read the standing ratings from the store and show them in the table."""
        from lesion_core.wmh.reader_ratings import standing_ratings

        self._ratings = self.read_standing(lambda: standing_ratings(self.case))
        self.show_column(self.table_node, READER_COLUMN,
                         [_text(self._ratings.get(target)) for target in self.targets])
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
        self.store_image()
        return self.wrote(record_rating(self.case, target, value, reader=self.reader,
                                        model_id=self.model_id,
                                        model_version=self.model_version))

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


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


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

"""A reader's ARWMC ratings in the feedback store, and the training rows they become.

Each rating is one record written at once: kind :data:`RATING_KIND`, target a region-side
of :data:`~lesion_core.atlas.arwmc.REGIONS` (0-3) or ``"total"`` (0-30), payload
``{"rating": value}`` (``None`` clears an earlier rating), with reader, time and model.
The case's image is named in ``case.json`` by
:func:`lesion_core.feedback_cases.ensure_case_image` (re-exported here), so a later
training run can always open it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FeedbackStoreError
from ..feedback import CaseFeedback, FeedbackStore, Record
from ..feedback_cases import CASE_IMAGE_FILE, ensure_case_image
from ..atlas.arwmc import REGIONS

if TYPE_CHECKING:  # .data imports torch; the reader's ratings are read without it (reports)
    from .data import RatingRow

RATING_KIND = "wmh.rating"
TOTAL = "total"


def check_rating(target: str, rating, source=None) -> int | None:
    """``rating`` as a whole number on ``target``'s scale (0-3 per region-side, 0-30 for
    the total; ``None`` or ``""`` = cleared). Raises :class:`FeedbackStoreError` naming
    ``source`` otherwise, so a refused entry is caught before anything is written."""
    if target not in REGIONS and target != TOTAL:
        raise FeedbackStoreError(f"{target!r} is not an ARWMC region-side",
                                 f"use one of {', '.join(REGIONS)} or 'total'", source=source)
    if rating is None or (isinstance(rating, str) and not rating.strip()):
        return None
    high = 30 if target == TOTAL else 3
    try:
        number = float(rating)
    except (TypeError, ValueError):
        number = float("nan")
    if not (0 <= number <= high and number == int(number)):
        raise FeedbackStoreError(f"rating {rating!r} for {target} is not a whole number "
                                 f"0-{high}", "enter a rating on the ARWMC scale, or clear it",
                                 source=source)
    return int(number)


def record_rating(case: CaseFeedback, target: str, rating: int | None,
                  reader: str | None = None, model_id: str | None = None,
                  model_version: str | None = None) -> Record:
    """Store one rating (or its removal, ``None``) at once; returns the record."""
    value = check_rating(target, rating, case.records_path)
    return case.record(RATING_KIND, target, {"rating": value}, reader=reader,
                       model_id=model_id, model_version=model_version)


def standing_ratings(case: CaseFeedback) -> dict[str, int]:
    """The ratings that stand (latest, not undone, not cleared): target -> rating."""
    records = case.state().of_kind(RATING_KIND)
    return {t: int(r.payload["rating"]) for t, r in records.items()
            if r.payload.get("rating") is not None}


def rows_from_feedback(root: str | Path, modality: str = "FLAIR") -> list[RatingRow]:
    """Training rows from every case of a store that has standing ratings and an image
    of ``modality``; cases without ratings are left out."""
    from .data import parse_rows  # torch: only training needs the rows

    store = FeedbackStore(root)
    records = []
    for case_id in store.cases():
        case = store.case(case_id)
        ratings = standing_ratings(case)
        info = case.info()
        if not ratings or not info.get("image") or info.get("modality", modality) != modality:
            continue
        records.append({"subject": case_id, "image": info["image"],
                        "total": ratings.get(TOTAL), **{r: ratings.get(r) for r in REGIONS}})
    return parse_rows(records, source=Path(root))


__all__ = ["CASE_IMAGE_FILE", "RATING_KIND", "TOTAL", "check_rating", "ensure_case_image",
           "record_rating", "rows_from_feedback", "standing_ratings"]

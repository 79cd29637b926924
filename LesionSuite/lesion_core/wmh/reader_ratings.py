"""A reader's ARWMC ratings in the feedback store, and the training rows they become.

Each rating is one record written at once: kind :data:`RATING_KIND`, target a region-side
of :data:`~lesion_core.synth.arwmc.REGIONS` (0-3) or ``"total"`` (0-30), payload
``{"rating": value}`` (``None`` clears an earlier rating), with reader, time and model.
The case's image is named in ``case.json`` (``{"image": path, "modality": ...}``); an
image that has no file (e.g. made in the Slicer scene) is saved into the case folder
first, so a later training run can always open it.
"""

from __future__ import annotations

from pathlib import Path

from .. import io as lesion_io
from ..atomic import atomic_write
from ..errors import FeedbackStoreError
from ..feedback import CaseFeedback, FeedbackStore, Record
from ..synth.arwmc import REGIONS
from ..volume import Volume
from .data import RatingRow, parse_rows

RATING_KIND = "wmh.rating"
TOTAL = "total"
CASE_IMAGE_FILE = "image.nii.gz"


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


def ensure_case_image(case: CaseFeedback, image: Volume | str | Path, modality: str) -> Path:
    """Name the case's image in ``case.json``: a file path as is, a Volume without a file
    saved as ``image.nii.gz`` in the case folder (atomically). Returns the image path."""
    info = case.info()
    if info.get("image") and Path(info["image"]).exists():
        return Path(info["image"])
    if isinstance(image, Volume):
        source = Path(image.source) if image.source else None
        if source is None or not source.is_file():
            case.folder.mkdir(parents=True, exist_ok=True)
            source = case.folder / CASE_IMAGE_FILE
            atomic_write(source, lambda tmp: lesion_io.write_volume(image, tmp))
        path = source
    else:
        path = Path(image)
    case.write_info({**info, "image": str(path.resolve()), "modality": modality})
    return path


def rows_from_feedback(root: str | Path, modality: str = "FLAIR") -> list[RatingRow]:
    """Training rows from every case of a store that has standing ratings and an image
    of ``modality``; cases without ratings are left out."""
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

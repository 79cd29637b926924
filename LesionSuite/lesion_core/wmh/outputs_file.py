"""The files of one ``lesion-suite wmh predict`` run, and checked readers of its tables
(no torch: the Slicer GUI process reads them too).

Every name starts with the stem (``--stem``, default ``wmh``); images lie on the input
image's own grid:

- ``<stem>_labels.nii.gz``: uint8 WMH mask (1 = WMH);
- ``<stem>_activation.nii.gz``: float32 in [0, 1] (DualTasker activation or T1 probability);
- ``<stem>_arwmc_regions.nii.gz``: uint8 ARWMC region-side atlas (value = index + 1 in
  ``lesion_core.atlas.arwmc.REGIONS``);
- ``<stem>_ratings.csv``: one row per region-side (:data:`RATING_COLUMNS`; ratings empty in
  the T1 mode);
- ``<stem>_summary.json``: :meth:`lesion_core.wmh.predict.WMHPrediction.summary`
  (:data:`SUMMARY_KEYS`).
"""

from __future__ import annotations

from pathlib import Path

from ..tasks.outputs import FileCheck, OutputFiles, is_number

FILES = OutputFiles({"labels": "{stem}_labels.nii.gz",
                     "activation": "{stem}_activation.nii.gz",
                     "regions": "{stem}_arwmc_regions.nii.gz",
                     "ratings": "{stem}_ratings.csv", "summary": "{stem}_summary.json"},
                    default_stem="wmh")
RATING_COLUMNS = ("region", "side", "rating", "level", "lesion_ml")
SUMMARY_KEYS = ("model", "model_version", "modality", "arwmc_total", "ratings", "levels",
                "lesion_ml", "brain_ml", "region_ml", "zone_ml")
_FIX = "Run lesion-suite wmh predict again to write the output folder anew"


def read_summary(path: str | Path) -> dict:
    """``<stem>_summary.json`` parsed and checked (keys :data:`SUMMARY_KEYS`, volumes in
    mL >= 0, an ARWMC total 0-30 or None); a damaged file is one
    :class:`~lesion_core.errors.UnreadableFileError`."""
    return FileCheck("the WMH summary file", _FIX).checked_json(path, SUMMARY_KEYS,
                                                                 _summary_problem)


def _summary_problem(data: dict) -> str | None:
    if not all(is_number(data[k]) and data[k] >= 0 for k in ("lesion_ml", "brain_ml")):
        return "has a lesion_ml or brain_ml that is not a number >= 0 (mL)"
    total = data["arwmc_total"]
    if total is not None and not (is_number(total) and 0 <= total <= 30):
        return "has an arwmc_total that is not 0-30"
    for key in ("region_ml", "zone_ml"):
        if not isinstance(data[key], dict) or not all(is_number(v) for v in data[key].values()):
            return f"has a {key} that is not {{name: mL}}"
    return None


def read_ratings(path: str | Path) -> list[dict]:
    """``<stem>_ratings.csv`` as one dict per ARWMC region-side, in file order: ``region``,
    ``side`` (text), ``rating`` (float 0-3) and ``level`` (int 0-3), both None in the T1
    mode, and ``lesion_ml`` (float >= 0); a damaged file is one clear error."""
    check = FileCheck("the WMH ratings table", _FIX)
    rows = []
    for line, record in check.csv_records(path, RATING_COLUMNS):
        try:
            row = {"region": record["region"], "side": record["side"],
                   "rating": float(record["rating"]) if record["rating"] else None,
                   "level": int(record["level"]) if record["level"] else None,
                   "lesion_ml": float(record["lesion_ml"])}
        except (TypeError, ValueError):
            raise check.bad_line(line, "has a value that is not a number", path) from None
        ratings = [v for v in (row["rating"], row["level"]) if v is not None]
        if not all(0 <= v <= 3 for v in ratings) or not row["lesion_ml"] >= 0:
            raise check.bad_line(line, "has a rating outside 0-3 or a negative volume", path)
        rows.append(row)
    return rows

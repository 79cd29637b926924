"""The files of one ``lesion-suite ich predict`` run, and checked readers of its tables
(no torch, no numpy: the Slicer GUI process reads them too).

- ``ich_labels.nii.gz``: uint8 on the CT's own grid; 0 background, each connected
  component of the final mask carries its subtype's value (1-5, ``lesion_core.labels``
  ``ICH_SUBTYPES``; a component whose subtype is unknown has value 1 and is listed as
  ``"unknown"`` in the summary's ``components``);
- ``ich_cam.nii.gz``: float32 in [0, 1] on the CT's own grid (any-ICH activation map);
- ``ich_slices.csv``: one row per CT slice along its axial array axis (:data:`SLICE_COLUMNS`);
- ``ich_summary.json``: scan-level result (:data:`SUMMARY_KEYS`, plus ``components`` and
  ``seconds``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..errors import UnreadableFileError

LABELS_FILE = "ich_labels.nii.gz"
CAM_FILE = "ich_cam.nii.gz"
SLICES_FILE = "ich_slices.csv"
SUMMARY_FILE = "ich_summary.json"
#: Subtype keys in label-value order (1-5); kept here as text so no torch is imported.
SUBTYPE_COLUMNS = ("intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural")
SLICE_COLUMNS = ("slice", "probability", "present") + SUBTYPE_COLUMNS + ("area_mm2",)
SUMMARY_KEYS = ("model", "image", "slice_axis", "scan_probability", "present", "subtypes",
                "volume_ml", "volume_ml_by_subtype", "thresholds", "combination")
_FIX = "Run lesion-suite ich predict again to write the output folder anew"


def _load_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UnreadableFileError(f"the {what} file is missing", _FIX, source=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"the {what} file cannot be read ({exc})", _FIX,
                                  source=path) from exc


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _summary_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "is not a JSON object"
    missing = [k for k in SUMMARY_KEYS if k not in data]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(data["model"], dict):
        return "has a model entry that is not an object"
    if not isinstance(data["slice_axis"], int) or data["slice_axis"] not in (0, 1, 2):
        return "has a slice_axis that is not 0, 1 or 2"
    if not _number(data["scan_probability"]) or not 0 <= data["scan_probability"] <= 1:
        return "has a scan_probability outside [0, 1]"
    if not _number(data["volume_ml"]) or data["volume_ml"] < 0:
        return "has a volume_ml that is not a number >= 0"
    by = data["volume_ml_by_subtype"]
    if not isinstance(by, dict) or not all(_number(v) for v in by.values()):
        return "has a volume_ml_by_subtype that is not {subtype: mL}"
    if not isinstance(data["subtypes"], list) or any(s not in SUBTYPE_COLUMNS
                                                     for s in data["subtypes"]):
        return "has subtypes that are not a list of subtype names"
    if not isinstance(data["present"], bool):
        return "has a present entry that is not true/false"
    return None


def read_summary(path: str | Path) -> dict:
    """``ich_summary.json`` parsed and checked (keys :data:`SUMMARY_KEYS`, probabilities in
    [0, 1], volumes in mL >= 0); a damaged file raises one :class:`UnreadableFileError`."""
    path = Path(path)
    try:
        data = json.loads(_load_text(path, "ICH summary"))
    except ValueError as exc:
        raise UnreadableFileError(f"the ICH summary file is not valid JSON ({exc})", _FIX,
                                  source=path) from exc
    problem = _summary_problem(data)
    if problem:
        raise UnreadableFileError(f"the ICH summary file {problem}", _FIX, source=path)
    return data


def read_slices(path: str | Path) -> list[dict]:
    """``ich_slices.csv`` as one dict per slice, in file order: ``slice`` (int, the CT's
    slice index along its axial axis), ``present`` (bool), probabilities (float, 0-1) and
    ``area_mm2`` (float); a damaged file raises one :class:`UnreadableFileError`."""
    path = Path(path)
    text = _load_text(path, "ICH slice table")
    try:
        reader = csv.DictReader(text.splitlines())
        header = tuple(reader.fieldnames or ())
        records = list(reader)
    except csv.Error as exc:
        raise UnreadableFileError(f"the ICH slice table cannot be parsed ({exc})", _FIX,
                                  source=path) from exc
    missing = [c for c in SLICE_COLUMNS if c not in header]
    if missing:
        raise UnreadableFileError(f"the ICH slice table lacks the column(s) {', '.join(missing)}",
                                  _FIX, source=path)
    rows = []
    for line, record in enumerate(records, start=2):
        try:
            row = {"slice": int(record["slice"]), "present": int(record["present"]) == 1}
            for column in ("probability",) + SUBTYPE_COLUMNS + ("area_mm2",):
                row[column] = float(record[column])
        except (TypeError, ValueError):
            raise UnreadableFileError(f"line {line} of the ICH slice table has a value that "
                                      "is not a number", _FIX, source=path) from None
        probabilities = [row["probability"]] + [row[c] for c in SUBTYPE_COLUMNS]
        if not all(0.0 <= p <= 1.0 for p in probabilities) or not row["area_mm2"] >= 0:
            raise UnreadableFileError(f"line {line} of the ICH slice table has a probability "
                                      "outside [0, 1] or a negative area", _FIX, source=path)
        rows.append(row)
    return rows

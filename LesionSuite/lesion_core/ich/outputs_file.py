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

from pathlib import Path

from ..labels import ICH_SUBTYPE_ORDER
from ..tasks.outputs import FileCheck, OutputFiles, is_number

LABELS_FILE = "ich_labels.nii.gz"
CAM_FILE = "ich_cam.nii.gz"
SLICES_FILE = "ich_slices.csv"
SUMMARY_FILE = "ich_summary.json"
FILES = OutputFiles({"labels": LABELS_FILE, "cam": CAM_FILE, "slices": SLICES_FILE,
                     "summary": SUMMARY_FILE})
#: One probability column per subtype key, in label-value order (1-5).
SUBTYPE_COLUMNS = ICH_SUBTYPE_ORDER
SLICE_COLUMNS = ("slice", "probability", "present") + SUBTYPE_COLUMNS + ("area_mm2",)
SUMMARY_KEYS = ("model", "image", "slice_axis", "scan_probability", "present", "subtypes",
                "volume_ml", "volume_ml_by_subtype", "thresholds", "combination")
_FIX = "Run lesion-suite ich predict again to write the output folder anew"


def _summary_problem(data: dict) -> str | None:
    if not isinstance(data["model"], dict):
        return "has a model entry that is not an object"
    if not isinstance(data["slice_axis"], int) or data["slice_axis"] not in (0, 1, 2):
        return "has a slice_axis that is not 0, 1 or 2"
    if not is_number(data["scan_probability"]) or not 0 <= data["scan_probability"] <= 1:
        return "has a scan_probability outside [0, 1]"
    if not is_number(data["volume_ml"]) or data["volume_ml"] < 0:
        return "has a volume_ml that is not a number >= 0"
    by = data["volume_ml_by_subtype"]
    if not isinstance(by, dict) or not all(is_number(v) for v in by.values()):
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
    return FileCheck("the ICH summary file", _FIX).checked_json(path, SUMMARY_KEYS,
                                                                 _summary_problem)


def read_slices(path: str | Path) -> list[dict]:
    """``ich_slices.csv`` as one dict per slice, in file order: ``slice`` (int, the CT's
    slice index along its axial axis), ``present`` (bool), probabilities (float, 0-1) and
    ``area_mm2`` (float); a damaged file raises one :class:`UnreadableFileError`."""
    check = FileCheck("the ICH slice table", _FIX)
    rows = []
    for line, record in check.csv_records(path, SLICE_COLUMNS):
        try:
            row = {"slice": int(record["slice"]), "present": int(record["present"]) == 1}
            for column in ("probability",) + SUBTYPE_COLUMNS + ("area_mm2",):
                row[column] = float(record[column])
        except (TypeError, ValueError):
            raise check.bad_line(line, "has a value that is not a number", path) from None
        probabilities = [row["probability"]] + [row[c] for c in SUBTYPE_COLUMNS]
        if not all(0.0 <= p <= 1.0 for p in probabilities) or not row["area_mm2"] >= 0:
            raise check.bad_line(line, "has a probability outside [0, 1] or a negative area",
                                 path)
        rows.append(row)
    return rows

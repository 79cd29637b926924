"""The files of one ``lesion-suite cmb predict`` run, and the checked reader of its
candidates (no torch: the Slicer GUI process reads them too).

``cmb_candidates.json``: ``{"model": {"name", "version"}, "image", "modality", "count",
"thresholds", "candidates": [...]}`` with, per stage 1 candidate, ``id``, ``centre_ras``
(RAS mm), ``volume_mm3``, ``diameter_mm``, ``stage1_probability``, ``stage2_probability``,
``kept``, ``dropped_by``, ``reason``, ``location`` and ``region`` (see
:mod:`lesion_core.cmb.predict`).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..tasks.outputs import FileCheck, OutputFiles, object_problem

CANDIDATES_FILE = "cmb_candidates.json"
CANDIDATES_CSV = "cmb_candidates.csv"
LABELS_FILE = "cmb_labels.nii.gz"
CANDIDATE_LABELS_FILE = "cmb_candidates_labels.nii.gz"
FILES = OutputFiles({"labels": LABELS_FILE, "candidate_labels": CANDIDATE_LABELS_FILE,
                     "json": CANDIDATES_FILE, "csv": CANDIDATES_CSV})
_REQUIRED = ("id", "centre_ras", "kept")


def read_candidates(path: str | Path) -> dict:
    """``cmb_candidates.json`` parsed and checked (each candidate has an integer ``id``,
    a ``centre_ras`` of three finite numbers in mm and ``kept``)."""
    check = FileCheck("the candidates file",
                      "Run lesion-suite cmb predict again to write the output folder anew")
    data = check.json(path)
    candidates = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(candidates, list):
        raise check.error("the candidates file has no list of candidates", path)
    for index, candidate in enumerate(candidates):
        problem = _candidate_problem(candidate)
        if problem:
            raise check.error(f"candidate {index + 1} {problem}", path)
    return data


def _candidate_problem(candidate) -> str | None:
    problem = object_problem(candidate, _REQUIRED, "an object")
    if problem:
        return problem
    if not isinstance(candidate["id"], int) or isinstance(candidate["id"], bool):
        return "has an id that is not a whole number"
    centre = candidate["centre_ras"]
    if not isinstance(centre, list) or len(centre) != 3 or not all(
            isinstance(c, (int, float)) and math.isfinite(c) for c in centre):
        return "has a centre_ras that is not three finite numbers (mm)"
    return None

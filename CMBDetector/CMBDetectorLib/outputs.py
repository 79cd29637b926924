"""What one ``lesion-suite cmb predict`` run wrote, read back onto the input's grid.

The command writes into its ``--out`` folder (the contract between ``lesion_core.cmb`` and
this module):

- ``cmb_candidates.json``: ``{"model": {"name", "version"}, "image", "modality", "count",
  "thresholds", "brain_ml", "out_of_distribution", "candidates": [...]}``
  (``out_of_distribution``: the findings of a result asked for with ``--force`` on an
  image the head checks refuse, empty otherwise; older files lack it and
  ``brain_ml``), one entry per stage-1 candidate with ``id``, ``centre_ras`` (RAS mm of
  the image as given), ``volume_mm3``, ``diameter_mm``, ``stage1_probability``,
  ``stage2_probability``, ``kept``, ``dropped_by`` (None, ``"stage2"`` or
  ``"cleanup"``), ``reason``, ``location`` (MARS category) and ``region``;
- ``cmb_labels.nii.gz``: int32, value = candidate id on the voxels of each *kept* CMB;
- ``cmb_candidates_labels.nii.gz``: the same for every candidate, kept or dropped.

:class:`CMBOutputs` holds them; the candidates are checked on reading, so a damaged file
gives one clear error naming it rather than a failure deep in the node code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesion_core.cmb.candidates_file import (CANDIDATE_LABELS_FILE, CANDIDATES_FILE,
                                             LABELS_FILE, read_candidates)
from lesion_core.volume import Volume
from LesionSuiteLib.predictions import SummaryFacts, read_on_grid

#: Columns of the candidates table node, one row per control point of the markups node.
TABLE_COLUMNS = ("id", "status", "decision", "stage1_probability", "stage2_probability",
                 "diameter_mm", "volume_mm3", "location", "region")
_PAST = {"accept": "accepted", "reject": "rejected", "add": "added"}


@dataclass
class CMBOutputs(SummaryFacts):
    """The candidates and label maps of one prediction, on the input image's grid.

    Attributes:
        candidates: the ``candidates`` of ``cmb_candidates.json`` (dicts), checked.
        labels: int32 label map of the kept CMBs (value = candidate id).
        candidate_labels: int32 label map of every candidate, or None when absent.
        summary: ``model`` (name), ``model_version``, ``modality``, ``count`` (kept),
            ``thresholds``, ``image`` and ``out_of_distribution`` (the findings of a result
            asked for with ``--force`` on an image the head checks refuse; empty
            otherwise, and for files written before the checks), from the JSON.
    """

    candidates: list[dict[str, Any]]
    labels: Volume
    candidate_labels: Volume | None
    summary: dict[str, Any]

    @classmethod
    def read(cls, folder: str | Path, grid: Volume) -> "CMBOutputs":
        """Read a ``cmb predict`` output folder; the label maps are put on ``grid``."""
        folder = Path(folder)
        data = read_candidates(folder / CANDIDATES_FILE)
        labels = _int_labels(read_on_grid(folder / LABELS_FILE, grid))
        extra = folder / CANDIDATE_LABELS_FILE
        candidate_labels = _int_labels(read_on_grid(extra, grid)) if extra.is_file() else None
        return cls.from_json(data, labels, candidate_labels)

    @classmethod
    def from_json(cls, data: dict, labels: Volume, candidate_labels: Volume | None = None
                  ) -> "CMBOutputs":
        """From the parsed JSON (see :func:`read_candidates`) and the label maps."""
        model = data.get("model") or {}
        summary = {"model": model.get("name", ""), "model_version": model.get("version", ""),
                   "modality": data.get("modality", ""), "count": data.get("count"),
                   "thresholds": data.get("thresholds", {}), "image": data.get("image"),
                   "out_of_distribution": list(data.get("out_of_distribution") or [])}
        return cls(list(data["candidates"]), labels, candidate_labels, summary)

    @property
    def kept_count(self) -> int:
        return sum(1 for c in self.candidates if c.get("kept"))


def _int_labels(volume: Volume) -> Volume:
    return volume.with_array(np.asarray(volume.array).astype(np.int32))


# ------------------------------------------------------------------ presentation


def _probability(value) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def describe(candidate: dict | None, decision: str | None = None) -> str:
    """A point's description: ``"p1=0.93 p2=0.88 lobar/frontal"`` (stage-1 and stage-2
    probabilities, MARS location / region), then the reader's decision if any. A point
    with no candidate in this run says who put it there."""
    if candidate is None:
        if decision in (None, "add"):
            return "added by the reader"
        return f"{_PAST.get(decision, decision)} by the reader (a candidate of an earlier run)"
    text = (f"p1={_probability(candidate.get('stage1_probability'))} "
            f"p2={_probability(candidate.get('stage2_probability'))} "
            f"{candidate.get('location') or 'unknown'}/{candidate.get('region') or 'unknown'}")
    if decision:
        text += f"; {_PAST.get(decision, decision)} by the reader"
    return text


def status(candidate: dict | None) -> str:
    """What the model did: ``kept``, ``dropped: stage 2``, ``dropped: <clean-up reason>``,
    or ``reader`` for a point with no candidate in this run."""
    if candidate is None:
        return "reader"
    if candidate.get("kept"):
        return "kept"
    if candidate.get("dropped_by") == "stage2":
        return "dropped: stage 2"
    return f"dropped: {candidate.get('reason') or candidate.get('dropped_by') or 'unknown'}"


def table_row(label: str, candidate: dict | None, decision: str | None,
              payload: dict | None = None) -> dict[str, Any]:
    """One row of the table (see :data:`TABLE_COLUMNS`); ``payload`` gives the sizes of a
    point with no candidate (an added CMB's recorded diameter)."""
    source = candidate if candidate is not None else (payload or {})

    def number(key):
        value = source.get(key)
        return None if value is None else float(value)

    return {"id": label, "status": status(candidate), "decision": decision or "",
            "stage1_probability": number("stage1_probability"),
            "stage2_probability": number("stage2_probability"),
            "diameter_mm": number("diameter_mm"), "volume_mm3": number("volume_mm3"),
            "location": source.get("location") or "", "region": source.get("region") or ""}

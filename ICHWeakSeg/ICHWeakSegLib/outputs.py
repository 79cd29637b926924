"""What one ``lesion-suite ich predict`` run wrote, read back onto the input CT's grid.

The command writes into its ``--out`` folder (the contract between ``lesion_core.ich`` and
this module):

- ``ich_labels.nii.gz``: uint8 on the CT's own grid, 0 background, 1-5 the subtype of each
  haemorrhage component (:data:`lesion_core.labels.ICH_SUBTYPES` values);
- ``ich_cam.nii.gz``: float32 class activation map in [0, 1] (any haemorrhage), same grid;
- ``ich_slices.csv``: one row per axial slice ``k`` of the CT (0-based along the array
  axis ``slice_axis`` of the summary): ``slice, probability, present``, the five subtype
  probabilities (columns named by the subtype keys) and ``area_mm2`` (mm² of the final
  mask on the slice);
- ``ich_summary.json``: ``{"model": {"name", "version"}, "image", "slice_axis",
  "scan_probability", "present", "subtypes", "volume_ml", "volume_ml_by_subtype",
  "thresholds", "combination", "out_of_distribution"}`` (``out_of_distribution``: the
  findings of a result asked for with ``--force`` on an image the head checks refuse,
  empty otherwise; older files lack it).

:class:`ICHOutputs` holds them. The CSV and JSON are read and checked by
:mod:`lesion_core.ich.outputs_file`, the slices and maps checked against the input CT here,
so a damaged file, or outputs of another CT, give one clear error naming the file rather
than a failure deep in the node code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesion_core.errors import UnreadableFileError
from lesion_core.ich.outputs_file import (CAM_FILE, LABELS_FILE, SLICE_COLUMNS, SLICES_FILE,
                                          SUMMARY_FILE, read_slices, read_summary)
from lesion_core.ich.reader_labels import SliceLabel
from lesion_core.labels import ICH_SUBTYPE_KEYS, ICH_SUBTYPES
from lesion_core.volume import Volume
from LesionSuiteLib.predictions import SummaryFacts, read_on_grid

#: Columns of the slice table node: those of ``ich_slices.csv``, then the reader's label.
READER_COLUMN = "reader"
TABLE_COLUMNS = SLICE_COLUMNS + (READER_COLUMN,)
#: The five subtype labels (values 1-5) of the label maps: segment names, colours and
#: terminology.
ICH_LABELS = tuple(label for label in ICH_SUBTYPES if label.value in ICH_SUBTYPE_KEYS)
#: Node attribute: the stored reader-mask version a segmentation node shows (absent: the
#: model's result).
READER_MASK_ATTRIBUTE = "LesionSuite.ICH.ReaderMaskVersion"


@dataclass
class ICHOutputs(SummaryFacts):
    """The maps and per-slice facts of one prediction, on the input CT's grid.

    Attributes:
        labels: uint8 label map (0 background, 1-5 subtypes), ``[i, j, k]``.
        cam: float32 class activation map in [0, 1], same grid.
        slices: one dict per CSV row (:data:`SLICE_COLUMNS`; ``slice`` int, ``present``
            bool, the rest float), sorted by slice.
        summary: ``model`` (name), ``model_version``, ``modality`` ("CT"), ``slice_axis``
            and the rest of ``ich_summary.json`` as written.
    """

    labels: Volume
    cam: Volume
    slices: list[dict[str, Any]]
    summary: dict[str, Any]

    @classmethod
    def read(cls, folder: str | Path, grid: Volume) -> "ICHOutputs":
        """Read an ``ich predict`` output folder; the maps are put on ``grid``."""
        folder = Path(folder)
        summary = read_summary(folder / SUMMARY_FILE)
        slices = check_slices(read_slices(folder / SLICES_FILE),
                              grid.shape[summary["slice_axis"]], folder / SLICES_FILE)
        labels = read_on_grid(folder / LABELS_FILE, grid)
        cam = read_on_grid(folder / CAM_FILE, grid)
        return cls.from_parts(summary, labels, cam, slices)

    @classmethod
    def from_parts(cls, data: dict, labels: Volume, cam: Volume, slices: list[dict]
                   ) -> "ICHOutputs":
        """From the parsed JSON and CSV and the maps (already on the input grid)."""
        model = data.get("model") or {}
        summary = {**data, "model": model.get("name", ""),
                   "model_version": model.get("version", ""), "modality": "CT"}
        return cls(labels.with_array(np.asarray(labels.array).astype(np.uint8)),
                   cam.with_array(np.asarray(cam.array, dtype=np.float32)), list(slices),
                   summary)

    @property
    def slice_axis(self) -> int:
        """The CT's axial array axis (0, 1 or 2) along which ``slice`` counts."""
        return int(self.summary["slice_axis"])

    def cam_threshold(self, default: float) -> float:
        """The model's CAM threshold (``thresholds.cam`` of the summary, 0..1), else
        ``default``."""
        thresholds = self.summary.get("thresholds")
        value = thresholds.get("cam") if isinstance(thresholds, dict) else None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and 0.0 <= value <= 1.0
        return float(value) if ok else float(default)


# ------------------------------------------------------------------ checks


def check_slices(rows: list[dict[str, Any]], n_slices: int, source=None
                 ) -> list[dict[str, Any]]:
    """The rows of ``ich_slices.csv`` (read by :func:`lesion_core.ich.outputs_file.
    read_slices`) sorted by slice, each slice ``0..n_slices-1`` of the input CT at most
    once; ``UnreadableFileError`` naming ``source`` otherwise (outputs of another CT)."""
    seen: set[int] = set()
    for row in rows:
        k = row["slice"]
        if not 0 <= k < n_slices or k in seen:
            raise UnreadableFileError(
                f"slice {k} is not a slice index 0-{n_slices - 1} of the input, or comes "
                "twice", "Use the outputs computed from this very CT, or run the "
                "prediction on it again", source=source)
        seen.add(k)
    return sorted(rows, key=lambda r: r["slice"])


# ------------------------------------------------------------------ presentation


def table_row(row: dict[str, Any], label: SliceLabel | None) -> dict[str, Any]:
    """One row of the slice table (:data:`TABLE_COLUMNS`): the model's facts and the
    reader's label of the slice (``""`` when none)."""
    return {**{c: row.get(c) for c in SLICE_COLUMNS},
            READER_COLUMN: label.describe() if label is not None else ""}


def slice_point(grid: Volume, slice_axis: int, k: int, mask: np.ndarray | None = None
                ) -> np.ndarray:
    """RAS (mm) point on axial slice ``k`` of ``grid``: the centroid of ``mask``'s voxels
    on that slice when it has any (the haemorrhage), else the centre of the slice."""
    if not 0 <= int(k) < grid.shape[slice_axis]:
        raise IndexError(f"there is no slice {k} (the CT has {grid.shape[slice_axis]})")
    voxel = (np.asarray(grid.shape[:3], float) - 1.0) / 2.0
    if mask is not None:
        on_slice = np.argwhere(np.take(np.asarray(mask) > 0, int(k), axis=slice_axis))
        if len(on_slice):
            others = [a for a in range(3) if a != slice_axis]
            voxel[others] = on_slice.mean(axis=0)
    voxel[slice_axis] = float(k)
    return grid.voxel_to_ras(voxel)

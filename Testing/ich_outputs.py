"""Hand-made ``lesion-suite ich predict`` outputs for the ICH WeakSeg tests.

The files follow the command's contract (see ``ICHWeakSegLib.outputs``) and are built
here, without a network: a small head CT in Hounsfield units (40 x 36 x 12 voxels,
oblique, LPS-stored, 0.9 x 0.9 x 5 mm; the axial axis is array axis 2) with two
haemorrhages (a subdural one on slices 3-5 and an intraparenchymal one on slices 6-7),
the label map, a CAM that peaks on them, the per-slice rows and the summary.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geometry import oblique_lps_affine
from lesion_core import io as lesion_io
from lesion_core.volume import Volume

SHAPE = (40, 36, 12)
SLICE_AXIS = 2
SUBTYPES = ("intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural")


@dataclass(frozen=True)
class Bleed:
    """One haemorrhage: label value (subtype), in-plane centre (i, j) and radius (voxels),
    the axial slices ``k`` it covers (first, last)."""

    value: int
    centre: tuple[int, int]
    radius: int
    slices: tuple[int, int]


BLEEDS = (Bleed(4, (10, 18), 3, (3, 5)), Bleed(1, (26, 20), 4, (6, 7)))


def _disc(bleed: Bleed) -> np.ndarray:
    i, j, k = np.indices(SHAPE)
    inside = (i - bleed.centre[0]) ** 2 + (j - bleed.centre[1]) ** 2 <= bleed.radius ** 2
    return inside & (k >= bleed.slices[0]) & (k <= bleed.slices[1])


def affine() -> np.ndarray:
    return oblique_lps_affine(spacing=(0.9, 0.9, 5.0), degrees=(6.0, -8.0, 10.0))


def ct_volume(seed: int = 0) -> Volume:
    """Air (-1000 HU) around a skull ring (1000 HU) holding brain (35 HU) and the blood
    (70 HU) of :data:`BLEEDS`, with noise (seeded)."""
    rng = np.random.default_rng(seed)
    i, j, _ = np.indices(SHAPE)
    radius = np.hypot((i - 19.5) / 18.0, (j - 17.5) / 16.0)
    array = np.where(radius < 1.0, 1000.0, -1000.0)
    array = np.where(radius < 0.85, 35.0, array)
    for bleed in BLEEDS:
        array[_disc(bleed)] = 70.0
    return Volume((array + rng.normal(0, 3, SHAPE)).astype(np.int16), affine())


def mr_volume(seed: int = 0) -> Volume:
    """An MR-like image on the same grid (0 outside, 300-700 inside): not CT in HU."""
    rng = np.random.default_rng(seed)
    i, j, _ = np.indices(SHAPE)
    inside = np.hypot((i - 19.5) / 18.0, (j - 17.5) / 16.0) < 0.9
    array = np.where(inside, 500.0 + rng.normal(0, 60, SHAPE), 0.0)
    return Volume(array.astype(np.float32), affine())


def label_map() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    for bleed in BLEEDS:
        labels[_disc(bleed)] = bleed.value
    return labels


def cam_map() -> np.ndarray:
    """Gaussian blobs on the bleeds, spreading one slice beyond them; max 1."""
    i, j, k = np.indices(SHAPE).astype(float)
    cam = np.zeros(SHAPE, np.float32)
    for bleed in BLEEDS:
        middle = (bleed.slices[0] + bleed.slices[1]) / 2.0
        blob = np.exp(-((i - bleed.centre[0]) ** 2 + (j - bleed.centre[1]) ** 2)
                      / (2 * (bleed.radius + 1) ** 2) - (k - middle) ** 2 / 2.0)
        cam = np.maximum(cam, blob.astype(np.float32))
    return cam / cam.max()


def slice_rows(image: Volume) -> list[dict]:
    """One row per axial slice: probability high on bleeding slices, the subtype of the
    bleed there, area in mm² of the label map."""
    labels = label_map()
    pixel_mm2 = float(np.prod(image.spacing[:2]))
    rows = []
    for k in range(SHAPE[SLICE_AXIS]):
        values = set(np.unique(labels[:, :, k]).tolist()) - {0}
        probability = 0.9 if values else 0.1
        row = {"slice": k, "probability": probability, "present": int(bool(values))}
        row.update({key: (0.8 if value in values else 0.05)
                    for value, key in enumerate(SUBTYPES, start=1)})
        row["area_mm2"] = round(float((labels[:, :, k] > 0).sum()) * pixel_mm2, 3)
        rows.append(row)
    return rows


def write_outputs(folder: Path, image: Volume, image_path: str = "/data/ct.nii.gz",
                  cam_threshold: float = 0.3) -> dict:
    """Write the four files of a run into ``folder``; returns the summary written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lesion_io.write_volume(image.with_array(label_map()), folder / "ich_labels.nii.gz")
    lesion_io.write_volume(image.with_array(cam_map()), folder / "ich_cam.nii.gz")
    rows = slice_rows(image)
    with (folder / "ich_slices.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    voxel_ml = float(abs(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    by_subtype = {SUBTYPES[b.value - 1]: round(float(_disc(b).sum()) * voxel_ml, 3)
                  for b in BLEEDS}
    summary = {"model": {"name": "ich_weakseg_cam", "version": "1.0"}, "image": image_path,
               "slice_axis": SLICE_AXIS, "scan_probability": 0.95, "present": True,
               "subtypes": sorted(by_subtype), "volume_ml": round(sum(by_subtype.values()), 3),
               "volume_ml_by_subtype": by_subtype,
               "thresholds": {"slice": 0.5, "scan": 0.5, "cam": cam_threshold},
               "combination": "segmenter"}
    (folder / "ich_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary

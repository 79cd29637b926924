"""Hand-made ``lesion-suite wmh predict`` outputs for tests, built without a network or
torch: a small FLAIR-like head (56 x 60 x 48 voxels, LPS-stored, 2 x 2 x 2.5 mm) with two
bright lesions (:data:`BALLS`), and the five files of the command's contract
(``lesion_core.wmh.outputs_file``): mask, activation, region atlas, ratings table, summary.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesion_core import io as lesion_io
from lesion_core.atlas.arwmc import REGIONS
from lesion_core.volume import Volume
from lesion_core.wmh.outputs_file import FILES, RATING_COLUMNS

SHAPE = (56, 60, 48)


@dataclass(frozen=True)
class Ball:
    """One lesion: voxel centre and radius (voxels)."""

    voxel: tuple[int, int, int]
    radius: int


#: i grows to the patient's left (LPS storage): the first lesion is on the right.
BALLS = (Ball((18, 30, 26), 4), Ball((38, 26, 32), 3))


def affine() -> np.ndarray:
    """LPS-stored: i -> left, j -> posterior, k -> superior (mm)."""
    out = np.diag([-2.0, -2.0, 2.5, 1.0])
    out[:3, 3] = (55.0, 60.0, -50.0)
    return out


def _ball(ball: Ball) -> np.ndarray:
    i, j, k = np.indices(SHAPE)
    return ((i - ball.voxel[0]) ** 2 + (j - ball.voxel[1]) ** 2
            + (k - ball.voxel[2]) ** 2) <= ball.radius ** 2


def brain_mask() -> np.ndarray:
    i, j, k = np.indices(SHAPE)
    return (((i - 27.5) / 22) ** 2 + ((j - 29.5) / 25) ** 2 + ((k - 24) / 18) ** 2) < 1


def mask() -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    for ball in BALLS:
        out[_ball(ball)] = 1
    return out


def flair_volume(seed: int = 0) -> Volume:
    """Background 0, head 300 (noise), lesions 700 (seeded)."""
    rng = np.random.default_rng(seed)
    i, j, k = np.indices(SHAPE)
    head = (((i - 27.5) / 25) ** 2 + ((j - 29.5) / 28) ** 2 + ((k - 24) / 21) ** 2) < 1
    array = np.where(head, 300.0 + rng.normal(0, 15, SHAPE), 0.0)
    array[mask() > 0] = 700.0
    return Volume(array.astype(np.float32), affine())


def regions() -> np.ndarray:
    """ARWMC region-side values: frontal left (1) for i >= 28, frontal right (2) below,
    inside the brain."""
    i = np.indices(SHAPE)[0]
    return np.where(brain_mask(), np.where(i >= 28, 1, 2), 0).astype(np.uint8)


def activation() -> np.ndarray:
    """1 on the lesions, falling off over about 3 voxels; 0 outside the brain."""
    distance = np.asarray(_distance_to_lesions(), np.float32)
    return np.where(brain_mask(), np.exp(-(distance / 3.0) ** 2), 0.0).astype(np.float32)


def _distance_to_lesions() -> np.ndarray:
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask() == 0)


def write_outputs(folder: Path, image: Volume, stem: str = "wmh", t1: bool = False,
                  out_of_distribution: tuple[str, ...] = ()) -> dict:
    """Write the five files into ``folder``; returns the summary written."""
    paths = FILES.create(folder, stem)
    labels, atlas = mask(), regions()
    lesion_io.write_volume(image.with_array(labels), paths["labels"])
    lesion_io.write_volume(image.with_array(activation()), paths["activation"])
    lesion_io.write_volume(image.with_array(atlas), paths["regions"])
    voxel_ml = image.voxel_volume_ml
    region_ml = {name: float(((labels > 0) & (atlas == n + 1)).sum() * voxel_ml)
                 for n, name in enumerate(REGIONS)}
    levels = None if t1 else {name: (2 if region_ml[name] > 0.5 else 1 if region_ml[name] > 0
                                     else 0) for name in REGIONS}
    ratings = None if t1 else {name: float(level) + 0.2 for name, level in levels.items()}
    with paths["ratings"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, RATING_COLUMNS)
        writer.writeheader()
        for name in REGIONS:
            region, side = name.rsplit("_", 1)
            writer.writerow({"region": region, "side": side,
                             "rating": "" if t1 else round(ratings[name], 4),
                             "level": "" if t1 else levels[name],
                             "lesion_ml": round(region_ml[name], 4)})
    summary = {"model": "wmh_t1_thickslice" if t1 else "wmh_flair_dualtasker",
               "model_version": "2.0", "modality": "T1" if t1 else "FLAIR",
               "arwmc_total": None if t1 else int(sum(levels.values())),
               "rating_segmentation_agreement": None if t1 else 1.0,
               "ratings": ratings, "levels": levels,
               "lesion_ml": float(labels.sum() * voxel_ml),
               "brain_ml": float(brain_mask().sum() * voxel_ml), "region_ml": region_ml,
               "zone_ml": {"periventricular_frontal_left": region_ml["frontal_left"],
                           "periventricular_frontal_right": region_ml["frontal_right"]},
               "seconds": 0.5, "out_of_distribution": list(out_of_distribution)}
    paths["summary"].write_text(json.dumps(summary, indent=2))
    return summary

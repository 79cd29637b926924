"""Stage 2 inputs of the CMB detector: patches around candidates and their training labels.

Stage 2 classifies each stage 1 candidate from a small cube of image around its centre.
The cube is always sampled on a RAS-aligned grid of fixed voxel size, so the classifier
sees the same orientation and scale whatever the scan's orientation, obliquity or voxel
size. Lengths in mm, positions in RAS mm; images are :class:`~lesion_core.volume.Volume`
(arrays ``[i, j, k]`` with a voxel-to-RAS affine).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..metrics.detection import label_objects, object_centres
from ..volume import Volume
from .candidates import Candidate


def patch_affine(centre_ras: Sequence[float], size: int, spacing_mm: float) -> np.ndarray:
    """Voxel-to-RAS affine of a ``size``^3 RAS-aligned grid whose centre is ``centre_ras``.

    The centre of the cube lies at voxel ``(size - 1) / 2`` along each axis (between two
    voxels for an even ``size``).
    """
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = np.asarray(centre_ras, dtype=np.float64) - spacing_mm * (size - 1) / 2.0
    return affine


def extract_patch(image: Volume, centre_ras: Sequence[float], size: int = 24,
                  spacing_mm: float = 1.0) -> np.ndarray:
    """Cube of ``image`` around ``centre_ras`` (RAS mm).

    Returns a float32 array ``[size, size, size]`` indexed ``[i, j, k]`` along R, A, S,
    with ``spacing_mm`` voxels; trilinear interpolation, 0 outside the image.
    """
    affine = patch_affine(centre_ras, size, spacing_mm)
    patch = image.resample_to_grid(affine, (size, size, size), order=1, fill=0.0)
    return patch.array.astype(np.float32, copy=False)


def label_candidates(candidates: Sequence[Candidate], truth: Volume, mimics: Volume | None = None,
                     max_distance_mm: float = 5.0) -> list[int]:
    """Stage 2 training labels of ``candidates``: 1 = true microbleed, 0 = not.

    A candidate is 1 when its centre lies inside a true CMB component of ``truth``, or
    within ``max_distance_mm`` of a true CMB centroid (the detection matching distance of
    :mod:`lesion_core.metrics.detection`). Otherwise it is 0: background, or a mimic. A
    centre on a mimic voxel (``mimics`` non-zero) that is not inside a true CMB is always 0,
    even near a CMB, so hard negatives are never mislabelled as bleeds.

    This reads the ground truth: it is for building training data only, never for
    inference.
    """
    objects = label_objects(np.asarray(truth.array))
    _, centres_ijk = object_centres(objects)
    true_centres = truth.voxel_to_ras(centres_ijk) if len(centres_ijk) else np.zeros((0, 3))
    labels = []
    for candidate in candidates:
        centre = np.asarray(candidate.centre_ras, dtype=np.float64)
        if _value_at(objects, truth, centre) > 0:
            labels.append(1)
            continue
        if mimics is not None and _value_at(np.asarray(mimics.array), mimics, centre) > 0:
            labels.append(0)
            continue
        near = len(true_centres) and \
            float(np.min(np.linalg.norm(true_centres - centre, axis=1))) <= max_distance_mm
        labels.append(1 if near else 0)
    return labels


def _value_at(array: np.ndarray, grid: Volume, ras: np.ndarray) -> float:
    """Value of the voxel containing ``ras`` (0 outside the grid)."""
    ijk = np.round(grid.ras_to_voxel(ras)).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.asarray(array.shape[:3])):
        return 0.0
    return float(array[tuple(ijk)])

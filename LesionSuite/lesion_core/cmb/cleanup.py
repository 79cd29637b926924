"""Stage 3 of the CMB detector: morphological clean-up of candidate components.

Each candidate is one 26-connected component of the candidate mask. A rule either keeps
it or names why it goes (the first failing rule, in this order):

1. ``too_small`` / ``too_large``: equivalent-sphere diameter (mm) outside
   ``[min_diameter_mm, max_diameter_mm]`` (2-10 mm: the clinical microbleed definition);
2. ``elongated``: the ratio of the largest to the smallest principal axis of the
   component's voxels (mm, second moments) above ``max_elongation``: a vessel cut along
   its length, not a round bleed. Components of a few voxels have no measurable shape
   and are not judged by it;
3. ``outside_brain``: the centre is not inside the brain mask;
4. ``near_air``: the centre lies within ``min_air_distance_mm`` of air (sinuses,
   mastoids: the susceptibility blooming at air-bone interfaces is the classical mimic).

Lengths in mm, arrays ``[i, j, k]`` on the image grid; ``spacing`` the voxel size (mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..baselines.masks import structure

REASONS = ("too_small", "too_large", "elongated", "outside_brain", "near_air")


@dataclass(frozen=True)
class CleanupConfig:
    """Thresholds of the clean-up rules (see the module notes)."""

    min_diameter_mm: float = 2.0
    max_diameter_mm: float = 10.0
    max_elongation: float = 2.5
    min_voxels_for_shape: int = 8
    min_air_distance_mm: float = 4.0


@dataclass(frozen=True)
class ComponentShape:
    """Geometry of one component: voxel count, volume (mm^3), equivalent diameter (mm),
    centre (voxel ``[i, j, k]``) and elongation (largest / smallest principal axis)."""

    voxels: int
    volume_mm3: float
    diameter_mm: float
    centre_ijk: tuple[float, float, float]
    elongation: float


def component_shape(mask: np.ndarray, spacing: Sequence[float]) -> ComponentShape:
    """Geometry of the voxels of ``mask`` (one component)."""
    spacing = np.asarray(spacing, dtype=np.float64)
    ijk = np.argwhere(mask)
    volume = len(ijk) * float(np.prod(spacing))
    diameter = float((6.0 * volume / np.pi) ** (1.0 / 3.0))
    centre = ijk.mean(axis=0)
    points = (ijk - centre) * spacing
    # Second moments of a solid voxel include the voxel's own extent (spacing^2 / 12).
    covariance = points.T @ points / len(ijk) + np.diag(spacing ** 2 / 12.0)
    axes = np.sqrt(np.clip(np.linalg.eigvalsh(covariance), 1e-12, None))
    return ComponentShape(len(ijk), volume, diameter, tuple(float(c) for c in centre),
                          float(axes.max() / axes.min()))


def shape_in_box(component: np.ndarray, box: tuple[slice, ...], spacing: Sequence[float]
                 ) -> ComponentShape:
    """:func:`component_shape` of ``component`` (a bool crop taken at ``box`` of a larger
    grid) with its centre in the larger grid's voxel indices."""
    shape = component_shape(component, spacing)
    offset = np.array([s.start for s in box], dtype=np.float64)
    return ComponentShape(shape.voxels, shape.volume_mm3, shape.diameter_mm,
                          tuple(float(c) for c in np.asarray(shape.centre_ijk) + offset),
                          shape.elongation)


def rejection_reason(shape: ComponentShape, brain: np.ndarray | None,
                     air_distance_mm: np.ndarray | None,
                     config: CleanupConfig = CleanupConfig()) -> str | None:
    """The first rule ``shape`` fails, or ``None`` when the candidate is kept."""
    if shape.diameter_mm < config.min_diameter_mm:
        return "too_small"
    if shape.diameter_mm > config.max_diameter_mm:
        return "too_large"
    if shape.voxels >= config.min_voxels_for_shape and shape.elongation > config.max_elongation:
        return "elongated"
    index = tuple(int(round(c)) for c in shape.centre_ijk)
    if brain is not None and not bool(np.asarray(brain)[index]):
        return "outside_brain"
    if air_distance_mm is not None and air_distance_mm[index] < config.min_air_distance_mm:
        return "near_air"
    return None


def cleanup(candidates: np.ndarray, spacing: Sequence[float], brain: np.ndarray | None = None,
            air: np.ndarray | None = None, config: CleanupConfig = CleanupConfig()
            ) -> tuple[np.ndarray, list[dict]]:
    """Apply the rules to every 26-connected component of ``candidates`` (bool or labels).

    Returns the kept components relabelled 1..n (``int32``) and one record per component:
    ``{"label", "kept", "reason", "diameter_mm", "elongation", "centre_ijk"}``.
    """
    labels, count = ndimage.label(np.asarray(candidates) > 0, structure=structure(26))
    air_distance = None
    if air is not None and np.any(air):
        air_distance = ndimage.distance_transform_edt(~np.asarray(air, bool),
                                                      sampling=np.asarray(spacing, float))
    kept = np.zeros(labels.shape, np.int32)
    records = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[box] == index
        shape = shape_in_box(component, box, spacing)
        reason = rejection_reason(shape, brain, air_distance, config)
        if reason is None:
            kept[box][component] = int(kept.max()) + 1
        records.append({"label": index, "kept": reason is None, "reason": reason,
                        "diameter_mm": shape.diameter_mm, "elongation": shape.elongation,
                        "centre_ijk": list(shape.centre_ijk)})
    return kept, records

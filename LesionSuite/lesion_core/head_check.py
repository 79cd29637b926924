"""Is this a head scan of the kind a task reads? Checks that say "no" before a result is shown.

The image checks (:func:`image_findings`) read only the voxels and the header, so they run
before a model is loaded; the brain check (:func:`brain_findings`) reads the volume of the
brain (or intracranial) mask a prediction made. Each finding is one sentence; a task
refuses an image with findings (:class:`NotAHeadScanError`, one line naming the file), or,
when the user insists (``--force``), reports its result marked out of distribution with the
findings in every output (:func:`refuse_unless_forced`).

The limits (:class:`HeadLimits`) were set on the training and validation cohorts of all
three tasks (randomized acquisitions: 1-7 mm slices, noise, bias field, HU calibration) and
the real T1 of the test data, with a wide margin on each side: docs/reliability.md lists the
figures behind them. Arrays are indexed ``[i, j, k]`` on the image's own grid; lengths in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidImageError
from .volume import Volume

FORCE_HINT = "add --force to get a result marked out of distribution"


class NotAHeadScanError(InvalidImageError):
    """The image is not a head scan of the kind the task reads (noise, a mask, a tiny or
    non-head volume, a header whose voxel size contradicts the anatomy)."""


@dataclass(frozen=True)
class HeadLimits:
    """Plausible ranges for a head scan.

    Attributes:
        extent_mm: (smallest, largest) length of any image axis (voxels x spacing); a head
            with neck is under 300 mm, a whole-body scan or a voxel size 10x too large is
            longer than the upper limit.
        min_head_mm: the two longest axes must each reach this (an axial slab through the
            head may be short across the slices, not within them).
        min_distinct_values: fewer distinct intensities make a label map or a mask.
        min_neighbour_correlation: the correlation of each voxel with its neighbour along
            the image's best axis (1: smooth, 0: white noise); any anatomy is far above it.
        ct_min_soft_tissue: on CT, the share of non-air voxels (> -200 HU) in soft tissue
            (-20 to 100 HU); a head is mostly brain, noise in the HU range is not.
        brain_ml: (smallest, largest) volume of the brain or intracranial mask.
    """

    extent_mm: tuple[float, float] = (40.0, 450.0)
    min_head_mm: float = 100.0
    min_distinct_values: int = 16
    min_neighbour_correlation: float = 0.3
    ct_min_soft_tissue: float = 0.3
    brain_ml: tuple[float, float] = (700.0, 3000.0)


#: Voxels sampled for the intensity statistics (a regular stride; enough for percentiles).
_SAMPLE = 400_000


def image_statistics(volume: Volume) -> dict[str, float]:
    """The figures :func:`image_findings` judges: axis extents (mm, ascending), distinct
    values in a sample, the best axis's neighbour correlation and, for every image, the
    share of non-air voxels in CT soft tissue (meaningful on CT in HU only)."""
    array = np.asarray(volume.array)
    extents = sorted(float(n * s) for n, s in zip(array.shape[:3], volume.spacing))
    flat = array.ravel()[:: max(1, array.size // _SAMPLE)].astype(np.float64)
    not_air = flat[flat > -200]
    soft = float(np.mean((not_air >= -20) & (not_air <= 100))) if not_air.size else 0.0
    return {"extent_min_mm": extents[0], "extent_mid_mm": extents[1],
            "extent_max_mm": extents[2], "distinct_values": float(len(np.unique(flat))),
            "neighbour_correlation": neighbour_correlation(array),
            "ct_soft_tissue": soft}


def neighbour_correlation(array: np.ndarray) -> float:
    """Largest over the three axes of the correlation between each voxel and the next one
    along that axis (computed on a central block of at most 64^3 voxels to stay cheap)."""
    block = tuple(slice(max(0, (n - 64) // 2), max(0, (n - 64) // 2) + 64) for n in array.shape[:3])
    data = np.asarray(array[block], dtype=np.float64)
    best = 0.0
    for axis in range(3):
        if data.shape[axis] < 2:
            continue
        a = np.take(data, np.arange(data.shape[axis] - 1), axis=axis).ravel()
        b = np.take(data, np.arange(1, data.shape[axis]), axis=axis).ravel()
        if a.std() > 0 and b.std() > 0:
            best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best


def image_findings(volume: Volume, modality: str, limits: HeadLimits = HeadLimits()) -> list[str]:
    """What makes ``volume`` implausible as a head ``modality`` (``"MR"`` or ``"CT"``)
    scan; empty when nothing does."""
    stats, findings = image_statistics(volume), []
    low, high = limits.extent_mm
    spacing = ", ".join(f"{s:g}" for s in np.round(volume.spacing, 3))
    if stats["extent_min_mm"] < low or stats["extent_max_mm"] > high:
        findings.append(
            f"the image spans {stats['extent_min_mm']:.0f} to {stats['extent_max_mm']:.0f} mm "
            f"along its axes (voxel size {spacing} mm), outside the {low:g}-{high:g} mm of a "
            "head; a wrong voxel size in the header does this too")
    elif stats["extent_mid_mm"] < limits.min_head_mm:
        findings.append(
            f"the image covers only {stats['extent_mid_mm']:.0f} mm across its second-longest "
            f"axis, less than the {limits.min_head_mm:g} mm of a head")
    if stats["distinct_values"] < limits.min_distinct_values:
        findings.append(f"the image has only {stats['distinct_values']:.0f} distinct values: "
                        "a mask or label map, not a scan")
    elif stats["neighbour_correlation"] < limits.min_neighbour_correlation:
        findings.append(
            f"neighbouring voxels are almost uncorrelated (correlation "
            f"{stats['neighbour_correlation']:.2f}, anatomy gives over "
            f"{limits.min_neighbour_correlation:g}): the image is noise")
    elif modality == "CT" and stats["ct_soft_tissue"] < limits.ct_min_soft_tissue:
        findings.append(
            f"only {100 * stats['ct_soft_tissue']:.0f}% of the non-air voxels are soft tissue "
            "(-20 to 100 HU), where a head CT is mostly brain")
    return findings


def brain_findings(brain_ml: float | None, what: str = "brain",
                   limits: HeadLimits = HeadLimits()) -> list[str]:
    """The finding when the ``what`` mask's volume (mL) is outside ``limits.brain_ml``."""
    low, high = limits.brain_ml
    if brain_ml is None or low <= brain_ml <= high:
        return []
    return [f"the {what} mask measures {brain_ml:.0f} mL, outside the {low:g}-{high:g} mL "
            "of an adult brain (a wrong voxel size, a partial scan or not a head)"]


def refuse_unless_forced(findings: list[str], source: str | None, force: bool,
                         fix: str) -> tuple[str, ...]:
    """Raise :class:`NotAHeadScanError` for ``findings`` unless ``force``; returns them
    (the out-of-distribution marks of a forced result)."""
    if findings and not force:
        raise NotAHeadScanError("; ".join(findings), f"{fix}; or {FORCE_HINT}", source)
    return tuple(findings)

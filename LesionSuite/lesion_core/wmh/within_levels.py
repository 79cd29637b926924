"""A segmentation that stays within the volume range of its own rating, region-side by
region-side.

:func:`~lesion_core.wmh.calibrate.segment` uses one set of levels for the whole brain.
Where a region-side's segmented volume is larger than the Wahlund range of the level
the rating head gives it (:mod:`.agreement`), the map and the rating disagree: most often
a bright false positive (ependymal rim, a frontal cap) grown like a lesion.
:func:`segment_within_levels` segments such a region-side again with stricter FLAIR levels,
step by step (:data:`STRICTER_FLAIR_LEVELS`), until its volume fits the range or the
strictest step is reached. It never adds voxels: a region-side whose volume is under its
range keeps what it has, as forcing voxels there put false positives into scans without
WMH whose head rates a region-side 1.

On 24 rated validation scans (seeds 150000-150023) this left the Dice unchanged (0.326
-> 0.328) and raised the fraction of region-sides within the range of their predicted
level from 0.72 to 0.78; growing region-sides rated 2-3 up to their range as well lost
Dice (0.28).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from ..atlas.arwmc import REGIONS
from .agreement import level_range_ml
from .calibrate import segment
from .config import SegmentThresholds

#: FLAIR levels (x the brain median) a region-side over its range is segmented with, in
#: turn; the growth level when the thresholds grow lesions, else the single level. A
#: seed level under the step is raised to it.
STRICTER_FLAIR_LEVELS = (1.3, 1.35, 1.4, 1.45, 1.5, 1.6, 1.7, 1.8)


def _stricter(thresholds: SegmentThresholds, flair_level: float) -> SegmentThresholds:
    """``thresholds`` with their FLAIR level(s) raised to at least ``flair_level``."""
    if thresholds.grow_flair_level is None:
        return dataclasses.replace(thresholds, flair_level=max(thresholds.flair_level, flair_level))
    return dataclasses.replace(thresholds, grow_flair_level=max(thresholds.grow_flair_level, flair_level),
                               flair_level=max(thresholds.flair_level, flair_level))


def segment_within_levels(activation: np.ndarray, flair_normalised: np.ndarray,
                          allowed: np.ndarray, regions: np.ndarray,
                          levels: Mapping[str, int], thresholds: SegmentThresholds,
                          voxel_ml: float) -> np.ndarray:
    """WMH mask (bool ``[I, J, K]``): :func:`~lesion_core.wmh.calibrate.segment` of the
    arrays inside ``allowed``, with every region-side over the volume range of its level
    in ``levels`` segmented again with stricter FLAIR levels (module notes). ``regions``:
    region-side labels 1..R in :data:`~lesion_core.atlas.arwmc.REGIONS` order on the same
    grid; ``voxel_ml``: the grid's voxel volume (mL). Thresholds without a fixed FLAIR
    level (a per-image percentile) have no stricter step: their mask is returned as is."""
    regions = np.asarray(regions)
    mask = segment(activation, flair_normalised, allowed, thresholds)
    if thresholds.flair_level is None:
        return mask
    counts = np.bincount(regions[mask].ravel(), minlength=len(REGIONS) + 1)
    steps: dict[float, np.ndarray] = {}  # each stricter mask is made once, for all regions
    for index, name in enumerate(REGIONS):
        high = level_range_ml(name, int(levels.get(name, 0)))[1]
        if counts[index + 1] * voxel_ml <= high:
            continue
        region = regions == index + 1
        for step in STRICTER_FLAIR_LEVELS:
            if step not in steps:
                steps[step] = segment(activation, flair_normalised, allowed,
                                      _stricter(thresholds, step))
            if np.sum(steps[step] & region) * voxel_ml <= high:
                break
        mask = (mask & ~region) | (steps[step] & region)
    return mask

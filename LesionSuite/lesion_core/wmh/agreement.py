"""Agreement of a WMH segmentation with its own ARWMC rating (Wahlund's rules as volumes).

The ARWMC levels are defined by what a reader sees in a region-side (Wahlund et al. 2001):
0 no lesion, 1 focal lesions, 2 beginning confluence, 3 diffuse involvement (basal
ganglia: 1 one focal lesion, 2 more than one, 3 confluent). A segmentation agrees with
a predicted level when the segmented volume of that region-side lies in the volume range
that level covers. The ranges below are the 2.5th-97.5th percentiles of the true lesion
volume per level over the 160 subjects of the synthetic training cohort (seeds 0-159,
1600 region-sides), widened to round numbers; they overlap, as the rules are about
shape and count, not volume alone:

==============  ===============  ===============
level           white matter     basal ganglia
==============  ===============  ===============
0 none          0 - 0.05 mL      0 - 0.03 mL
1 focal         0.01 - 1.3 mL    0.01 - 0.3 mL
2 confluence    0.1 - 14 mL      0.05 - 0.5 mL
3 diffuse       10 mL and more   0.08 mL and more
==============  ===============  ===============

:func:`rating_consistent_mask` makes the segmentation honour level 0 (a region-side the
head rates 0 keeps no lesion voxel); :func:`agreement` is the fraction of region-sides
whose segmented volume lies in the range of their predicted level.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..atlas.arwmc import REGIONS

#: (low, high) lesion volume in mL per ARWMC level 0-3, white-matter region-sides.
WHITE_MATTER_ML = ((0.0, 0.05), (0.01, 1.3), (0.1, 14.0), (10.0, math.inf))
#: The same for the basal ganglia, whose levels count lesions instead.
BASAL_GANGLIA_ML = ((0.0, 0.03), (0.01, 0.3), (0.05, 0.5), (0.08, math.inf))


def level_range_ml(region: str, level: int) -> tuple[float, float]:
    """The (low, high) volume range in mL of ARWMC ``level`` (0-3) in ``region`` (a name
    of :data:`~lesion_core.atlas.arwmc.REGIONS`)."""
    if region not in REGIONS:
        raise ValueError(f"unknown ARWMC region-side {region!r}")
    table = BASAL_GANGLIA_ML if region.startswith("basal_ganglia") else WHITE_MATTER_ML
    return table[int(level)]


def agrees(region: str, level: int, volume_ml: float) -> bool:
    """True when ``volume_ml`` lies in the range of ``level`` in ``region``."""
    low, high = level_range_ml(region, level)
    return low <= float(volume_ml) <= high


def agreement(levels: Mapping[str, int], region_ml: Mapping[str, float]) -> float:
    """Fraction (0-1) of the region-sides of ``levels`` whose segmented volume
    ``region_ml`` lies in the range of their level."""
    if not levels:
        raise ValueError("no region-side levels to compare")
    hits = [agrees(r, lvl, region_ml[r]) for r, lvl in levels.items()]
    return float(np.mean(hits))


def rating_consistent_mask(mask: np.ndarray, regions: np.ndarray,
                           levels: Mapping[str, int]) -> np.ndarray:
    """``mask`` (bool ``[I, J, K]``) without the voxels of region-sides whose level is 0;
    ``regions`` holds the region-side labels 1..R in :data:`REGIONS` order on the same
    grid (0 = none; voxels there are kept)."""
    mask = np.asarray(mask, dtype=bool)
    regions = np.asarray(regions)
    if mask.shape != regions.shape:
        raise ValueError(f"mask {mask.shape} and regions {regions.shape} differ in shape")
    silent = [i + 1 for i, name in enumerate(REGIONS) if levels.get(name, 1) == 0]
    return mask & ~np.isin(regions, silent) if silent else mask.copy()

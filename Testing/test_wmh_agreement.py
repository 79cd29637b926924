"""The segmentation honours its own ARWMC rating (lesion_core.wmh.agreement)."""

from __future__ import annotations

import numpy as np
import pytest

from lesion_core.atlas.arwmc import REGIONS
from lesion_core.wmh.agreement import (agreement, agrees, level_range_ml,
                                       rating_consistent_mask)


def test_level_ranges_follow_the_wahlund_order():
    for region in ("frontal_left", "basal_ganglia_right"):
        lows = [level_range_ml(region, level)[0] for level in range(4)]
        highs = [level_range_ml(region, level)[1] for level in range(4)]
        assert lows == sorted(lows) and highs == sorted(highs)
        assert lows[0] == 0.0 and highs[3] == float("inf")
    assert agrees("frontal_left", 0, 0.0) and not agrees("frontal_left", 0, 0.5)
    assert agrees("frontal_left", 3, 20.0) and not agrees("frontal_left", 1, 20.0)
    # a basal-ganglia lesion is small: 0.4 mL is already beyond "one focal lesion"
    assert not agrees("basal_ganglia_left", 1, 0.4) and agrees("basal_ganglia_left", 2, 0.4)
    with pytest.raises(ValueError, match="unknown ARWMC region-side"):
        level_range_ml("cerebellum_left", 1)


def test_agreement_is_the_fraction_of_region_sides_in_range():
    levels = {name: 0 for name in REGIONS}
    volumes = {name: 0.0 for name in REGIONS}
    assert agreement(levels, volumes) == 1.0
    volumes["frontal_left"] = 2.0                       # level 0 with 2 mL: disagrees
    levels["temporal_right"], volumes["temporal_right"] = 2, 3.0   # agrees
    assert agreement(levels, volumes) == pytest.approx(0.9)


def test_a_region_side_rated_zero_keeps_no_lesion_voxel():
    regions = np.zeros((6, 6, 6), np.uint8)
    regions[:3] = REGIONS.index("frontal_left") + 1
    regions[3:5] = REGIONS.index("frontal_right") + 1          # last slab: no region
    mask = np.ones((6, 6, 6), bool)
    levels = {name: 1 for name in REGIONS}
    levels["frontal_left"] = 0
    kept = rating_consistent_mask(mask, regions, levels)
    assert not kept[:3].any() and kept[3:].all()
    assert mask.all()                                           # the input is untouched
    with pytest.raises(ValueError, match="differ in shape"):
        rating_consistent_mask(mask[:5], regions, levels)

"""The WMH segmentation kept within the volume range of its own rating, per region-side."""

import numpy as np

from lesion_core.atlas.arwmc import REGIONS
from lesion_core.wmh.calibrate import segment
from lesion_core.wmh.config import SegmentThresholds
from lesion_core.wmh.within_levels import segment_within_levels

GROWN = SegmentThresholds(activation_level=0.4, flair_level=1.38, grow_activation_level=0.04,
                          grow_flair_level=1.27)


def _scan():
    """Two region-sides of a 40 mm cube (1 mm voxels): the first holds a faint 4 mL blob
    around a bright 0.125 mL lesion, the second a 0.216 mL lesion with a bright core."""
    flair = np.ones((40, 40, 40), np.float32)
    regions = np.zeros(flair.shape, np.int64)
    regions[:20], regions[20:] = 1, 2
    flair[0:20, 0:20, 0:10] = 1.32
    flair[5:10, 5:10, 2:7] = 2.0
    flair[25:31, 5:11, 5:11] = 1.32
    flair[27:29, 7:9, 7:9] = 2.0
    return np.full(flair.shape, 0.6, np.float32), flair, np.ones(flair.shape, bool), regions


def test_a_region_side_over_its_range_is_segmented_again_more_strictly():
    activation, flair, allowed, regions = _scan()
    levels = {name: 0 for name in REGIONS}
    levels[REGIONS[0]] = levels[REGIONS[1]] = 1             # focal lesions: <= 1.3 mL each
    plain = segment(activation, flair, allowed, GROWN)
    assert plain[regions == 1].sum() == 4000                # the faint blob grown like a lesion
    mask = segment_within_levels(activation, flair, allowed, regions, levels, GROWN, 0.001)
    assert mask[regions == 1].sum() == 125                  # the bright lesion only
    assert mask[regions == 2].sum() == plain[regions == 2].sum() == 216   # within its range
    assert not (mask & ~plain).any()                        # it never adds a voxel


def test_a_region_side_rated_diffuse_keeps_its_volume():
    activation, flair, allowed, regions = _scan()
    levels = {name: 0 for name in REGIONS}
    levels[REGIONS[0]] = 3                                  # diffuse: no upper bound
    mask = segment_within_levels(activation, flair, allowed, regions, levels, GROWN, 0.001)
    assert mask[regions == 1].sum() == 4000


def test_percentile_thresholds_have_no_stricter_step():
    activation, flair, allowed, regions = _scan()
    per_image = SegmentThresholds(activation_percentile=50.0, flair_percentile=90.0)
    levels = {name: 1 for name in REGIONS}
    np.testing.assert_array_equal(
        segment_within_levels(activation, flair, allowed, regions, levels, per_image, 0.001),
        segment(activation, flair, allowed, per_image))

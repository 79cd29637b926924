"""Classical reference methods (baselines), one per task; not products.

* :func:`segment_wmh_threshold` - FLAIR intensity thresholding for WMH;
* :func:`detect_cmb_log` - Laplacian-of-Gaussian blob detection of CMB candidates on SWI;
* :func:`segment_ich_threshold` - HU window thresholding for ICH on non-contrast CT.

Each takes a :class:`~lesion_core.volume.Volume` (array indexed ``[i, j, k]`` plus a
voxel-to-RAS affine in mm) and a frozen config dataclass, and returns a label map on the
same grid. Every learned model of LesionSuite must beat its baseline on the benchmark
(``bench/`` and ``docs/benchmarks.md``).
"""

from .cmb_log import CMBCandidate, CMBLogConfig, detect_cmb_log
from .ich_threshold import ICHThresholdConfig, ct_brain_mask, segment_ich_threshold, slice_areas_mm2
from .masks import mr_brain_mask
from .wmh_threshold import WMHThresholdConfig, segment_wmh_threshold

__all__ = [
    "CMBCandidate", "CMBLogConfig", "detect_cmb_log",
    "ICHThresholdConfig", "ct_brain_mask", "segment_ich_threshold", "slice_areas_mm2",
    "mr_brain_mask",
    "WMHThresholdConfig", "segment_wmh_threshold",
]

"""Intensity corrections shared by the classical baselines and the learned models."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def finite_float32(array) -> np.ndarray:
    """``array`` as float32 with NaN as 0 and +-inf as the largest finite values (what
    :func:`numpy.nan_to_num` gives), without nan_to_num's full passes and copy when every
    value is finite already (the usual case: 0.1 s saved per 10 M voxels). The result may
    share memory with ``array``: do not write into it."""
    values = np.asarray(array, dtype=np.float32)
    return values if np.isfinite(values).all() else np.nan_to_num(values)


def local_mean_field(image: np.ndarray, brain: np.ndarray, sigma_mm: float,
                     spacing: Sequence[float]) -> np.ndarray:
    """Multiplicative bias field of ``image`` (``[i, j, k]``): its brain-only local mean
    (normalised Gaussian convolution, sigma ``sigma_mm``) over the brain median; 1 where
    there is no brain nearby. ``image / field`` is the corrected image.

    A fast stand-in for N4: it removes the smooth receive-coil shading (tens of mm) that
    otherwise lifts whole lobes above a global threshold, at the cost of flattening the
    very largest confluent lesions slightly (they fill part of the 20 mm neighbourhood).
    """
    sigma = np.asarray(sigma_mm, np.float64) / np.asarray(spacing, np.float64)
    brain = np.asarray(brain) > 0
    weight = ndimage.gaussian_filter(brain.astype(np.float32), sigma, mode="constant")
    local = ndimage.gaussian_filter(np.where(brain, image, 0).astype(np.float32), sigma,
                                    mode="constant")
    reference = float(np.median(image[brain]))
    local = np.divide(local, weight, out=np.full_like(local, reference), where=weight > 1e-3)
    local = np.where(local > 0, local, reference)
    return (local / reference).astype(np.float32)

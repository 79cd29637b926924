"""Test geometry shared by the suites: awkward affines real scanners produce."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from lesion_core.volume import Volume


def oblique_lps_affine(spacing=(0.7, 1.1, 3.0), degrees=(12.0, -20.0, 7.0),
                       origin=(31.5, -12.25, 40.0)) -> np.ndarray:
    """Voxel-to-RAS affine of an LPS-stored (i->L, j->P), rotated, anisotropic grid."""
    rotation = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    lps_axes = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ lps_axes @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def random_volume(shape=(20, 24, 16), dtype=np.int16, affine=None, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = rng.integers(max(info.min, -2000), min(info.max, 3000), size=shape, endpoint=True)
    else:
        array = rng.normal(100.0, 30.0, size=shape)
    return Volume(array.astype(dtype), oblique_lps_affine() if affine is None else affine)

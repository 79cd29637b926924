"""Shared helpers of the metrics: input coercion, grid checks, JSON-safe values.

Images are numpy arrays indexed ``[i, j, k]`` (or :class:`~lesion_core.volume.Volume`),
spacing is the voxel size in mm along i, j, k. Nothing here computes a metric.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from ..jsonable import json_safe
from ..volume import Volume

#: Largest difference (mm) two affines may have and still count as the same grid.
AFFINE_TOLERANCE_MM = 1e-3

#: ``scipy.ndimage.label`` structures by the number of neighbours that connect voxels.
_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def dataclass_dict(obj: Any, extra: Sequence[str] = ()) -> dict:
    """JSON-safe dict of a dataclass's fields plus the named properties in ``extra``."""
    out = {f.name: getattr(obj, f.name) for f in fields(obj)}
    out.update({name: getattr(obj, name) for name in extra})
    return json_safe(out)


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or ``nan`` when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else float("nan")


def structure(connectivity: int) -> np.ndarray:
    """3x3x3 ``scipy.ndimage.label`` structure for 6-, 18- or 26-connectivity."""
    if connectivity not in _CONNECTIVITY_RANK:
        raise ValueError("connectivity must be 6, 18 or 26 (neighbours in 3D), "
                         f"got {connectivity!r}")
    return ndimage.generate_binary_structure(3, _CONNECTIVITY_RANK[connectivity])


def check_spacing(spacing: Sequence[float] | float | None) -> np.ndarray:
    """Voxel size in mm along i, j, k as a float array of 3; ``None`` means 1 mm each."""
    if spacing is None:
        return np.ones(3)
    out = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError(f"spacing must be 3 positive finite sizes in mm, got {spacing!r}")
    return out


class Grid:
    """The common voxel grid of several images: arrays, spacing (mm) and affine (or None).

    Built by :func:`on_one_grid`; ``affine`` is the Volume's voxel-to-RAS affine when one
    of the inputs was a :class:`Volume`, else ``None`` (positions are then ``ijk * spacing``).
    """

    def __init__(self, arrays: list[np.ndarray], spacing: np.ndarray, affine: np.ndarray | None):
        self.arrays = arrays
        self.spacing = spacing
        self.affine = affine

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3 (|det| of the affine when known)."""
        if self.affine is not None:
            return float(abs(np.linalg.det(self.affine[:3, :3])))
        return float(np.prod(self.spacing))

    def voxel_to_mm(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (N x 3) to mm: RAS through the affine, else ``ijk * spacing``."""
        ijk = np.asarray(ijk, dtype=np.float64).reshape(-1, 3)
        if self.affine is not None:
            return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
        return ijk * self.spacing


def on_one_grid(*images: np.ndarray | Volume | None,
                spacing: Sequence[float] | float | None = None,
                names: Sequence[str] = ()) -> Grid:
    """Check that the images (arrays or Volumes; ``None`` skipped) share one 3D grid.

    Raises ``ValueError`` when shapes differ, an image is not 3D, two Volumes have
    affines further apart than :data:`AFFINE_TOLERANCE_MM`, or an explicit ``spacing``
    disagrees with a Volume's. Returned arrays keep the inputs' order (``None`` stays).
    """
    names = list(names) + [f"image {n}" for n in range(len(names), len(images))]
    arrays: list = []
    affine = None
    affine_name = ""
    shape = None
    for name, image in zip(names, images):
        if image is None:
            arrays.append(None)
            continue
        array = image.array if isinstance(image, Volume) else np.asarray(image)
        if array.ndim != 3:
            raise ValueError(f"{name} must be a 3D array indexed [i, j, k], "
                             f"got shape {array.shape}")
        if shape is None:
            shape, shape_name = array.shape, name
        elif array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape} but {shape_name} has {shape}: "
                             "resample both onto one grid first")
        if isinstance(image, Volume):
            if affine is None:
                affine, affine_name = image.affine, name
            elif not np.allclose(image.affine, affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
                raise ValueError(f"{name} and {affine_name} have the same shape but different "
                                 "affines (not the same voxel grid): resample one onto the other")
        arrays.append(array)
    if affine is not None:
        grid_spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        if spacing is not None and not np.allclose(check_spacing(spacing), grid_spacing,
                                                   rtol=1e-4):
            raise ValueError(f"spacing {spacing!r} disagrees with the Volume's spacing "
                             f"{grid_spacing.round(4).tolist()} mm: leave spacing out")
        return Grid(arrays, grid_spacing, affine)
    return Grid(arrays, check_spacing(spacing), None)


def _binary(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array if array.dtype == bool else array >= 0.5


def as_mask(array: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Boolean lesion mask: voxel value >= 0.5 (so 1/True for masks), minus ``ignore``.

    The threshold is the WMH challenge's (integer labels >= 1, floats >= 0.5).
    """
    mask = _binary(array)
    return mask if ignore is None else mask & ~_binary(ignore)


def as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """A finite float vector (a column or row vector is flattened); else ``ValueError``."""
    out = np.asarray(values, dtype=np.float64)
    if out.ndim == 2 and min(out.shape) == 1:
        out = out.ravel()
    if out.ndim != 1:
        raise ValueError(f"{name} must be one value per case (1D), got shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def paired(a: Sequence[float], b: Sequence[float],
           names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long finite vectors."""
    x, y = as_1d(a, names[0]), as_1d(b, names[1])
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} has {x.size} values but {names[1]} has {y.size}")
    return x, y

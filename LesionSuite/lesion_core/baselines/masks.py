"""Morphology in millimetres and the MR brain mask shared by the classical baselines.

Arrays are indexed ``[i, j, k]`` (the :class:`~lesion_core.volume.Volume` voxel order);
every size is given in mm (or mm^3) and converted with the voxel spacing along i, j, k, so
the same parameters work on 1 mm 3D and 5 mm thick-slice images, in any orientation
(oblique grids included: distances use the spacing only, which is exact for an
orthogonal grid).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

#: ``scipy.ndimage`` structures by connectivity (neighbours in 3D).
_RANK = {6: 1, 18: 2, 26: 3}


def structure(connectivity: int) -> np.ndarray:
    """3x3x3 structuring element joining voxels with 6, 18 or 26 neighbours."""
    if connectivity not in _RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    return ndimage.generate_binary_structure(3, _RANK[connectivity])


def sigma_voxels(sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Gaussian sigma in voxels along i, j, k for a sigma of ``sigma_mm`` (mm)."""
    return float(sigma_mm) / np.asarray(spacing, dtype=np.float64)


def smooth_mm(array: np.ndarray, sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing (float32) with an isotropic sigma in mm; 0 returns a float copy."""
    data = np.asarray(array, dtype=np.float32)
    if sigma_mm <= 0:
        return data.copy()
    return ndimage.gaussian_filter(data, sigma_voxels(sigma_mm, spacing), mode="nearest")


#: Largest ball (in voxels) applied as a structuring element; a larger radius is
#: computed with a distance transform instead, whose cost does not grow with the radius.
_MAX_BALL_VOXELS = 125


def _ball(radius_mm: float, spacing: Sequence[float]) -> np.ndarray | None:
    """Structuring element of the voxel offsets within ``radius_mm`` (mm), or ``None``
    when it has more than :data:`_MAX_BALL_VOXELS` voxels. Morphology with it gives the
    same sets as the distance-transform rules below (both compare centre-to-centre
    distances with the radius), a few times faster for the small radii of mask clean-up."""
    reach = np.floor(float(radius_mm) / np.asarray(spacing, dtype=np.float64)).astype(int)
    if np.prod(2 * reach + 1) > 4 * _MAX_BALL_VOXELS:
        return None
    axes = [np.arange(-r, r + 1) * float(d) for r, d in zip(reach, spacing)]
    grid = np.meshgrid(*axes, indexing="ij")
    ball = sum(g ** 2 for g in grid) <= float(radius_mm) ** 2 * (1 + 1e-12)
    return ball if ball.sum() <= _MAX_BALL_VOXELS else None


def erode_mm(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels of ``mask`` farther than ``radius_mm`` (mm) from any background voxel.

    The image border counts as background, so objects touching it are eroded there too.
    """
    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    ball = _ball(radius_mm, spacing)
    if ball is not None:  # kept when no background voxel lies within the ball
        return ndimage.binary_erosion(mask, ball, border_value=0)
    padded = np.pad(mask, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return distance > radius_mm


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels within ``radius_mm`` (mm) of ``mask`` (the mask itself included)."""
    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    ball = _ball(radius_mm, spacing)
    if ball is not None:
        return ndimage.binary_dilation(mask, ball)
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm


def largest_component(mask: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """The largest connected component of ``mask`` (empty stays empty)."""
    labels, n = ndimage.label(mask, structure=structure(connectivity))
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def remove_small_components(mask: np.ndarray, min_size_mm3: float, spacing: Sequence[float],
                            connectivity: int = 26) -> np.ndarray:
    """Drop connected components smaller than ``min_size_mm3`` (mm^3)."""
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=structure(connectivity))
    if n == 0 or min_size_mm3 <= 0:
        return mask.copy()
    voxel_mm3 = float(np.prod(spacing))
    sizes = np.bincount(labels.ravel()) * voxel_mm3
    keep = sizes >= min_size_mm3
    keep[0] = False
    return keep[labels]


def fill_holes_slicewise(mask: np.ndarray, axis: int) -> np.ndarray:
    """Fill enclosed holes in every 2D slice orthogonal to ``axis`` (0, 1 or 2)."""
    out = np.asarray(mask, dtype=bool).copy()
    moved = np.moveaxis(out, axis, 0)  # a view: filling it fills ``out``
    for n in range(moved.shape[0]):
        if moved[n].any():
            moved[n] = ndimage.binary_fill_holes(moved[n])
    return out


def mr_brain_mask(array: np.ndarray, spacing: Sequence[float], *, smooth_sigma_mm: float = 1.0,
                  detach_mm: float = 4.0, margin_mm: float = 2.0) -> np.ndarray:
    """Brain mask of an MR head image (FLAIR, T1, SWI), indexed ``[i, j, k]``.

    Steps: Gaussian smoothing (``smooth_sigma_mm``); Otsu threshold of the smoothed image
    (head tissue vs background/bone/air); erosion by ``detach_mm`` to cut the thin
    bridges between brain and scalp across the dark skull; the largest 6-connected
    component (the brain); conditional dilation back by ``detach_mm`` inside the Otsu mask;
    3D hole filling (dark ventricles and deep nuclei become part of the brain); finally
    erosion by ``margin_mm`` so that the partial-volume rim at the brain surface is left out.
    Intensity units do not matter (Otsu is scale-free).
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    smoothed = smooth_mm(array, smooth_sigma_mm, spacing)
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size == 0 or float(finite.max()) <= float(finite.min()):
        return np.zeros(smoothed.shape, dtype=bool)
    head = smoothed > threshold_otsu(finite)
    core = largest_component(erode_mm(head, detach_mm, spacing), 6)
    if not core.any():
        core = largest_component(head, 6)
    brain = dilate_mm(core, detach_mm, spacing) & head
    brain = largest_component(brain, 6)
    brain = ndimage.binary_fill_holes(brain)
    return erode_mm(brain, margin_mm, spacing)

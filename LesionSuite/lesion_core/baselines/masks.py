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


#: Most runs a ball is split into for :func:`erode_mm` / :func:`dilate_mm` (its cross-section
#: across the run axis, in voxels); a larger ball is computed with a distance transform
#: instead, whose cost does not grow with the radius.
_MAX_RUNS = 400


def _ball_runs(radius_mm: float, spacing: Sequence[float]
               ) -> tuple[int, list[tuple[tuple[int, int, int], int]]] | None:
    """The ball of voxel offsets within ``radius_mm`` (mm) as runs along one axis:
    ``(axis, [(offset, half_length), ...])``, one run ``offset + c e_axis`` with
    ``|c| <= half_length`` per offset (0 along ``axis``) across it; ``None`` when there are
    more than :data:`_MAX_RUNS`. The run axis is the one with the most voxels in the ball
    (fewest runs). The ball is the set the distance-transform rules below define (both
    compare centre-to-centre distances with the radius)."""
    spacing = np.asarray(spacing, dtype=np.float64)
    reach = np.floor(float(radius_mm) / spacing).astype(int)
    axis = int(np.argmax(reach))
    if np.prod(np.delete(2 * reach + 1, axis)) > 4 * _MAX_RUNS:
        return None
    axes = [np.arange(-r, r + 1) * float(d) for r, d in zip(reach, spacing)]
    grid = np.meshgrid(*axes, indexing="ij")
    ball = np.moveaxis(sum(g ** 2 for g in grid) <= float(radius_mm) ** 2 * (1 + 1e-12), axis, -1)
    lengths = ball.sum(axis=-1)  # each line across the ball is one run centred on it
    runs = []
    for across in np.argwhere(lengths > 0):
        offset = np.insert(across - np.delete(reach, axis), axis, 0)
        runs.append((tuple(int(o) for o in offset), int(lengths[tuple(across)]) // 2))
    return (axis, runs) if len(runs) <= _MAX_RUNS else None


def _gap(mask: np.ndarray, axis: int, edge_in_mask: bool) -> np.ndarray:
    """Distance in voxels along ``axis`` from each voxel to the nearest voxel of ``mask``
    (0 on it). ``edge_in_mask``: the voxels just beyond both ends belong to the mask (the
    border as background, for an erosion); else a line without mask voxels is farther
    than its length."""
    n = mask.shape[axis]
    index = np.arange(n, dtype=np.int32).reshape([n if a == axis else 1 for a in range(mask.ndim)])
    # Where no mask voxel lies before / after: the virtual one beyond the end, or far away.
    low, high = (-1, n) if edge_in_mask else (-2 ** 30, 2 ** 30)
    before = np.maximum.accumulate(np.where(mask, index, np.int32(low)), axis=axis)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(mask, index, np.int32(high)), axis),
                                          axis=axis), axis)
    return np.minimum(index - before, after - index)


def _shifted_runs(mask: np.ndarray, runs: tuple[int, list], erode: bool) -> np.ndarray:
    """Erosion (border = background) or dilation of ``mask`` by the ball ``runs``
    (:func:`_ball_runs`): one 1-D distance along the run axis, then the AND (erosion) or
    OR (dilation) of its thresholded copies shifted across it, one per run. The same sets
    as a structuring element, a few times faster: each step is a whole-array operation,
    on bits packed along the run axis (every shift lies across that axis, so whole bytes
    move: 8 voxels per byte operation)."""
    axis, offsets = runs
    gap = _gap(~mask if erode else mask, axis, edge_in_mask=erode)
    count = mask.shape[axis]
    shape = list(mask.shape)
    shape[axis] = (count + 7) // 8
    out = np.full(shape, 255 if erode else 0, dtype=np.uint8)
    for length in sorted({h for _, h in offsets}):
        line = np.packbits(gap > length if erode else gap <= length, axis=axis)
        for offset, h in offsets:
            if h != length:
                continue
            if any(abs(o) >= n for o, n in zip(offset, shape)):  # wholly beyond the edge
                if erode:
                    out[...] = 0
                continue
            # out[x] &= line[x + offset] (erosion) or |= (dilation), inside the array.
            dst = tuple(slice(max(-o, 0), n - max(o, 0)) for o, n in zip(offset, shape))
            src = tuple(slice(max(o, 0), n - max(-o, 0)) for o, n in zip(offset, shape))
            if not erode:
                out[dst] |= line[src]
                continue
            out[dst] &= line[src]
            for a, o in enumerate(offset):  # the shift reaches beyond the edge: background
                if o:
                    beyond = slice(-o, None) if o > 0 else slice(None, -o)
                    out[(slice(None),) * a + (beyond,)] = 0
    return np.unpackbits(out, axis=axis, count=count).view(bool)


def bounding_box(mask: np.ndarray, grow: Sequence[int] | int = 0
                 ) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s non-zero voxels grown by ``grow`` voxels (one per
    axis, or one for all) and clipped to the array; None for an empty mask. With
    ``grow = ceil(mm / spacing)`` it is the box grown by that many mm, the usual way to
    keep a distance map or a network run small."""
    found = ndimage.find_objects(np.asarray(mask).astype(np.uint8))
    if not found:
        return None
    grow = np.broadcast_to(np.asarray(grow, int), (mask.ndim,))
    return tuple(slice(max(s.start - g, 0), min(s.stop + g, n))
                 for s, g, n in zip(found[0], grow, mask.shape))


def _in_box(mask: np.ndarray, grow: Sequence[int], operation) -> np.ndarray:
    """``operation(mask)`` computed only in ``mask``'s bounding box grown by ``grow``
    voxels (what lies farther is background before and after the morphology)."""
    box = bounding_box(mask, grow)
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = operation(mask[box])
    return out


def erode_mm(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels of ``mask`` farther than ``radius_mm`` (mm) from any background voxel.

    The image border counts as background, so objects touching it are eroded there too.
    """
    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    runs = _ball_runs(radius_mm, spacing)
    if runs is not None:  # kept when no background voxel lies within the ball
        return _in_box(mask, (0, 0, 0), lambda m: _shifted_runs(m, runs, erode=True))
    padded = np.pad(mask, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return distance > radius_mm


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels within ``radius_mm`` (mm) of ``mask`` (the mask itself included)."""
    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    runs = _ball_runs(radius_mm, spacing)
    if runs is not None:
        reach = np.floor(float(radius_mm) / np.asarray(spacing, dtype=np.float64)).astype(int)
        return _in_box(mask, reach, lambda m: _shifted_runs(m, runs, erode=False))
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm


def largest_component(mask: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """The largest connected component of ``mask`` (empty stays empty; of equal ones, the
    first in ``[i, j, k]`` order)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    return _in_box(mask, (0, 0, 0), lambda m: _largest(m, connectivity))


def _largest(mask: np.ndarray, connectivity: int) -> np.ndarray:
    labels, _ = ndimage.label(mask, structure=structure(connectivity))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` of a 3D mask, the same voxels, faster: a hole is a
    background component (6-connected) that does not reach the border. The background of
    the mask's bounding box is labelled once instead of grown from the border voxel by
    voxel (the faces of the box reach the border through the background around it)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    return _in_box(mask, (0, 0, 0), _filled)


def _filled(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(~mask)
    hole = np.ones(count + 1, dtype=bool)
    hole[0] = False
    for axis in range(mask.ndim):
        hole[np.take(labels, [0, -1], axis=axis)] = False
    return mask | hole[labels]


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
    """Fill enclosed holes in every 2D slice orthogonal to ``axis`` (0, 1 or 2): what
    ``ndimage.binary_fill_holes`` gives slice by slice (background 4-connected in-plane,
    not reaching the slice's edge). A hole in 3D is a hole of every slice through it
    (an in-plane path to the slice's edge would reach the volume's), so this fills those
    too.

    All slices are labelled at once (a structure with no neighbour across ``axis``), in
    the mask's bounding box: background touching the box's in-plane sides reaches the
    edge through the background around the box."""
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    box = bounding_box(mask)
    if box is None:
        return out
    in_plane = ndimage.generate_binary_structure(3, 1)
    in_plane[tuple(slice(None) if a != axis else [0, 2] for a in range(3))] = False
    labels, count = ndimage.label(~mask[box], structure=in_plane)
    hole = np.ones(count + 1, dtype=bool)
    hole[0] = False
    for side in (a for a in range(3) if a != axis):
        hole[np.take(labels, [0, -1], axis=side)] = False
    out[box] |= hole[labels]
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
    brain = fill_holes(brain)
    return erode_mm(brain, margin_mm, spacing)

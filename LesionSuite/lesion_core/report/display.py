"""Display geometry of a report's mosaic: which axial slices, which pixels, which window.

Arrays of :class:`~lesion_core.volume.Volume` are indexed ``[i, j, k]`` on the image's own
grid. For display the image is first put in RAS voxel order (:func:`display_volume`: axes
permuted and flipped, no interpolation), so ``i`` runs to the patient's right, ``j`` to
anterior and ``k`` to superior, and an axial slice is ``array[:, :, k]``. An oblique
image is shown on its nearest axes (the slices are those of the acquisition, not
resampled), which is what a reader sees in a viewer that does not reslice.

The picture of a slice follows the **radiological convention**: the patient's right is on
the left of the picture, anterior at the top. Pixels are square (``pixel_mm`` on each
side), whatever the in-plane voxel size; :class:`DisplayGrid` maps pixels to continuous
voxel indices and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..volume import Volume

#: CT brain window (level 40 HU, width 80 HU), as radiologists read haemorrhage.
CT_BRAIN_WINDOW = (0.0, 80.0)
#: MR display range: these percentiles of the head's voxels (dark to bright).
MR_PERCENTILES = (1.0, 99.5)
#: A slice, row or column belongs to the head when it holds at least this fraction of the
#: largest one's head voxels (stray noise voxels must not widen the picture).
_PROFILE_FRACTION = 0.02
_SLICE_FRACTION = 0.05
#: Voxels kept around the head's bounding box in the picture.
_MARGIN_VOXELS = 2


@dataclass(frozen=True)
class Window:
    """Display range of image intensities: ``low`` is black, ``high`` white (image units:
    HU for CT, arbitrary for MR); ``name`` says how it was chosen."""

    low: float
    high: float
    name: str

    def scale(self, values: np.ndarray) -> np.ndarray:
        """``values`` mapped to float32 grey levels in [0, 1] (NaN -> 0)."""
        span = max(self.high - self.low, 1e-6)
        grey = (np.nan_to_num(np.asarray(values, np.float32)) - self.low) / span
        return np.clip(grey, 0.0, 1.0).astype(np.float32)


def display_volume(volume: Volume) -> Volume:
    """``volume`` in RAS voxel order (``i`` right, ``j`` anterior, ``k`` superior), by
    axis permutation and flips only (see the module notes)."""
    return volume.to_ras()


def head_mask(array: np.ndarray, family: str) -> np.ndarray:
    """Voxels that belong to the head, ``[i, j, k]`` bool: CT above -300 HU (soft tissue,
    brain, bone); MR above 15 % of the 99.5th percentile of the positive voxels."""
    values = np.nan_to_num(np.asarray(array, np.float32))
    if family == "CT":
        return values > -300.0
    positive = values[values > 0]
    if positive.size == 0:
        return np.ones(values.shape, bool)
    return values > 0.15 * float(np.percentile(positive, 99.5))


def window_for(array: np.ndarray, family: str, head: np.ndarray | None = None) -> Window:
    """The display window of an image: the CT brain window for ``family`` ``"CT"``, else
    the :data:`MR_PERCENTILES` of the head's voxels (of all voxels when ``head`` is
    None or empty)."""
    if family == "CT":
        return Window(*CT_BRAIN_WINDOW, "CT brain window (level 40, width 80 HU)")
    values = np.nan_to_num(np.asarray(array, np.float32))
    inside = values[head] if head is not None and head.any() else values.ravel()
    low, high = (float(v) for v in np.percentile(inside, MR_PERCENTILES))
    if high <= low:
        high = low + 1.0
    return Window(low, high, "MR: 1st to 99.5th percentile of the head's intensities")


def _extent(profile: np.ndarray, fraction: float) -> tuple[int, int]:
    """First and last index whose ``profile`` reaches ``fraction`` of its maximum (the
    whole axis when the profile is empty)."""
    if profile.max() <= 0:
        return 0, len(profile) - 1
    index = np.flatnonzero(profile >= fraction * profile.max())
    return int(index[0]), int(index[-1])


def choose_slices(head: np.ndarray, count: int, wanted: Sequence[int] = ()) -> list[int]:
    """Axial slices (``k`` of a RAS-ordered ``[i, j, k]`` mask ``head``) to show, bottom to
    top: ``count`` evenly spaced through the head, then each ``wanted`` slice (in the
    order given, as many as fit) put in place of the nearest evenly spaced one that is
    not itself wanted."""
    first, last = _extent(head.sum(axis=(0, 1)).astype(float), _SLICE_FRACTION)
    span = last - first + 1
    count = max(1, min(int(count), span))
    chosen = sorted({first + int((m + 0.5) * span / count) for m in range(count)})
    locked: set[int] = set()
    for k in wanted:
        k = int(k)
        if len(locked) >= len(chosen) or not 0 <= k < head.shape[2]:
            continue
        if k in chosen:
            locked.add(k)
            continue
        free = [c for c in chosen if c not in locked]
        nearest = min(free, key=lambda c: (abs(c - k), c))
        chosen[chosen.index(nearest)] = k
        locked.add(k)
    return sorted(set(chosen))


@dataclass(frozen=True)
class DisplayGrid:
    """The pixels of one tile (an axial slice) of a RAS-ordered image.

    Attributes:
        affine: voxel-to-RAS (mm) of the RAS-ordered image.
        shape: ``(I, J, K)`` of the RAS-ordered image.
        i_range, j_range: the voxels shown, ``[first, last]`` along ``i`` and ``j``.
        pixel_mm: side of a (square) pixel in mm.
        rows, columns: tile size in pixels.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    i_range: tuple[int, int]
    j_range: tuple[int, int]
    pixel_mm: float
    rows: int
    columns: int

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along ``i``, ``j``, ``k`` (mm)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def voxel_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(i, j)``: continuous voxel indices at each pixel centre, arrays
        ``[rows, columns]`` (radiological: column 0 is the patient's right)."""
        si, sj, _ = self.spacing
        rows, columns = np.mgrid[0:self.rows, 0:self.columns].astype(np.float64)
        i = self.i_range[1] + 0.5 - (columns + 0.5) * self.pixel_mm / si
        j = self.j_range[1] + 0.5 - (rows + 0.5) * self.pixel_mm / sj
        return i, j

    def pixel_of(self, i: float, j: float) -> tuple[float, float]:
        """``(row, column)`` (continuous, pixel centres at whole numbers) of voxel
        ``(i, j)``: the inverse of :meth:`voxel_coordinates`."""
        si, sj, _ = self.spacing
        column = (self.i_range[1] + 0.5 - i) * si / self.pixel_mm - 0.5
        row = (self.j_range[1] + 0.5 - j) * sj / self.pixel_mm - 0.5
        return row, column

    def superior_mm(self, k: int) -> float:
        """RAS S coordinate (mm) of slice ``k`` at the centre of the tile."""
        i = (self.i_range[0] + self.i_range[1]) / 2.0
        j = (self.j_range[0] + self.j_range[1]) / 2.0
        return float((self.affine @ np.array([i, j, k, 1.0]))[2])


def display_grid(ras: Volume, head: np.ndarray, tile_px: int) -> DisplayGrid:
    """The tile of RAS-ordered ``ras``: the head's in-plane bounding box (``head``: the
    RAS-ordered mask) plus a margin, in square pixels, the longer side ``tile_px``."""
    margin = _MARGIN_VOXELS
    shape = tuple(int(n) for n in ras.shape[:3])
    i0, i1 = _extent(head.sum(axis=(1, 2)).astype(float), _PROFILE_FRACTION)
    j0, j1 = _extent(head.sum(axis=(0, 2)).astype(float), _PROFILE_FRACTION)
    i0, j0 = max(i0 - margin, 0), max(j0 - margin, 0)
    i1, j1 = min(i1 + margin, shape[0] - 1), min(j1 + margin, shape[1] - 1)
    si, sj, _ = np.sqrt((ras.affine[:3, :3] ** 2).sum(axis=0))
    width_mm, height_mm = (i1 - i0 + 1) * si, (j1 - j0 + 1) * sj
    pixel_mm = max(width_mm, height_mm) / float(tile_px)
    return DisplayGrid(ras.affine.copy(), shape, (i0, i1), (j0, j1), pixel_mm,
                       max(1, int(round(height_mm / pixel_mm))),
                       max(1, int(round(width_mm / pixel_mm))))

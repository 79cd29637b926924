"""The one image type that crosses every boundary of LesionSuite.

A :class:`Volume` is a 3D numpy array indexed ``[i, j, k]`` (the file's voxel order, as
nibabel returns it) plus a 4x4 affine that maps voxel indices to RAS world coordinates in
millimetres. Slicer's ``[k, j, i]`` arrays and IJKToRAS matrices are converted only in the
MRML bridge (``LesionSuiteLib``); everything in ``lesion_core`` sees this type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage


@dataclass
class Volume:
    """3D image on a voxel grid placed in RAS (mm) space.

    Attributes:
        array: voxel values, shape ``(I, J, K)``, indexed ``[i, j, k]``.
        affine: 4x4 float64, ``ras_mm = affine @ [i, j, k, 1]``.
        source: where the volume came from (file path), used in error messages.
        meta: free-form facts about acquisition (e.g. ``{"modality": "CT"}``).
    """

    array: np.ndarray
    affine: np.ndarray
    source: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    # ----------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm (length of each affine column)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def orientation(self) -> str:
        """Three-letter code of the nearest axes, e.g. ``"RAS"``, ``"LPS"``, ``"LAS"``."""
        import nibabel.orientations as nio  # not at import: Slicer loads modules without nibabel

        return "".join(nio.aff2axcodes(self.affine))

    @property
    def is_oblique(self) -> bool:
        """True when an axis is rotated away from the nearest RAS axis (direction cosines not 0 or 1)."""
        d = np.abs(self.direction)
        return bool(np.any(np.abs(d.max(axis=0) - 1.0) > 1e-6))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def voxel_to_ras(self, ijk: Sequence[float] | np.ndarray) -> np.ndarray:
        """Map voxel indices (N x 3 or 3,) to RAS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def ras_to_voxel(self, ras: Sequence[float] | np.ndarray) -> np.ndarray:
        """Map RAS mm points (N x 3 or 3,) to continuous voxel indices."""
        ras = np.asarray(ras, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def world_bounds(self) -> np.ndarray:
        """``[[r_min, r_max], [a_min, a_max], [s_min, s_max]]`` of the voxel-centre corners."""
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in self.shape[:3]], indexing="ij"))
        ras = self.voxel_to_ras(corners.reshape(3, -1).T)
        return np.stack([ras.min(axis=0), ras.max(axis=0)], axis=1)

    def with_array(self, array: np.ndarray, **meta) -> "Volume":
        """A new volume on the same grid (e.g. a label map or probability map)."""
        if array.shape[:3] != self.shape[:3]:
            raise ValueError(f"array shape {array.shape} does not match grid {self.shape}")
        return Volume(array, self.affine.copy(), self.source, {**self.meta, **meta})

    # -------------------------------------------------------------- transforms
    def to_ras(self) -> "Volume":
        """Reorder/flip axes (no interpolation) so that i, j, k point nearest to R, A, S."""
        import nibabel.orientations as nio

        ornt = nio.io_orientation(self.affine)
        if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
            return Volume(self.array, self.affine.copy(), self.source, dict(self.meta))
        array = nio.apply_orientation(self.array, ornt)
        affine = self.affine @ nio.inv_ornt_aff(ornt, self.shape[:3])
        return Volume(np.ascontiguousarray(array), affine, self.source, dict(self.meta))

    def resample_to_grid(self, affine: np.ndarray, shape: Sequence[int], order: int = 1,
                         fill: float | None = None) -> "Volume":
        """Sample this volume on another grid (``affine``, ``shape``).

        ``order=1`` (trilinear) for images, ``order=0`` (nearest) for label maps, whose
        dtype is kept. Outside the field of view: ``fill``, default the image minimum.
        Grids whose axes map onto each other (no obliquity between them) are resampled one
        axis at a time, with the same result (:func:`_resample_axis_aligned`).
        """
        affine = np.asarray(affine, dtype=np.float64)
        target_to_source = np.linalg.inv(self.affine) @ affine
        # Snap round-off (e.g. 15.000000000004) so edge voxels are not sampled as outside.
        snapped = np.round(target_to_source)
        near = np.abs(target_to_source - snapped) < 1e-9
        target_to_source[near] = snapped[near]
        is_label = order == 0
        src = self.array if is_label else self.array.astype(np.float32, copy=False)
        cval = float(src.min()) if fill is None else float(fill)
        shape = tuple(int(n) for n in shape)
        axes = _source_axes(target_to_source) if order in (0, 1) and src.ndim == 3 else None
        if axes is not None:
            out = _resample_axis_aligned(src, target_to_source, axes, shape, order, cval)
        else:
            out = ndimage.affine_transform(
                src, target_to_source[:3, :3], offset=target_to_source[:3, 3],
                output_shape=shape, order=order, mode="constant", cval=cval, prefilter=False)
        return Volume(out.astype(self.array.dtype) if is_label else out, affine,
                      self.source, dict(self.meta))

    def resample_to_spacing(self, spacing: float | Sequence[float], order: int = 1) -> "Volume":
        """Resample to a new voxel size (mm), keeping axis directions and field of view."""
        new_spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
        extent = np.asarray(self.shape[:3]) * self.spacing
        shape = np.maximum(np.round(extent / new_spacing).astype(int), 1)
        # Keep the outer edge of the field of view where it was: the first voxel centre
        # moves by half the change of voxel size along each axis.
        shift = (new_spacing - self.spacing) / 2.0
        affine = np.eye(4)
        affine[:3, :3] = self.direction * new_spacing
        affine[:3, 3] = self.origin + self.direction @ shift
        return self.resample_to_grid(affine, shape, order=order)

    def crop(self, start: Sequence[int], stop: Sequence[int], fill: float = 0) -> "Volume":
        """Sub-grid ``[start, stop)`` in voxels; parts outside the image are padded with ``fill``.

        Negative ``start`` or ``stop`` beyond the shape pad, so this is also the pad helper.
        """
        start = np.asarray(start, dtype=int)
        stop = np.asarray(stop, dtype=int)
        if np.any(stop <= start):
            raise ValueError(f"empty crop {start.tolist()}..{stop.tolist()}")
        out = np.full(tuple(stop - start) + self.shape[3:], fill, dtype=self.array.dtype)
        src_lo = np.maximum(start, 0)
        src_hi = np.minimum(stop, self.shape[:3])
        if np.all(src_hi > src_lo):
            dst_lo = src_lo - start
            dst_hi = dst_lo + (src_hi - src_lo)
            out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = \
                self.array[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
        affine = self.affine.copy()
        affine[:3, 3] = self.voxel_to_ras(start)
        return Volume(out, affine, self.source, dict(self.meta))

    def crop_or_pad_centered(self, shape: Sequence[int], fill: float = 0) -> "Volume":
        """Crop or pad symmetrically about the grid centre to ``shape``."""
        shape = np.asarray(shape, dtype=int)
        start = (np.asarray(self.shape[:3]) - shape) // 2
        return self.crop(start, start + shape, fill=fill)


def _source_axes(target_to_source: np.ndarray) -> list[int] | None:
    """For each source axis, the one target axis its coordinate depends on, when the 3x3
    part of ``target_to_source`` has exactly one non-zero per row and column (the grids
    differ by an axis permutation, flips, scaling and a shift); else None (oblique)."""
    nonzero = np.asarray(target_to_source)[:3, :3] != 0
    if not (np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1)):
        return None
    return [int(np.argmax(row)) for row in nonzero]


#: Output samples per slab of :func:`_resample_axis_aligned` (order 1): its float64
#: intermediates then stay a few MB, in cache, instead of several times the output.
_SLAB_SAMPLES = 1 << 18


def _resample_axis_aligned(src: np.ndarray, target_to_source: np.ndarray, axes: list[int],
                           shape: tuple[int, int, int], order: int, cval: float) -> np.ndarray:
    """What ``ndimage.affine_transform(src, ..., mode="constant", prefilter=False)`` gives
    for an axis-aligned ``target_to_source`` (``axes``: its :func:`_source_axes`) and
    ``order`` 0 or 1,
    computed one source axis at a time (three 1-D interpolations instead of a 3D one per
    voxel; several times faster on a head).

    The coordinates are affine_transform's own float64 arithmetic (shift + index * scale),
    a sample is inside for coordinates in ``[0, n - 1]`` (``cval`` elsewhere: constant mode
    does not interpolate beyond the edge voxels), nearest is ``floor(c + 0.5)`` and the
    linear weights are ``1 - t`` and ``1 - (1 - t)``, as scipy computes them, so order 0
    gives the same voxels exactly and order 1 the same values up to the float64 rounding
    of the sum (far below float32 resolution). Returns an array of ``shape``, float32 for
    order 1 and ``src``'s dtype for order 0.

    With ``cval`` 0, only the samples that read a non-zero source voxel are computed: the
    others are 0 either way (a sparse map, e.g. a mask or a CAM, is cheap to resample).
    Order 1 runs in slabs along the first source axis (:data:`_SLAB_SAMPLES`); each sample
    gets the same float64 operations in the same order as on the whole array.
    """
    dtype = np.float32 if order == 1 else src.dtype
    support = None
    if cval == 0 and not np.signbit(cval):
        support = nonzero_box(src)
        if support is None:  # all zero
            return np.full(shape, cval, dtype)
    coords, kept = [], []
    for h, p in enumerate(axes):
        coord = target_to_source[h, 3] + np.arange(shape[p]) * target_to_source[h, p]
        inside = (coord >= 0) & (coord <= src.shape[h] - 1)
        if support is not None:
            # Samples whose voxels (nearest, or the pair below and above) are all outside
            # the non-zero box along this axis are 0.
            low = np.floor(coord + (0.5 if order == 0 else 0.0))
            inside &= (low >= support[h].start - (order == 1)) & (low < support[h].stop)
        inside = np.flatnonzero(inside)
        if not len(inside):
            return np.full(shape, cval, dtype)
        # The coordinate is monotonic in the index, so the samples inside are one run.
        kept.append(slice(int(inside[0]), int(inside[-1]) + 1))
        coords.append(coord[inside])
    low = [np.floor(c + (0.5 if order == 0 else 0.0)).astype(np.intp) for c in coords]
    # Only the source voxels that are sampled (a small patch reads a small box).
    box = tuple(slice(int(i.min()), min(int(i.max()) + 2, n)) for i, n in zip(low, src.shape))
    index = [i - b.start for i, b in zip(low, box)]
    out = np.full(shape, cval, dtype)
    # Source axis h runs along target axis axes[h]: the part of ``out`` that is sampled,
    # with its axes in source order.
    sampled = out[tuple(kept[axes.index(p)] for p in range(3))].transpose(axes)
    if order == 0:
        sampled[...] = src[box][np.ix_(*index)]
        return out
    # np.take copies a strided array whole on every call: once here, not once per slab.
    values = np.ascontiguousarray(src[box])
    weights = [1.0 - (c - np.floor(c)) for c in coords]
    upper = [np.minimum(i + 1, n - 1) for i, n in zip(index, values.shape)]  # weight 0 at the last voxel
    rows = max(1, _SLAB_SAMPLES // max(1, sampled.shape[1] * sampled.shape[2]))
    for start in range(0, sampled.shape[0], rows):
        part = slice(start, start + rows)
        slab = _linear_pass(values, index[0][part], upper[0][part], weights[0][part], 0)
        for h in (1, 2):
            slab = _linear_pass(slab, index[h], upper[h], weights[h], h)
        sampled[part] = slab
    return out


def nonzero_box(src: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of the voxels of ``src`` that are not ``+0`` (a ``-0.0`` counts as
    non-zero, so the zeros outside resample to the same bits as ``cval``); None when
    there is none."""
    nonzero = src != 0
    if src.dtype.kind == "f":
        nonzero |= np.signbit(src)
    box = []
    for axis in range(3):
        hit = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        if not len(hit):
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _linear_pass(values: np.ndarray, lower: np.ndarray, upper: np.ndarray, w0: np.ndarray,
                 axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` in float64: ``values[lower] * w0 +
    values[upper] * (1 - w0)``, one sample per entry of ``lower``."""
    before = [1] * values.ndim
    before[axis] = len(w0)
    w0 = w0.reshape(before)
    below = np.multiply(np.take(values, lower, axis=axis), w0, dtype=np.float64)
    above = np.multiply(np.take(values, upper, axis=axis), 1.0 - w0, dtype=np.float64)
    return np.add(below, above, out=below)

"""Head CT (HU) -> a stack of windowed axial slices, and back to the CT's own grid.

Steps (:func:`preprocess`):

1. **checks** (:func:`check_ct`): a scout/localizer (a projection, not a cross-section) is
   refused first, then the generic checks of :func:`lesion_core.validation.validate_image`
   with the CT-in-HU modality check (MR and unrescaled CT are refused there), then fewer
   than ``grid.min_slices`` axial slices. Each raises one error naming the file and the fix;
2. **working grid** (:func:`working_grid`): the CT's axes reordered and flipped to the
   nearest R, A, S (``Volume.to_ras``; an oblique or tilted grid keeps its tilt), so the
   third axis is the axial slice axis. With ``grid.slice_mm=None`` the working slices are
   the CT's own slices (same planes, same count), so slice labels map one to one;
   in-plane the grid has ``grid.size`` pixels of ``grid.pixel_mm``, centred on the
   centroid of the head (voxels above ``grid.head_hu``);
3. **resampling**: Gaussian anti-aliasing along axes finer than the working grid, then
   trilinear sampling; outside the CT's field of view is air (-1024 HU);
4. **windows**: each :class:`~lesion_core.ich.config.Window` maps HU linearly to 0..1
   (clipped) and becomes one channel;
5. **intracranial mask**: bone above ``grid.skull_hu``, its holes filled slice by slice
   and in 3D, minus the bone (used to confine refinement to the inside of the skull);
6. **HU calibration** (:func:`brain_hu_offset`): with ``grid.brain_hu`` set, every HU is
   moved by one offset that puts the median of the intracranial soft tissue there.

Array layout: the stack is ``[S, C, H, W]``: ``S`` axial slices inferior to superior,
``H`` along R, ``W`` along A; ``stack[s, :, h, w]`` is working voxel ``[h, w, s]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..baselines.ich_threshold import axial_axis
from ..baselines.masks import fill_holes_slicewise
from ..errors import InvalidImageError
from ..training.cache import cached_arrays
from ..validation import Modality, validate_image
from ..volume import Volume
from .config import ICHConfig, SliceGrid, Window

#: Words that mark a planning projection image in DICOM descriptions (any vendor).
SCOUT_WORDS = ("scout", "localizer", "localiser", "topogram", "surview", "scanogram")
#: HU of air, used outside the CT's field of view.
AIR_HU = -1024.0


def _refuse_scout(volume: Volume) -> None:
    described = " ".join(str(volume.meta.get(k, "")) for k in
                         ("image_type", "series_description", "protocol_name")).lower()
    columns = volume.affine[:3, :3]
    thin = [a for a in range(min(volume.array.ndim, 3)) if volume.array.shape[a] == 1
            and np.linalg.norm(columns[:, a]) > 0]
    # One voxel thick across an axis that is not superior-inferior: the picture plane
    # contains the S axis, i.e. a frontal or lateral projection (a scout), not an axial slice.
    projected = volume.array.ndim >= 3 and any(
        int(np.argmax(np.abs(columns[:, a]))) != 2 for a in thin)
    if any(w in described for w in SCOUT_WORDS) or projected:
        raise InvalidImageError(
            "this is a scout (localizer/topogram) image, a projection radiograph, not a "
            "cross-sectional CT", "select the axial head CT series itself (the scan, not "
            "the planning image)", volume.source)


def check_ct(volume: Volume, grid: SliceGrid = SliceGrid()) -> Volume:
    """Refuse what the ICH model cannot read (see step 1); returns the CT as 3D."""
    _refuse_scout(volume)
    volume = validate_image(volume, Modality.CT)
    n = volume.shape[axial_axis(volume)]
    if n < grid.min_slices:
        raise InvalidImageError(
            f"the CT has {n} axial slice(s); at least {grid.min_slices} contiguous slices "
            "are needed (the classifier reads each slice with its neighbours)",
            "give the whole axial head CT series", volume.source)
    return volume


def window_channels(hu: np.ndarray | torch.Tensor, windows: Sequence[Window]) -> torch.Tensor:
    """HU ``[S, H, W]`` -> ``float32`` tensor ``[S, C, H, W]`` in 0..1, one channel per
    window (torch, so training can window HU it has just randomized)."""
    hu = torch.as_tensor(hu, dtype=torch.float32)
    return torch.stack([((hu - (w.center_hu - w.width_hu / 2)) / w.width_hu).clamp(0.0, 1.0)
                        for w in windows], dim=1)


def working_grid(ct: Volume, grid: SliceGrid = SliceGrid()) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(4x4 voxel-to-RAS affine, shape ``(size, size, S)``) of the working grid (step 2)."""
    ras = ct.to_ras()
    spacing, n_axial = ras.spacing, ras.shape[2]
    head = np.asarray(ras.array) > grid.head_hu
    centre = _centre_of_mass(head) if head.any() else (np.asarray(ras.shape[:3]) - 1) / 2.0
    if grid.slice_mm is not None and spacing[2] * 1.5 <= grid.slice_mm:
        thickness = float(grid.slice_mm)
        n_slices = max(int(round(n_axial * spacing[2] / thickness)), 1)
        first = (thickness / spacing[2] - 1.0) / 2.0  # slab edges where the CT's edges were
    else:
        thickness, n_slices, first = float(spacing[2]), int(n_axial), 0.0
    half = (grid.size - 1) / 2.0 * grid.pixel_mm
    start = [centre[0] - half / spacing[0], centre[1] - half / spacing[1], first]
    affine = np.eye(4)
    affine[:3, :3] = ras.direction * np.array([grid.pixel_mm, grid.pixel_mm, thickness])
    affine[:3, 3] = ras.voxel_to_ras(start)
    return affine, (grid.size, grid.size, n_slices)


def _centre_of_mass(mask: np.ndarray) -> np.ndarray:
    """Centre of mass (voxels) of a non-empty boolean 3D mask from its marginal counts: the
    value of ``ndimage.center_of_mass`` (integer sums either way, exact in float64), without
    its coordinate grids (on a 1 mm head 0.02 s instead of 0.35 s)."""
    total = int(np.count_nonzero(mask))
    marginals = (mask.sum(axis=(1, 2)), mask.sum(axis=(0, 2)), mask.sum(axis=(0, 1)))
    return np.array([int(np.dot(np.arange(len(m), dtype=np.int64), m)) / total for m in marginals])


def _antialiased(volume: Volume, target_mm: np.ndarray) -> Volume:
    """Gaussian along each axis finer than the target (FWHM = quadrature difference)."""
    sigma = np.sqrt(np.maximum(target_mm ** 2 - volume.spacing ** 2, 0.0)) / 2.3548 / volume.spacing
    data = np.asarray(volume.array, dtype=np.float32)
    if np.any(sigma > 0.2):
        data = ndimage.gaussian_filter(data, np.where(sigma > 0.2, sigma, 0.0))
    return volume.with_array(data)


@dataclass
class SliceStack:
    """One CT on the working grid.

    Attributes:
        windows: the display windows, one network input channel each.
        hu: HU on the working grid, ``float32 [S, H, W]``.
        intracranial: inside the skull, ``bool [S, H, W]``.
        affine: voxel-to-RAS (mm) of the working grid array ``[H, W, S]``.
        input_affine, input_shape: the CT's own grid.
        input_axis: the CT's axial array axis (0, 1 or 2).
        input_to_working: ``int [n_in]``, the working slice nearest each CT axial slice.
        source: the CT's file name, for messages.
        hu_offset: what step 6 added to the stored HU (0 when off).
    """

    windows: tuple[Window, ...]
    hu: np.ndarray
    intracranial: np.ndarray
    affine: np.ndarray
    input_affine: np.ndarray
    input_shape: tuple[int, int, int]
    input_axis: int
    input_to_working: np.ndarray
    source: str | None = None
    hu_offset: float = 0.0

    @property
    def image(self) -> torch.Tensor:
        """Windowed slices, ``float32 [S, C, H, W]`` in 0..1, computed from :attr:`hu` on
        each call: a training cohort keeps only the HU in memory (the channels would
        triple it); index :meth:`windowed` for a few slices."""
        return window_channels(self.hu, self.windows)

    def windowed(self, index: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Slices ``index`` windowed, ``float32 [N, C, H, W]``."""
        return window_channels(self.hu[np.asarray(index, np.int64)], self.windows)

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size (mm) in stack order ``(slice, H, W)``."""
        s = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return np.array([s[2], s[0], s[1]])

    def grid_volume(self, array: np.ndarray) -> Volume:
        """A stack-ordered array ``[S, H, W]`` as a working-grid :class:`Volume`."""
        return Volume(np.moveaxis(np.asarray(array), 0, 2), self.affine.copy(), self.source)

    def to_input_grid(self, array: np.ndarray | torch.Tensor, order: int = 1) -> Volume:
        """``[S, H, W]`` -> the CT's own grid (``order=0``: labels, dtype kept; 1: maps).
        Outside the working field of view: 0."""
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        if np.shape(array) != tuple(self.hu.shape):
            raise ValueError(f"array shape {np.shape(array)} is not the stack {self.hu.shape}")
        return self.grid_volume(array).resample_to_grid(self.input_affine, self.input_shape,
                                                        order=order, fill=0)

    def from_input_grid(self, volume: Volume, order: int = 0) -> np.ndarray:
        """Any volume in the CT's world (e.g. a mask) sampled on the stack, ``[S, H, W]``."""
        shape = (self.hu.shape[1], self.hu.shape[2], self.hu.shape[0])
        return np.moveaxis(volume.resample_to_grid(self.affine, shape, order=order, fill=0).array, 2, 0)

    def per_input_slice(self, values: np.ndarray) -> np.ndarray:
        """Per-working-slice values ``[S, ...]`` -> per CT axial slice ``[n_in, ...]``."""
        return np.asarray(values)[self.input_to_working]

    def slice_targets(self, labels: Mapping[int, Sequence[float | None]], n_classes: int) -> np.ndarray:
        """CT slice labels ``{input index: [value or None per class]}`` -> ``float32 [S, K]``,
        ``NaN`` where unknown. A working slice is positive when any CT slice in it is,
        negative when all of them are known negatives."""
        n_in = len(self.input_to_working)
        bad = [k for k in labels if not 0 <= int(k) < n_in]
        if bad:
            raise InvalidImageError(f"slice labels name slice {bad[0]}, but the CT has {n_in} "
                                    "axial slices", "number slices 0..n-1 along the axial axis "
                                    "in the file's voxel order", self.source)
        positive = np.zeros((self.n_slices, n_classes), bool)
        known = np.zeros((self.n_slices, n_classes), np.int64)
        members = np.bincount(self.input_to_working, minlength=self.n_slices)[:, None]
        for k, row in labels.items():
            s = self.input_to_working[int(k)]
            for c, value in enumerate(row):
                if value is not None and not np.isnan(value):
                    known[s, c] += 1
                    positive[s, c] |= value >= 0.5
        out = np.full((self.n_slices, n_classes), np.nan, np.float32)
        out[known >= members] = 0.0
        out[positive] = 1.0
        return out


def preprocess(ct: Volume, config: ICHConfig = ICHConfig()) -> SliceStack:
    """A head CT in HU (any orientation) -> :class:`SliceStack` (steps in the module notes)."""
    return checked_stack(check_ct(ct, config.grid), config)


def checked_stack(ct: Volume, config: ICHConfig = ICHConfig()) -> SliceStack:
    """:func:`preprocess` of a CT that :func:`check_ct` has returned (its checks read
    the whole image: a caller that has run them need not run them twice)."""
    affine, shape = working_grid(ct, config.grid)
    target_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ras = ct.to_ras()
    hu_grid = _antialiased(ras, target_mm).resample_to_grid(affine, shape, order=1, fill=AIR_HU)
    hu = np.ascontiguousarray(np.moveaxis(hu_grid.array.astype(np.float32), 2, 0))
    inside = intracranial_mask(hu, config.grid.skull_hu, axial_axis=0)
    offset = brain_hu_offset(hu, inside, config.grid)
    hu += offset
    # The CT slice index of each working slice centre, then for each CT slice the nearest
    # working slice (one to one when the CT's slices are kept).
    axis = axial_axis(ct)
    centres = np.stack([np.full(shape[2], (shape[0] - 1) / 2), np.full(shape[2], (shape[1] - 1) / 2),
                        np.arange(shape[2])], axis=1)
    ras_mm = centres @ affine[:3, :3].T + affine[:3, 3]
    working_pos = ct.ras_to_voxel(ras_mm)[:, axis]
    input_to_working = np.abs(np.arange(ct.shape[axis])[:, None] - working_pos[None]).argmin(axis=1)
    return SliceStack(tuple(config.windows), hu, inside, affine, ct.affine.copy(), tuple(int(n) for n in ct.shape[:3]),
                      axis, input_to_working.astype(np.int64), ct.source, offset)


def intracranial_mask(hu: np.ndarray, skull_hu: float, axial_axis: int) -> np.ndarray:
    """Inside the skull (bool, ``hu``'s shape): holes of the bone mask ``hu > skull_hu``
    (:func:`inside_skull`)."""
    return inside_skull(hu > skull_hu, axial_axis)


def inside_skull(skull: np.ndarray, axial_axis: int) -> np.ndarray:
    """Holes of the bone mask ``skull``, filled per axial slice (a skull open at the
    foramen magnum still closes in-plane; holes in 3D are holes of their slices too),
    bone out."""
    return fill_holes_slicewise(skull, axial_axis) & ~skull


def brain_hu_offset(hu: np.ndarray, intracranial: np.ndarray, grid: SliceGrid) -> float:
    """HU to add so that the median intracranial soft tissue of ``hu`` is
    ``grid.brain_hu`` (0 when that is ``None`` or no voxel qualifies)."""
    if grid.brain_hu is None:
        return 0.0
    lo, hi = grid.soft_tissue_hu
    soft = hu[intracranial & (hu > lo) & (hu < hi)]
    return float(grid.brain_hu - np.median(soft)) if soft.size else 0.0


#: Bump when :func:`preprocess` computes something else, so that cached stacks of the
#: older code are never read (:func:`cached_stack`).
STACK_VERSION = 2


def stack_arrays(stack: SliceStack) -> dict[str, np.ndarray]:
    """What a stack is made of, as plain arrays (the windowed image is not stored: it is
    recomputed from the HU, so a cache entry serves any windows)."""
    return {"hu": stack.hu, "intracranial": stack.intracranial, "affine": stack.affine,
            "input_affine": stack.input_affine, "input_shape": np.asarray(stack.input_shape),
            "input_axis": np.asarray(stack.input_axis),
            "input_to_working": stack.input_to_working, "hu_offset": np.asarray(stack.hu_offset)}


def stack_from_arrays(arrays: Mapping[str, np.ndarray], windows: Sequence[Window],
                      source: str | None = None) -> SliceStack:
    """Inverse of :func:`stack_arrays`, windowed with ``windows``."""
    hu = np.asarray(arrays["hu"], np.float32)
    return SliceStack(tuple(windows), hu, np.asarray(arrays["intracranial"], bool),
                      np.asarray(arrays["affine"], np.float64),
                      np.asarray(arrays["input_affine"], np.float64),
                      tuple(int(n) for n in arrays["input_shape"]), int(arrays["input_axis"]),
                      np.asarray(arrays["input_to_working"], np.int64), source,
                      float(arrays["hu_offset"]))


def cached_stack(path: str | Path, read: Callable[[str], Volume], config: ICHConfig = ICHConfig(),
                 cache: str | Path | None = None) -> SliceStack:
    """The stack of the CT file ``path``: from the array cache folder ``cache`` when it
    holds an entry for this file (same name, size and modification time) and grid, else
    ``read(path)`` preprocessed (and stored there). ``cache=None``: always preprocessed."""
    if cache is None:
        return preprocess(read(str(path)), config)
    arrays = cached_arrays(cache, ("ich-stack", STACK_VERSION, Path(path), config.grid),
                           lambda: stack_arrays(preprocess(read(str(path)), config)))
    return stack_from_arrays(arrays, config.windows, str(path))

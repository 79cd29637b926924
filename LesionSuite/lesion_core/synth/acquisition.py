"""Acquisition of a rendered subject: bias field, noise, resolution and orientation.

The rendered image lives on the subject's isotropic RAS grid. Acquisition turns it into
what a scanner would store: a smooth multiplicative bias field (MR), Rician or Gaussian
(MR) or Gaussian (CT) noise, thick slices averaged over their slice profile, a voxel order
and orientation (RAS, LPS, LAS or oblique, optionally tilted), a field of view that may
cut off the top or bottom of the head, an arbitrary intensity scale (MR) and a HU
calibration offset (CT). Label maps are carried onto the same acquired grid, so they are
cut and tilted with the image:

- CT: by majority. Each label value's share of every acquired voxel is computed with the
  image's own slice profile (the binary map blurred as the image is, then sampled
  linearly), and a voxel takes the value that fills at least half of it. The label then
  follows the lesion's own extent at the acquired resolution: a thick slice that is
  mostly bone or brain around a thin haematoma is not labelled blood.
- MR: by nearest neighbour. Microbleeds are often smaller than a thick slice, so a
  majority rule would erase them; the label marks the voxel at the lesion's centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..volume import Volume, nonzero_box

ORIENTATIONS = ("RAS", "LPS", "LAS", "oblique")
NOISE_TYPES = ("rician", "gaussian")


@dataclass(frozen=True)
class AcquisitionConfig:
    """How one image is acquired. Lengths in mm, angles in degrees; ``None`` fields are
    drawn at random (the standard ranges); the fields from ``noise_type`` on default to
    what the standard cohort does (no tilt, no cut, no offset, no cap)."""

    in_plane_mm: float | None = None       # voxel size within the slice
    slice_thickness_mm: float | None = None  # 1 mm = 3D; up to 5-6 mm = 2D thick slices
    slice_axis: int = 2                     # 0 sagittal, 1 coronal, 2 axial slices
    orientation: str | None = None          # one of ORIENTATIONS
    bias_strength: float | None = None      # RMS of log bias field (MR)
    noise_fraction: float | None = None     # noise SD / white-matter signal (MR)
    ct_noise_hu: float | None = None        # noise SD in HU (CT)
    intensity_scale: float | None = None    # MR: stored = signal * scale
    noise_type: str = "rician"              # MR: one of NOISE_TYPES (CT noise is Gaussian)
    tilt_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rotation vector of the grid (R, A, S)
    fov_cut_mm: tuple[float, float] = (0.0, 0.0)  # field of view cut at the (inferior, superior) end
    ct_offset_hu: float = 0.0               # CT: calibration offset added to every voxel
    max_voxels: int | None = None           # cap: in-plane voxels grow to keep the grid under it


def _draw(value, rng, low, high):
    return float(value) if value is not None else float(rng.uniform(low, high))


def bias_field(shape, spacing: float, strength: float, rng: np.random.Generator) -> np.ndarray:
    """exp(smooth field), correlation length ~ 60 mm, RMS of the log = ``strength``."""
    coarse = ndimage.gaussian_filter(rng.standard_normal([max(int(n * spacing / 30), 2) + 2 for n in shape]), 1.0)
    coarse *= strength / max(coarse.std(), 1e-6)
    # Trilinear with pixel edges aligned (scipy's zoom with grid_mode=True, edges clamped).
    field = F.interpolate(torch.from_numpy(coarse.astype(np.float32))[None, None], size=tuple(shape),
                          mode="trilinear", align_corners=False)[0, 0]
    return field.exp_().numpy()


def _target_box(data: np.ndarray, source_affine: np.ndarray, affine: np.ndarray, shape
                ) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The box of the target grid (``affine``, ``shape``) that can see a non-zero voxel of
    ``data`` (on ``source_affine``), and the target-to-source voxel matrix; None when there
    is none."""
    found = nonzero_box(data)
    if found is None:
        return None
    target_to_source = np.linalg.inv(source_affine) @ np.asarray(affine, float)
    snapped = np.round(target_to_source)
    near = np.abs(target_to_source - snapped) < 1e-9
    target_to_source[near] = snapped[near]
    # The box grown by one voxel: its corners are first - 1 and last + 1 along each axis.
    corners = np.array([[a, b, c] for a in (found[0].start - 1, found[0].stop)
                        for b in (found[1].start - 1, found[1].stop)
                        for c in (found[2].start - 1, found[2].stop)], float)
    source_to_target = np.linalg.inv(target_to_source)
    target = corners @ source_to_target[:3, :3].T + source_to_target[:3, 3]
    lo = np.clip(np.floor(target.min(0)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(target.max(0)).astype(int) + 2, 0, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)), target_to_source


def _sample_in_box(data: np.ndarray, source_affine: np.ndarray, affine: np.ndarray, shape,
                   order: int) -> np.ndarray:
    """``data`` sampled (``order`` 0 nearest, 1 linear) on the target grid, computed only in
    the part that can see its non-zero voxels (:func:`_target_box`; the rest is 0)."""
    out = np.zeros(tuple(shape), data.dtype)
    found = _target_box(data, source_affine, affine, shape)
    if found is None:
        return out
    box, target_to_source = found
    matrix = target_to_source[:3, :3]
    offset = target_to_source[:3, 3] + matrix @ np.array([b.start for b in box])
    out[box] = ndimage.affine_transform(
        data, matrix, offset=offset, output_shape=tuple(b.stop - b.start for b in box),
        order=order, mode="constant", cval=0, prefilter=False)
    return out


def _resample_labels(label: Volume, affine: np.ndarray, shape) -> Volume:
    """Nearest-neighbour resampling of a label map onto (``affine``, ``shape``)."""
    out = _sample_in_box(label.array, label.affine, affine, shape, order=0)
    return Volume(out, affine, label.source, dict(label.meta))


def _majority_labels(label: Volume, sigma_vox: np.ndarray, affine: np.ndarray, shape) -> Volume:
    """A label map onto (``affine``, ``shape``) by majority (module notes): each value's
    map blurred by the slice profile (``sigma_vox``, source voxels), sampled linearly; a
    voxel takes the value with the largest share when that share is at least 0.5."""
    data = label.array
    out = np.zeros(tuple(shape), data.dtype)
    best = np.zeros(tuple(shape), np.float32)
    for value in np.unique(data[data != 0]):
        share = ndimage.gaussian_filter((data == value).astype(np.float32), sigma_vox)
        share[share < 1e-4] = 0  # far tails: keeps the sampled box to the blurred lesion
        share = _sample_in_box(share, label.affine, affine, shape, order=1)
        take = (share >= 0.5) & (share > best)
        out[take] = value
        np.maximum(best, share, out=best)
    return Volume(out, affine, label.source, dict(label.meta))


def field_of_view(subject_grid: Volume, fov_cut_mm=(0.0, 0.0)) -> np.ndarray:
    """World bounds ``[[r0, r1], [a0, a1], [s0, s1]]`` (mm) of the subject's voxel centres,
    with ``fov_cut_mm`` = (inferior, superior) mm cut off along S."""
    bounds = subject_grid.world_bounds()
    bounds[2] += (fov_cut_mm[0], -fov_cut_mm[1])
    return bounds


def _tilt_matrix(tilt_deg) -> np.ndarray:
    return Rotation.from_rotvec(np.deg2rad(np.asarray(tilt_deg, float))).as_matrix()


def capped_in_plane(bounds: np.ndarray, voxel_mm: float, in_plane: float, thickness: float,
                    slice_axis: int, tilt_deg, max_voxels: int | None) -> float:
    """``in_plane`` (mm), enlarged when the grid over ``bounds`` (world bounds, voxels of
    ``voxel_mm`` at the edges), tilted by ``tilt_deg``, would hold more than ``max_voxels``
    voxels (the random rotation of the "oblique" orientation is not counted)."""
    if max_voxels is None:
        return in_plane
    box = np.abs(_tilt_matrix(tilt_deg).T) @ (np.ptp(bounds, axis=1) + voxel_mm)
    plane = float(np.prod(np.delete(box, slice_axis)))
    return max(in_plane, float(np.sqrt(plane * box[slice_axis] / thickness / max_voxels)))


def acquisition_grid(subject_grid: Volume, in_plane: float, thickness: float, slice_axis: int,
                     orientation: str, rng: np.random.Generator, tilt_deg=(0.0, 0.0, 0.0),
                     fov_cut_mm=(0.0, 0.0)) -> tuple[np.ndarray, tuple[int, ...]]:
    """(affine, shape) of the scanner's grid covering the subject's field of view (less
    ``fov_cut_mm``, see :func:`field_of_view`), its axes turned by the rotation vector
    ``tilt_deg`` (degrees) after the orientation's."""
    spacing = np.full(3, in_plane)
    spacing[slice_axis] = thickness
    if orientation == "oblique":
        axes = Rotation.from_rotvec(rng.uniform(-1, 1, 3) * np.deg2rad(15) / np.sqrt(3)).as_matrix()
    else:
        flips = {"RAS": (1, 1, 1), "LPS": (-1, -1, 1), "LAS": (-1, 1, 1)}[orientation]
        axes = np.diag(np.asarray(flips, float))
    if any(tilt_deg):
        axes = _tilt_matrix(tilt_deg) @ axes
    bounds = field_of_view(subject_grid, fov_cut_mm)
    centre = bounds.mean(axis=1)
    extent = np.ptp(bounds, axis=1) + subject_grid.spacing
    # Rotated grids need a larger box to hold the same field of view.
    box = np.abs(axes.T) @ extent
    shape = np.maximum(np.ceil(box / spacing).astype(int), 1)
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2.0)
    return affine, tuple(int(n) for n in shape)


def acquire(image: Volume, labels: dict[str, Volume], modality: str, config: AcquisitionConfig,
            rng: np.random.Generator) -> tuple[Volume, dict[str, Volume], dict]:
    """Scanner view of a rendered image and its label maps; returns (image, labels, facts)."""
    if config.noise_type not in NOISE_TYPES:
        raise ValueError(f"unknown noise type {config.noise_type!r}; choose from {NOISE_TYPES}")
    is_ct = modality == "CT"
    thickness = _draw(config.slice_thickness_mm, rng, 1.0, 5.0)
    in_plane = _draw(config.in_plane_mm, rng, 0.9, 1.2)
    orientation = config.orientation or str(rng.choice(ORIENTATIONS))
    data = image.array.astype(np.float32)
    spacing = float(image.spacing[0])
    in_plane = capped_in_plane(field_of_view(image, config.fov_cut_mm), spacing, in_plane,
                               thickness, config.slice_axis, config.tilt_deg, config.max_voxels)
    if not is_ct:
        data *= bias_field(data.shape, spacing, _draw(config.bias_strength, rng, 0.05, 0.2), rng)
    # Slice profile: a Gaussian of FWHM = thickness along the slice axis (and the in-plane
    # voxel size across it) before sampling, so thick slices carry partial volume.
    fwhm = np.full(3, in_plane)
    fwhm[config.slice_axis] = thickness
    sigma_vox = np.sqrt(np.maximum(fwhm ** 2 - spacing ** 2, 0)) / (2.3548 * spacing)
    smoothed = image.with_array(ndimage.gaussian_filter(data, sigma_vox))
    affine, shape = acquisition_grid(image, in_plane, thickness, config.slice_axis, orientation, rng,
                                     config.tilt_deg, config.fov_cut_mm)
    acquired = smoothed.resample_to_grid(affine, shape, order=1,
                                         fill=-1000.0 if is_ct else 0.0).array
    # Noise: float64 standard normals, as drawn by earlier versions (same random stream).
    if is_ct:
        sd = _draw(config.ct_noise_hu, rng, 3.0, 6.0)
        noise = rng.standard_normal(acquired.shape).astype(np.float32)
        noise *= sd
        acquired = np.round(noise + acquired + config.ct_offset_hu).astype(np.int16)
    else:
        sd = _draw(config.noise_fraction, rng, 0.01, 0.05)
        real = rng.standard_normal(acquired.shape).astype(np.float32)
        real *= sd
        real += acquired
        if config.noise_type == "gaussian":  # e.g. a real-valued reconstruction, clipped at 0
            magnitude = np.maximum(real, 0, out=real)
        else:
            imaginary = rng.standard_normal(acquired.shape).astype(np.float32)
            imaginary *= sd
            magnitude = np.hypot(real, imaginary, out=real)  # Rician
        magnitude *= _draw(config.intensity_scale, rng, 200.0, 2000.0)
        acquired = magnitude
    out_labels = {name: (_majority_labels(label, sigma_vox, affine, shape) if is_ct else
                         _resample_labels(label, affine, shape))
                  for name, label in labels.items()}
    facts = {"modality": modality, "orientation": orientation, "in_plane_mm": in_plane,
             "slice_thickness_mm": thickness, "slice_axis": config.slice_axis}
    return Volume(acquired, affine, meta={"modality": "CT" if is_ct else "MR",
                                          "sequence": modality}), out_labels, facts

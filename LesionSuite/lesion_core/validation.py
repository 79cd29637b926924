"""Checks every entry point runs on an input image before any model sees it.

Each check raises an :class:`~lesion_core.errors.InvalidImageError` (or
:class:`~lesion_core.errors.ModalityError`) whose message names the file, the problem and
the fix, so that a user never meets a traceback from deep inside torch.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .errors import InvalidImageError, ModalityError
from .volume import Volume

#: Plausible voxel sizes of clinical brain images, in mm.
MIN_SPACING_MM, MAX_SPACING_MM = 0.1, 10.0
#: Largest intensity magnitude accepted. Processing is in float32 (largest 3.4e38), and
#: normalisation squares and sums intensities; no scanner or converter writes values
#: anywhere near this, so larger ones are a damaged or mis-scaled file.
MAX_ABS_INTENSITY = 1e30


class Modality(str, Enum):
    """What a task expects; MR contrasts share intensity rules (arbitrary units, >= 0)."""

    CT = "CT"
    MR = "MR"


def as_3d(volume: Volume) -> Volume:
    """Drop trailing singleton axes of a 4D image (e.g. ``X x Y x Z x 1``); refuse others."""
    array = volume.array
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        kind = "2D" if array.ndim < 3 else f"{array.ndim}D (shape {array.shape})"
        fix = ("give a 3D volume (a single slice cannot be analysed)" if array.ndim < 3 else
               "extract one 3D volume first (e.g. the first time point)")
        raise InvalidImageError(f"the image is {kind}; a 3D volume is needed", fix, volume.source)
    return volume if array is volume.array else Volume(array, volume.affine, volume.source,
                                                       dict(volume.meta))


def validate_image(volume: Volume, modality: Modality | None = None,
                   min_slices: int = 2) -> Volume:
    """Run every generic check and, if ``modality`` is given, the modality check.

    Returns the volume as 3D (a trailing singleton axis dropped); raises on bad input.
    """
    volume = as_3d(volume)
    source, array = volume.source, volume.array
    if array.size == 0:
        raise InvalidImageError("the image has no voxels", "check the export", source)
    if min(array.shape) < min_slices:
        raise InvalidImageError(
            f"the image has shape {array.shape}: a single slice, not a volume",
            "give the whole 3D series (all slices)", source)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == bool):
        raise InvalidImageError(f"voxel type {array.dtype} is not a scalar intensity",
                                "convert colour or complex images to one scalar channel", source)
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InvalidImageError(
                f"{bad:,} voxels are NaN or infinite",
                "fix the conversion that produced the file (or replace them with 0)", source)
    lo, hi = float(array.min()), float(array.max())
    if max(abs(lo), abs(hi)) > MAX_ABS_INTENSITY:
        raise InvalidImageError(
            f"intensities reach {lo if abs(lo) > abs(hi) else hi:g}; processing in float32 "
            f"needs magnitudes below {MAX_ABS_INTENSITY:g}",
            "fix the conversion or its scaling (NIfTI scl_slope, DICOM RescaleSlope) that "
            "produced the file", source)
    if lo == hi:
        raise InvalidImageError(f"the image is constant (every voxel is {lo:g})",
                                "the export or conversion lost the image data; re-export it", source)
    _check_geometry(volume)
    if modality is not None:
        check_modality(volume, modality)
    return volume


def _check_geometry(volume: Volume) -> None:
    matrix = volume.affine[:3, :3]
    if not np.all(np.isfinite(volume.affine)) or abs(np.linalg.det(matrix)) < 1e-9:
        raise InvalidImageError(
            "the voxel-to-world matrix is singular or not finite",
            "fix the header (orientation and spacing) with the scanner export or a converter",
            volume.source)
    spacing = volume.spacing
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise InvalidImageError(
            f"voxel spacing {np.round(spacing, 4).tolist()} mm is outside "
            f"{MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm",
            "the header's spacing is wrong (units in m or um?); fix it in the converter",
            volume.source)


def guess_modality(volume: Volume) -> str:
    """``"CT"`` (Hounsfield units), ``"CT-unscaled"``, ``"MR"`` or ``"unknown"``.

    CT in HU has air near -1000 around the head (MR has nothing below -500) and soft
    tissue above 0. CT stored without
    rescaling has air at 0 and water near +1000 with a long bone tail. MR has no
    meaningful negative values. A DICOM modality tag, when present, is believed first.
    """
    tagged = str(volume.meta.get("modality", "")).upper()
    sample = _spread_sample(np.asarray(volume.array), 200_000).astype(np.float32)
    p01, p50, p99 = np.percentile(sample, [1, 50, 99.5])
    if p01 <= -500 and p99 >= 0:
        return "CT"
    if tagged == "CT" or (p01 >= 0 and 700 <= np.percentile(sample, 90) and p99 >= 1300
                          and _near_water_peak(sample)):
        return "CT-unscaled"
    if tagged == "MR" or p01 >= -1e-3 * max(abs(p99), 1):
        return "MR"
    return "unknown"


def _spread_sample(array: np.ndarray, count: int) -> np.ndarray:
    """About ``count`` voxels spread evenly over the whole array. Not every n-th voxel of
    the flattened array: when n divides the last axis's length, that is one slice (a CT of
    46 axial slices, 9 M voxels, was judged on its lowest slice, all head, and refused)."""
    flat = array.ravel()
    if flat.size <= count:
        return flat
    return flat[np.linspace(0, flat.size - 1, count).astype(np.intp)]


def _near_water_peak(sample: np.ndarray) -> bool:
    """Raw CT (HU + 1024) puts brain and soft tissue in a peak at about 1000-1100."""
    return float(np.mean((sample > 980) & (sample < 1120))) > 0.15


def check_modality(volume: Volume, expected: Modality) -> None:
    """Refuse an image whose intensities contradict the modality the model needs."""
    found = guess_modality(volume)
    lo, hi = float(volume.array.min()), float(volume.array.max())
    if expected is Modality.CT and found != "CT":
        if found == "CT-unscaled":
            raise ModalityError(
                f"this CT is not in Hounsfield units (values {lo:g} to {hi:g}, no air below "
                "-500)", "apply the DICOM rescale slope/intercept (read the DICOM series "
                "directly) or convert the file to HU", volume.source)
        raise ModalityError(
            f"this does not look like CT in Hounsfield units (values {lo:g} to {hi:g})",
            "give a non-contrast head CT in HU; MR images cannot be used by this model",
            volume.source)
    if expected is Modality.MR and found in ("CT", "CT-unscaled"):
        raise ModalityError(
            f"this looks like CT (values {lo:g} to {hi:g}), but the model needs an MR image",
            "give the MR series the model was trained on (see the model card)", volume.source)

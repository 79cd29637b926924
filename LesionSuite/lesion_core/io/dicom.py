"""Read a DICOM series (a folder, or one file) into a :class:`~lesion_core.volume.Volume`.

DICOM puts pixel ``(row r, column c)`` at ``ImagePositionPatient + c*dc*row_cosine +
r*dr*column_cosine`` (LPS mm), ``PixelSpacing = [dr, dc]`` (``dr``: between rows). The array
is pydicom's ``pixel_array[row, col]`` transposed: shape ``(columns, rows, slices)``, indexed
``[i, j, k]`` (i along the row cosine, j along the column cosine, k along the normal
``row x col``, slices sorted by position). The affine maps voxels to RAS mm (LPS with x, y
negated); voxel ``(0, 0, 0)`` is centred on the first sorted frame's ImagePositionPatient,
the placement nibabel, dcm2niix and Slicer give.

* Gantry tilt gives a sheared affine (k column = step between slice positions), so each
  voxel sits where the scanner put it; ``meta["gantry_tilt_deg"]`` records the angle.
* Gaps, uneven spacing (beyond max(0.01 mm, 1 %)) and several frames at one position are
  refused with a clear error; nothing is interpolated.
* Enhanced multi-frame files are read; legacy multi-frame (NM, US cine) and SEG/RT/SR are not.
* Rescale is per frame: int16/int32 when all slopes and intercepts are integers, else float32.
* A malformed value of a tag the image depends on (NumberOfFrames, RescaleSlope, positions,
  matrix size) is an error naming the file and the tag; a malformed optional tag
  (SliceThickness, SeriesNumber, window) is ignored (:mod:`.dicom_header`).
* The folder search and the choice of a series: :mod:`.dicom_series`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException

from ..errors import UnreadableFileError
from ..volume import Volume
from .dicom_header import (CONVERSION_ERRORS, CONVERT_FIX, PLUGINS_FIX, REEXPORT_FIX,
                           convert_used, is_dicom_file, number, optional_number, quiet_pydicom,
                           read_header)
from .dicom_series import SeriesInfo, choose_series, list_series
from .limits import check_voxel_count
from .reasons import one_line, reason

__all__ = ["SeriesInfo", "list_series", "read_dicom", "is_dicom_file"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Modalities whose objects carry pixel data that is not an image of the patient.
_NOT_IMAGES = {"SEG": "a segmentation", "RTDOSE": "an RT dose grid", "RTSTRUCT": "RT structures",
               "RTPLAN": "an RT plan", "SR": "a structured report", "PR": "a presentation state"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
@dataclass
class _Frame:
    """One 2D image: where it lies and how stored values become real-world values."""
    path: Path
    index: int | None  # frame number in a multi-frame file, None for a single-frame file
    position: np.ndarray  # ImagePositionPatient: LPS mm of the centre of pixel (row 0, col 0)
    orientation: np.ndarray  # ImageOrientationPatient: row cosine, column cosine
    spacing: tuple[float, float]  # PixelSpacing (mm): (between rows, between columns)
    thickness: float | None  # SliceThickness (mm)
    slope: float
    intercept: float
    sop_uid: str = ""


def _floats(value, n: int, what: str, path: Path) -> np.ndarray:
    """The ``n`` numbers of a geometry tag; absent (no 3D geometry) and malformed (damaged
    header) are told apart, since the fixes differ."""
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        raise UnreadableFileError(f"the DICOM image has no usable {what} (a screenshot, "
                                  "secondary capture or scout image without 3D geometry?)",
                                  "select the CT or MR image series itself", source=path)
    # One value (a bare string or number) is one item, never a sequence of characters.
    items = [value] if isinstance(value, (str, bytes, int, float)) else value
    try:
        arr = np.asarray([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = np.zeros(0)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        shown = "\\".join(str(v) for v in items) if arr.size else str(value)
        raise UnreadableFileError(f"the DICOM tag {what} is malformed ({shown[:60]!r}, "
                                  f"not {n} numbers; damaged header)", CONVERT_FIX, source=path)
    return arr


def _frame(path: Path, groups: list, index: int | None, ds: pydicom.Dataset) -> _Frame:
    """Geometry and rescale of one frame: functional groups (per-frame first), then ``ds``."""
    def get(seq: str, key: str):
        try:
            for g in groups:
                items = g.get(seq)
                if items and key in items[0]:
                    return items[0][key].value
            return ds.get(key)
        except CONVERSION_ERRORS as exc:  # nested elements are converted only here
            raise UnreadableFileError(f"the DICOM element {key} ({seq}) is damaged "
                                      f"({reason(exc)})", REEXPORT_FIX, source=path) from exc

    dr, dc = _floats(get("PixelMeasuresSequence", "PixelSpacing"), 2,
                     "PixelSpacing (0028,0030)", path)
    if dr <= 0 or dc <= 0:
        raise UnreadableFileError(f"PixelSpacing {dr} x {dc} mm is not positive (damaged "
                                  "header)", CONVERT_FIX, source=path)
    # SliceThickness only matters for a single slice (its depth); the slice positions give
    # the spacing of a series. A damaged value is dropped, and a lone slice then says that
    # its depth was assumed (meta "slice_spacing_source").
    thick = optional_number(get("PixelMeasuresSequence", "SliceThickness"))
    slope = number(get("PixelValueTransformationSequence", "RescaleSlope"),
                    "RescaleSlope (0028,1053)", path, default=1.0)
    inter = number(get("PixelValueTransformationSequence", "RescaleIntercept"),
                    "RescaleIntercept (0028,1052)", path, default=0.0)
    return _Frame(
        path, index, _floats(get("PlanePositionSequence", "ImagePositionPatient"), 3,
                             "ImagePositionPatient (0020,0032)", path),
        _floats(get("PlaneOrientationSequence", "ImageOrientationPatient"), 6,
                "ImageOrientationPatient (0020,0037)", path), (float(dr), float(dc)),
        thick if thick and thick > 0 else None, float(slope), float(inter),
        str(ds.get("SOPInstanceUID", "")))


def _frames_of(path: Path, ds: pydicom.Dataset) -> list[_Frame]:
    n = number(ds.get("NumberOfFrames"), "NumberOfFrames (0028,0008)", path, default=1,
                integer=True)
    if n < 1:
        raise UnreadableFileError(f"the DICOM tag NumberOfFrames (0028,0008) is {n} (damaged "
                                  "header)", REEXPORT_FIX, source=path)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = [shared[0]] if shared else []
    if "PerFrameFunctionalGroupsSequence" in ds:
        per = ds.PerFrameFunctionalGroupsSequence
        if len(per) != n:
            raise UnreadableFileError(
                f"the multi-frame file has {n} frames but {len(per)} per-frame descriptions "
                "(damaged file)", REEXPORT_FIX, source=path)
        return [_frame(path, [per[f]] + shared, f, ds) for f in range(n)]
    if n > 1:
        raise UnreadableFileError(
            f"this is a {n}-frame DICOM file without per-frame positions "
            f"({one_line(ds.get('Modality', 'unknown'), 16)} legacy multi-frame or cine), "
            "which LesionSuite cannot place in 3D",
            "convert it to NIfTI with dcm2niix and load the NIfTI file",
            source=path)
    return [_frame(path, shared, None, ds)]


def _geometry(frames: list[_Frame], source: Path) -> tuple[list[_Frame], np.ndarray, dict]:
    """Sort frames along the normal and build the voxel-to-LPS affine; refuse gaps etc."""
    iop = frames[0].orientation
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero vector: NaN, refused below
        row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    if not abs(row @ col) <= 1e-3:  # also catches NaN from a zero vector
        raise UnreadableFileError(
            f"ImageOrientationPatient {iop.tolist()} does not hold two perpendicular unit "
            "vectors (damaged header)", CONVERT_FIX, source=source)
    for f in frames:
        if (np.abs(f.orientation - iop).max() > 1e-3
                or not np.allclose(f.spacing, frames[0].spacing, rtol=1e-4, atol=1e-5)):
            raise UnreadableFileError(
                "the series mixes images of different orientation or pixel size "
                f"(e.g. {f.path.name}); it holds more than one stack",
                "export each stack as its own series, or convert it with dcm2niix", source)
    normal = np.cross(row, col)
    frames = sorted(frames, key=lambda f: float(f.position @ normal))
    dr, dc = frames[0].spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 3] = row * dc, col * dr, frames[0].position
    if len(frames) == 1:
        lps[:3, 2] = normal * (frames[0].thickness or 1.0)
        return frames, lps, {"single_slice": True, "slice_spacing_source":
                             "SliceThickness" if frames[0].thickness else "assumed 1.0 mm"}
    depth = np.array([f.position @ normal for f in frames])
    steps = np.diff(depth)
    if steps.min() < 1e-3:
        k = int(np.argmin(steps))
        raise UnreadableFileError(
            f"the series has several images at the same position ({frames[k].path.name}, "
            f"{frames[k + 1].path.name}; {len(frames)} images at {len(np.unique(depth.round(3)))}"
            " positions): several echoes, time points or b-values, or duplicate files",
            "export one 3D volume (one echo / time point) as its own series, or convert with "
            "dcm2niix and pick the volume", source=source)
    tol = max(0.01, 0.01 * float(np.median(steps)))
    pos = np.array([f.position for f in frames])
    step = (pos[-1] - pos[0]) / (len(frames) - 1)
    off_line = np.abs(pos - (pos[0] + np.outer(np.arange(len(frames)), step))).max() > tol
    if steps.max() - steps.min() > tol or off_line:
        raise UnreadableFileError(
            "the series has missing or unevenly spaced slices " + (
                f"(spacing {steps.min():.2f} mm to {steps.max():.2f} mm)"
                if steps.max() - steps.min() > tol else "(positions not on one line)"),
            "export a complete series or convert it with dcm2niix", source=source)
    along = float(step @ normal)
    drift = float(np.linalg.norm(step - along * normal))
    meta = {"slice_spacing_mm": along}
    if drift * (len(frames) - 1) > 0.05 * min(dr, dc):
        lps[:3, 2] = step  # sheared affine: keeps each slice where the scanner put it
        meta["gantry_tilt_deg"] = float(np.degrees(np.arctan2(drift, along)))
    else:
        lps[:3, 2] = normal * along
    return frames, lps, meta


def _pixels(path: Path) -> np.ndarray:
    """Decoded stored values of one file, shape (frames, rows, cols), before rescale."""
    ds = read_header(path, full=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UnreadableFileError("the DICOM file has no pixel data", REEXPORT_FIX, path)
    ts = ds.file_meta.get("TransferSyntaxUID")
    ts_name = getattr(ts, "name", str(ts))
    try:
        arr = ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, EOFError, TypeError, KeyError,
            AttributeError, IndexError, BytesLengthException, struct.error) as exc:
        if "missing" in str(exc) and isinstance(exc, RuntimeError):  # plugin not installed
            problem = f"no decoder is installed for the compressed pixel data ({ts_name})"
            fix = (f"install the decoders with `{PLUGINS_FIX}`, or re-export the series "
                   "uncompressed")
        elif isinstance(exc, NotImplementedError):
            problem = f"the pixel data's compression ({ts_name}) is not supported"
            fix = "re-export the series uncompressed, or convert it with dcm2niix"
        else:
            problem, fix = f"the file is truncated or corrupt ({reason(exc)})", REEXPORT_FIX
        raise UnreadableFileError(problem, fix, source=path) from exc
    if number(ds.get("SamplesPerPixel"), "SamplesPerPixel (0028,0002)", path, default=1,
               integer=True) != 1:
        raise UnreadableFileError(
            f"this is a colour ({one_line(ds.get('PhotometricInterpretation', 'RGB'), 16)}) "
            "image, not a greyscale CT or MR scan", "select the original greyscale series", path)
    return arr[None] if arr.ndim == 2 else arr


def _values(frames: list[_Frame], shape: tuple[int, int]) -> np.ndarray:
    """Rescaled voxels, shape (cols, rows, slices), slices in the order of ``frames``."""
    cache: dict[Path, np.ndarray] = {}
    raw = []
    for f in frames:
        if f.path not in cache:
            cache[f.path] = _pixels(f.path)  # ``raw`` holds views of these arrays anyway
        img = cache[f.path][f.index or 0]
        if img.shape != shape:
            raise UnreadableFileError(f"image size {img.shape[1]} x {img.shape[0]} differs "
                                      f"from the series' {shape[1]} x {shape[0]}",
                                      "export a single stack as its own series", f.path)
        raw.append(img)
    scale = [(f.slope, f.intercept) for f in frames]
    # Extremes of the rescaled values, in float64 (exact enough, and it cannot overflow).
    ends = [(float(r.min()) * s + b, float(r.max()) * s + b) for r, (s, b) in zip(raw, scale)]
    beyond = [f for f, pair in zip(frames, ends) if max(map(abs, pair)) > _FLOAT32_MAX]
    if beyond:  # (NaN stored values are left to the image checks)
        worst = beyond[0]
        raise UnreadableFileError(
            f"RescaleSlope {worst.slope:g} and RescaleIntercept {worst.intercept:g} scale the "
            "stored values beyond any real intensity (damaged header)", CONVERT_FIX, worst.path)
    dtype = np.float32
    if all(float(s).is_integer() and float(b).is_integer() for s, b in scale) and \
            all(np.issubdtype(r.dtype, np.integer) for r in raw):
        lo, hi = min(min(pair) for pair in ends), max(max(pair) for pair in ends)
        for candidate in (np.int16, np.int32):
            if np.iinfo(candidate).min <= lo and hi <= np.iinfo(candidate).max:
                dtype = candidate
                break
    out = np.empty((shape[1], shape[0], len(frames)), dtype=dtype)
    for k, (r, (s, b)) in enumerate(zip(raw, scale)):
        out[:, :, k] = (r.astype(np.float64) * s + b if dtype == np.float32
                        else r.astype(np.int64) * int(s) + int(b)).T
    return out


def read_dicom(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a DICOM series folder (searched recursively) or a single DICOM file.

    ``path``: a folder with one series (or several: ``series_uid`` picks one), a single
    DICOM file (read alone; a single-frame file gives one slice, ``meta["single_slice"]``),
    or a DICOMDIR (its folder is read). Returns a Volume of shape ``(columns, rows,
    slices)`` in real-world units (CT: HU) with a voxel-to-RAS (mm) affine; ``meta`` holds
    modality, UIDs, description, manufacturer, rescale type, window, ``dicom_files`` in
    slice order and ``"source_format": "dicom"``. Raises UnreadableFileError for non-DICOM,
    corrupt or truncated files, missing decoders or geometry, several series without
    ``series_uid``, gaps, duplicate positions and mixed stacks.
    """
    if not str(path).strip():  # Path("") would be the working folder, searched for DICOM
        raise UnreadableFileError("the DICOM path is empty",
                                  "give a DICOM series folder or file")
    path = Path(path)
    with quiet_pydicom():
        return _read_series(path, choose_series(path, series_uid))


def _matrix_size(ds: pydicom.Dataset, path: Path) -> tuple[int, int]:
    """(Rows, Columns) of an image, both positive."""
    rows = number(ds.get("Rows"), "Rows (0028,0010)", path, default=0, integer=True)
    cols = number(ds.get("Columns"), "Columns (0028,0011)", path, default=0, integer=True)
    if rows < 1 or cols < 1:
        raise UnreadableFileError(f"the DICOM image size is {cols} x {rows} pixels (damaged "
                                  "header)", REEXPORT_FIX, source=path)
    return rows, cols


def _read_series(path: Path, members: list) -> Volume:
    """The volume of the chosen (path, header) pairs (see :func:`read_dicom`)."""
    for member_path, ds in members:
        convert_used(ds, member_path)
    ds0 = members[0][1]
    kind = _NOT_IMAGES.get(str(ds0.get("Modality", "")).upper())
    if kind:
        raise UnreadableFileError(f"the DICOM data is {kind} ({ds0.Modality}), not an image",
                                  "select the CT or MR image series", source=path)
    frames = [fr for p, ds in members for fr in _frames_of(p, ds)]
    rows, cols = _matrix_size(ds0, members[0][0])
    check_voxel_count((cols, rows, len(frames)), path)
    frames, lps, geo = _geometry(frames, path)
    array = _values(frames, (rows, cols))
    modality = str(ds0.get("Modality", ""))
    meta = {
        "source_format": "dicom", "modality": modality, "n_files": len(members),
        "series_uid": str(ds0.get("SeriesInstanceUID", "")),
        "study_uid": str(ds0.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", "")),
        "series_description": str(ds0.get("SeriesDescription", "")),
        "manufacturer": str(ds0.get("Manufacturer", "")),
        "rescale_type": str(ds0.get("RescaleType", "HU" if modality == "CT" else "")),
        "slice_thickness_mm": frames[0].thickness, "dicom_files": [str(f.path) for f in frames],
        "sop_instance_uids": [f.sop_uid for f in frames], **geo,
    }
    for key, name in (("WindowCenter", "window_center"), ("WindowWidth", "window_width")):
        value = ds0.get(key)  # display only: the first of several, none when malformed
        value = optional_number(value[0] if isinstance(value, pydicom.multival.MultiValue)
                                 and len(value) else value)
        if value is not None:
            meta[name] = value
    return Volume(array, _LPS_TO_RAS @ lps, str(path), meta)

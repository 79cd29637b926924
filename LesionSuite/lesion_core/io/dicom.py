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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import UnreadableFileError
from ..volume import Volume
from .limits import check_voxel_count

__all__ = ["SeriesInfo", "list_series", "read_dicom", "is_dicom_file"]

_PLUGINS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"
_CONVERT = "export the series again from the PACS or scanner, or convert it with dcm2niix"
_REEXPORT = "copy or export the file again from the PACS or scanner (it may be incomplete)"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Modalities whose objects carry pixel data that is not an image of the patient.
_NOT_IMAGES = {"SEG": "a segmentation", "RTDOSE": "an RT dose grid", "RTSTRUCT": "RT structures",
               "RTPLAN": "an RT plan", "SR": "a structured report", "PR": "a presentation state"}


@dataclass
class SeriesInfo:
    """One series found in a folder; ``n_slices`` counts frames (2D images) in all files."""
    uid: str
    description: str
    modality: str
    number: int | None
    n_slices: int
    files: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        num = f"#{self.number} " if self.number is not None else ""
        return (f"{num}{self.modality or '?'} '{self.description or '(no description)'}' "
                f"UID {self.uid} ({self.n_slices} slice{'s' if self.n_slices != 1 else ''})")


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


def is_dicom_file(path: str | Path) -> bool:
    """Cheap test: 'DICM' after the 128-byte preamble, or a raw little-endian data set."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    # A raw data set (no preamble, no meta) starts with a group 0002 or 0008 element.
    return (len(head) >= 8 and int.from_bytes(head[:2], "little") in (0x0002, 0x0008)
            and int.from_bytes(head[2:4], "little") < 0x0100)


def _read_header(path: Path, full: bool = False) -> pydicom.Dataset:
    """dcmread with our error messages; ``full`` also loads the pixel data."""
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=not full)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError,
            IndexError, OverflowError) as exc:
        raise UnreadableFileError(
            f"the DICOM file is truncated or corrupt ({type(exc).__name__}: {exc})",
            _REEXPORT, source=path) from exc
    if "TransferSyntaxUID" not in (getattr(ds, "file_meta", None) or {}):
        # No file meta header: keep the encoding pydicom guessed from the data set itself.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(
            "1.2.840.10008.1.2" if implicit is not False else
            "1.2.840.10008.1.2.1" if little is not False else "1.2.840.10008.1.2.2")
    return ds


def _is_index(path: Path, ds: pydicom.Dataset | None = None) -> bool:
    """A DICOMDIR (media index): by name, or by its SOP class / directory records."""
    return path.name.upper() == "DICOMDIR" or ds is not None and (
        str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10"
        or "DirectoryRecordSequence" in ds)


def _scan(folder: Path) -> tuple[dict[str, list], list[str]]:
    """Headers of the image files under ``folder`` (recursive) by series UID; read errors."""
    groups, errors = {}, []  # series UID -> [(path, header)]; messages of unreadable files
    for path in sorted(folder.rglob("*")):
        hidden = any(p.startswith(".") for p in path.relative_to(folder).parts)
        if hidden or not path.is_file() or _is_index(path) or not is_dicom_file(path):
            continue
        try:
            ds = _read_header(path)
        except UnreadableFileError as exc:
            errors.append(str(exc))
            continue
        if "Rows" not in ds or "Columns" not in ds:  # DICOMDIR, report, RT plan, or cut short
            if "Image Storage" in str(getattr(ds.get("SOPClassUID"), "name", "")):
                errors.append(f"{path.name} is truncated (it has no image data)")
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "unknown")), []).append((path, ds))
    return groups, errors


def _infos(groups: dict[str, list]) -> list[SeriesInfo]:
    infos = []
    for uid, members in groups.items():
        ds0, num = members[0][1], members[0][1].get("SeriesNumber")
        infos.append(SeriesInfo(
            uid, str(ds0.get("SeriesDescription", "")), str(ds0.get("Modality", "")),
            int(num) if num not in (None, "") else None,
            sum(int(d.get("NumberOfFrames") or 1) for _, d in members), [p for p, _ in members]))
    return sorted(infos, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """All image series under ``folder`` (searched recursively), by series number."""
    return _infos(_scan(Path(folder))[0])


def _floats(value, n: int, what: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise UnreadableFileError(f"the DICOM image has no usable {what} (a screenshot, "
                                  "secondary capture or scout image without 3D geometry?)",
                                  "select the CT or MR image series itself", source=path)
    return arr


def _frame(path: Path, groups: list, index: int | None, ds: pydicom.Dataset) -> _Frame:
    """Geometry and rescale of one frame: functional groups (per-frame first), then ``ds``."""
    def get(seq: str, key: str):
        for g in groups:
            items = g.get(seq)
            if items and key in items[0]:
                return items[0][key].value
        return ds.get(key)

    dr, dc = _floats(get("PixelMeasuresSequence", "PixelSpacing"), 2, "PixelSpacing", path)
    if dr <= 0 or dc <= 0:
        raise UnreadableFileError(f"PixelSpacing {dr} x {dc} mm is not positive (damaged "
                                  "header)", _CONVERT, source=path)
    thick, slope, inter = (get(seq, key) for seq, key in (
        ("PixelMeasuresSequence", "SliceThickness"), ("PixelValueTransformationSequence",
         "RescaleSlope"), ("PixelValueTransformationSequence", "RescaleIntercept")))
    return _Frame(
        path, index, _floats(get("PlanePositionSequence", "ImagePositionPatient"), 3,
                             "ImagePositionPatient (0020,0032)", path),
        _floats(get("PlaneOrientationSequence", "ImageOrientationPatient"), 6,
                "ImageOrientationPatient (0020,0037)", path), (float(dr), float(dc)),
        max(float(thick or 0), 0) or None, float(1 if slope in (None, "") else slope),
        float(inter or 0), str(ds.get("SOPInstanceUID", "")))


def _frames_of(path: Path, ds: pydicom.Dataset) -> list[_Frame]:
    n = int(ds.get("NumberOfFrames") or 1)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = [shared[0]] if shared else []
    if "PerFrameFunctionalGroupsSequence" in ds:
        per = ds.PerFrameFunctionalGroupsSequence
        if len(per) != n:
            raise UnreadableFileError(
                f"the multi-frame file has {n} frames but {len(per)} per-frame descriptions "
                "(damaged file)", _REEXPORT, source=path)
        return [_frame(path, [per[f]] + shared, f, ds) for f in range(n)]
    if n > 1:
        raise UnreadableFileError(
            f"this is a {n}-frame DICOM file without per-frame positions "
            f"({ds.get('Modality', 'unknown')} legacy multi-frame or cine), which LesionSuite "
            "cannot place in 3D", "convert it to NIfTI with dcm2niix and load the NIfTI file",
            source=path)
    return [_frame(path, shared, None, ds)]


def _geometry(frames: list[_Frame], source: Path) -> tuple[list[_Frame], np.ndarray, dict]:
    """Sort frames along the normal and build the voxel-to-LPS affine; refuse gaps etc."""
    iop = frames[0].orientation
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    if not abs(row @ col) <= 1e-3:  # also catches NaN from a zero vector
        raise UnreadableFileError(
            f"ImageOrientationPatient {iop.tolist()} does not hold two perpendicular unit "
            "vectors (damaged header)", _CONVERT, source=source)
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
    ds = _read_header(path, full=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UnreadableFileError("the DICOM file has no pixel data", _REEXPORT, path)
    ts = ds.file_meta.get("TransferSyntaxUID")
    ts_name = getattr(ts, "name", str(ts))
    try:
        arr = ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, EOFError, TypeError, KeyError,
            AttributeError, IndexError) as exc:
        if "missing" in str(exc) and isinstance(exc, RuntimeError):  # plugin not installed
            problem = f"no decoder is installed for the compressed pixel data ({ts_name})"
            fix = f"install the decoders with `{_PLUGINS}`, or re-export the series uncompressed"
        elif isinstance(exc, NotImplementedError):
            problem = f"the pixel data's compression ({ts_name}) is not supported"
            fix = "re-export the series uncompressed, or convert it with dcm2niix"
        else:
            problem, fix = f"the file is truncated or corrupt ({exc})", _REEXPORT
        raise UnreadableFileError(problem, fix, source=path) from exc
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnreadableFileError(
            f"this is a colour ({ds.get('PhotometricInterpretation', 'RGB')}) image, "
            "not a greyscale CT or MR scan", "select the original greyscale series", path)
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
    dtype = np.float32
    if all(float(s).is_integer() and float(b).is_integer() for s, b in scale) and \
            all(np.issubdtype(r.dtype, np.integer) for r in raw):
        ends = [v for r, (s, b) in zip(raw, scale) for v in (r.min() * s + b, r.max() * s + b)]
        for candidate in (np.int16, np.int32):
            if np.iinfo(candidate).min <= min(ends) and max(ends) <= np.iinfo(candidate).max:
                dtype = candidate
                break
    out = np.empty((shape[1], shape[0], len(frames)), dtype=dtype)
    for k, (r, (s, b)) in enumerate(zip(raw, scale)):
        out[:, :, k] = (r.astype(np.float64) * s + b if dtype == np.float32
                        else r.astype(np.int64) * int(s) + int(b)).T
    return out


def _choose(path: Path, series_uid: str | None) -> list:
    """The (path, header) pairs of the series to read."""
    if path.is_file():
        if _is_index(path):
            return _choose(path.parent, series_uid)
        if not is_dicom_file(path):
            raise UnreadableFileError("the file is not a DICOM file", "give a DICOM file or "
                                      "series folder, or a NIfTI/NRRD image", source=path)
        ds = _read_header(path)
        if _is_index(path, ds):
            return _choose(path.parent, series_uid)
        if "Rows" not in ds or "Columns" not in ds:
            sop = str(getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID")))
            cut = "Image Storage" in sop  # an image file that ends before its image data
            raise UnreadableFileError(
                f"the file is truncated or corrupt: a {sop} file without image data" if cut
                else f"the DICOM file holds no image ({ds.get('Modality', '?')}, {sop})",
                _REEXPORT if cut else "select a CT or MR image file or series folder", path)
        return [(path, ds)]
    if not path.is_dir():
        raise UnreadableFileError("the path does not exist",
                                  "check the spelling of the file or folder", source=path)
    groups, errors = _scan(path)
    if not groups:
        why = f" ({len(errors)} DICOM files unreadable, e.g. {errors[0]})" if errors else ""
        raise UnreadableFileError(f"no readable DICOM images were found in the folder{why}",
                                  "select the folder that holds the series' image files", path)
    infos = _infos(groups)
    listing = "; ".join(i.describe() for i in infos[:20])
    listing += f"; and {len(infos) - 20} more" if len(infos) > 20 else ""
    if series_uid is not None and series_uid not in groups:
        raise UnreadableFileError(f"series {series_uid} is not in the folder (found: "
                                  f"{listing})", "pass one of the listed series UIDs", path)
    if series_uid is None and len(groups) > 1:
        raise UnreadableFileError(
            f"the folder holds {len(groups)} series: {listing}",
            "choose one by passing its series UID (series_uid=..., command line --series UID)",
            source=path)
    return groups[series_uid] if series_uid is not None else next(iter(groups.values()))


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
    path = Path(path)
    members = _choose(path, series_uid)
    ds0 = members[0][1]
    kind = _NOT_IMAGES.get(str(ds0.get("Modality", "")).upper())
    if kind:
        raise UnreadableFileError(f"the DICOM data is {kind} ({ds0.Modality}), not an image",
                                  "select the CT or MR image series", source=path)
    frames = [fr for p, ds in members for fr in _frames_of(p, ds)]
    check_voxel_count((int(ds0.Columns), int(ds0.Rows), len(frames)), path)
    frames, lps, geo = _geometry(frames, path)
    array = _values(frames, (int(ds0.Rows), int(ds0.Columns)))
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
        value = ds0.get(key)
        if value not in (None, ""):
            meta[name] = float(value[0] if isinstance(value, pydicom.multival.MultiValue)
                               else value)
    return Volume(array, _LPS_TO_RAS @ lps, str(path), meta)

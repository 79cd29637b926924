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
  (SliceThickness, SeriesNumber, window) is ignored.
* A folder is searched at most :data:`MAX_SCAN_DEPTH` levels down and for at most
  :data:`MAX_SCAN_FILES` files; a folder whose first :data:`MAX_FILES_WITHOUT_DICOM` files
  hold no DICOM file is refused, so that pointing at e.g. a home folder answers at once.
"""

from __future__ import annotations

import os
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from ..errors import UnreadableFileError
from ..volume import Volume
from .limits import check_voxel_count
from .reasons import one_line, reason

__all__ = ["SeriesInfo", "list_series", "read_dicom", "is_dicom_file"]

_PLUGINS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"
_CONVERT = "export the series again from the PACS or scanner, or convert it with dcm2niix"
_REEXPORT = "copy or export the file again from the PACS or scanner (it may be incomplete)"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Modalities whose objects carry pixel data that is not an image of the patient.
_NOT_IMAGES = {"SEG": "a segmentation", "RTDOSE": "an RT dose grid", "RTSTRUCT": "RT structures",
               "RTPLAN": "an RT plan", "SR": "a structured report", "PR": "a presentation state"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: pydicom turns an element's bytes into a value when it is first used; damaged bytes
#: (e.g. a 3-byte US value, an unknown VR code) fail then, with these.
_CONVERSION_ERRORS = (BytesLengthException, NotImplementedError, ValueError, TypeError,
                      struct.error)
#: The top-level elements the reader uses, converted as soon as a file is read so that a
#: damaged one is reported for its file (elements nobody reads may stay damaged).
_USED_ELEMENTS = (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
    "FrameOfReferenceUID", "SeriesNumber", "SeriesDescription", "Modality", "Manufacturer",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
    "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "DirectoryRecordSequence")

#: Folder search bounds: PACS and DICOMDIR exports nest patient/study/series/images (about
#: 4 levels); a study of several thin-slice and perfusion series holds some 10,000 files.
MAX_SCAN_DEPTH = 8
MAX_SCAN_FILES = 50_000
#: A series folder holds DICOM files from the start; this many other files first means the
#: path is not a DICOM folder at all (a home or system folder), so the search stops.
MAX_FILES_WITHOUT_DICOM = 1_000


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
        """One line (the texts come from the files, where anything may be written)."""
        num = f"#{self.number} " if self.number is not None else ""
        return (f"{num}{one_line(self.modality, 16) or '?'} "
                f"'{one_line(self.description, 64) or '(no description)'}' "
                f"UID {one_line(self.uid, 64)} ({self.n_slices} "
                f"slice{'s' if self.n_slices != 1 else ''})")


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


def _read_header(path: Path, full: bool = False, convert: bool = True) -> pydicom.Dataset:
    """dcmread with our error messages; ``full`` also loads the pixel data; ``convert``
    also converts the elements the reader uses (:func:`_convert_used`)."""
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=not full)
    except (InvalidDicomError, EOFError, OSError, KeyError, IndexError, OverflowError,
            *_CONVERSION_ERRORS) as exc:
        raise UnreadableFileError(
            f"the DICOM file is truncated or corrupt ({reason(exc, with_type=True)})",
            _REEXPORT, source=path) from exc
    if convert:
        _convert_used(ds, path)
    if "TransferSyntaxUID" not in (getattr(ds, "file_meta", None) or {}):
        # No file meta header: keep the encoding pydicom guessed from the data set itself.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(
            "1.2.840.10008.1.2" if implicit is not False else
            "1.2.840.10008.1.2.1" if little is not False else "1.2.840.10008.1.2.2")
    return ds


def _convert_used(ds: pydicom.Dataset, path: Path) -> None:
    """Convert the elements the reader uses now, so that damaged bytes in one of them are
    reported for this file rather than failing somewhere later."""
    for keyword in _USED_ELEMENTS:
        try:
            ds.get(keyword)
        except _CONVERSION_ERRORS as exc:
            raise UnreadableFileError(
                f"the DICOM element {keyword} is damaged ({reason(exc, with_type=True)})",
                _REEXPORT, source=path) from exc


def _is_index(path: Path, ds: pydicom.Dataset | None = None) -> bool:
    """A DICOMDIR (media index): by name, or by its SOP class / directory records."""
    return path.name.upper() == "DICOMDIR" or ds is not None and (
        str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10"
        or "DirectoryRecordSequence" in ds)


@contextmanager
def _quiet_pydicom():
    """Silence pydicom's warnings about header values while we read: every value we use is
    checked by us (a malformed one is our error, naming the file), and the others do not
    matter, so the warnings would only add lines to the one-line error a user sees."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _parse_number(value, integer: bool = False):
    """A tag's single numeric value; None when absent or empty; ``ValueError`` when it is
    malformed (text that is not a number, several values, NaN or infinite)."""
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        raise ValueError("several values where one is expected")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not a number: {str(value)[:40]!r}") from exc
    if not np.isfinite(number) or (integer and not number.is_integer()):
        raise ValueError(f"not {'a whole' if integer else 'a finite'} number: {number:g}")
    return int(number) if integer else number


def _number(value, tag: str, path: Path, default=None, integer: bool = False):
    """A numeric tag the image depends on: ``default`` when absent; a malformed value is an
    UnreadableFileError naming the tag (a damaged header, never to be guessed around)."""
    try:
        number = _parse_number(value, integer)
    except ValueError as exc:
        raise UnreadableFileError(f"the DICOM tag {tag} is malformed ({exc}; damaged header)",
                                  _CONVERT, source=path) from exc
    return default if number is None else number


def _optional_number(value, integer: bool = False):
    """A numeric tag nothing depends on (description, display): None when absent or
    malformed, so a damaged optional tag never stops a read."""
    try:
        return _parse_number(value, integer)
    except ValueError:
        return None


def _files_to_scan(folder: Path) -> tuple[list[Path], bool]:
    """The DICOM-looking files under ``folder`` (sorted) and whether deeper folders were
    left out; refuses folders too large, or with no DICOM file early on (see the bounds)."""
    found: list[Path] = []
    seen, folders, pruned = 0, 0, False
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # sorted: a stable order
        if depth >= MAX_SCAN_DEPTH and dirs:
            pruned, dirs[:] = True, []
        folders += 1
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or _is_index(path) or not path.is_file():
                continue
            seen += 1
            if max(seen, folders) > MAX_SCAN_FILES:
                raise UnreadableFileError(
                    f"the folder holds more than {MAX_SCAN_FILES:,} files or folders, too many "
                    "to search for a DICOM series",
                    "select the folder of the series (or of the study) itself", source=folder)
            if is_dicom_file(path):
                found.append(path)
            elif not found and seen >= MAX_FILES_WITHOUT_DICOM:
                raise UnreadableFileError(
                    f"none of the first {seen:,} files in the folder is a DICOM file; it is "
                    "not a DICOM series folder", "select the folder that holds the series' "
                    "image files, or give a NIfTI or NRRD file", source=folder)
    return sorted(found), pruned


def _scan(folder: Path) -> tuple[dict[str, list], list[str]]:
    """Headers of the image files under ``folder`` (recursive, bounded) by series UID; read
    errors (the last one says so when deeper folders were not searched)."""
    groups, errors = {}, []  # series UID -> [(path, header)]; messages of unreadable files
    paths, pruned = _files_to_scan(folder)
    for path in paths:
        # Elements are converted when the series is read: a file damaged there stays in
        # its series and is named then, instead of silently leaving a slice out.
        try:
            ds = _read_header(path, convert=False)
            sop_class = str(getattr(ds.get("SOPClassUID"), "name", ""))
            series = str(ds.get("SeriesInstanceUID", "unknown"))
        except UnreadableFileError as exc:
            errors.append(str(exc))
            continue
        except _CONVERSION_ERRORS as exc:  # the series cannot even be told
            errors.append(f"{path}: {reason(exc)}")
            continue
        if "Rows" not in ds or "Columns" not in ds:  # DICOMDIR, report, RT plan, or cut short
            if "Image Storage" in sop_class:
                errors.append(f"{path.name} is truncated (it has no image data)")
            continue
        groups.setdefault(series, []).append((path, ds))
    if pruned and not groups:
        errors.append(f"folders more than {MAX_SCAN_DEPTH} levels down were not searched")
    return groups, errors


def _described(ds: pydicom.Dataset, keyword: str):
    """An element's value for a description only: None when absent or damaged."""
    try:
        return ds.get(keyword)
    except _CONVERSION_ERRORS:
        return None


def _infos(groups: dict[str, list]) -> list[SeriesInfo]:
    infos = []
    for uid, members in groups.items():
        ds0 = members[0][1]
        # A listing only describes: a damaged text, count or number is shown as empty, 1
        # frame or no number here, and reading the series reports the damaged file itself.
        infos.append(SeriesInfo(
            uid, str(_described(ds0, "SeriesDescription") or ""),
            str(_described(ds0, "Modality") or ""),
            _optional_number(_described(ds0, "SeriesNumber"), integer=True),
            sum(max(1, _optional_number(_described(d, "NumberOfFrames"), integer=True) or 1)
                for _, d in members), [p for p, _ in members]))
    return sorted(infos, key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """All image series under ``folder`` (searched recursively, bounded), by series number."""
    with _quiet_pydicom():
        return _infos(_scan(Path(folder))[0])


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
                                  f"not {n} numbers; damaged header)", _CONVERT, source=path)
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
        except _CONVERSION_ERRORS as exc:  # nested elements are converted only here
            raise UnreadableFileError(f"the DICOM element {key} ({seq}) is damaged "
                                      f"({reason(exc)})", _REEXPORT, source=path) from exc

    dr, dc = _floats(get("PixelMeasuresSequence", "PixelSpacing"), 2,
                     "PixelSpacing (0028,0030)", path)
    if dr <= 0 or dc <= 0:
        raise UnreadableFileError(f"PixelSpacing {dr} x {dc} mm is not positive (damaged "
                                  "header)", _CONVERT, source=path)
    # SliceThickness only matters for a single slice (its depth); the slice positions give
    # the spacing of a series. A damaged value is dropped, and a lone slice then says that
    # its depth was assumed (meta "slice_spacing_source").
    thick = _optional_number(get("PixelMeasuresSequence", "SliceThickness"))
    slope = _number(get("PixelValueTransformationSequence", "RescaleSlope"),
                    "RescaleSlope (0028,1053)", path, default=1.0)
    inter = _number(get("PixelValueTransformationSequence", "RescaleIntercept"),
                    "RescaleIntercept (0028,1052)", path, default=0.0)
    return _Frame(
        path, index, _floats(get("PlanePositionSequence", "ImagePositionPatient"), 3,
                             "ImagePositionPatient (0020,0032)", path),
        _floats(get("PlaneOrientationSequence", "ImageOrientationPatient"), 6,
                "ImageOrientationPatient (0020,0037)", path), (float(dr), float(dc)),
        thick if thick and thick > 0 else None, float(slope), float(inter),
        str(ds.get("SOPInstanceUID", "")))


def _frames_of(path: Path, ds: pydicom.Dataset) -> list[_Frame]:
    n = _number(ds.get("NumberOfFrames"), "NumberOfFrames (0028,0008)", path, default=1,
                integer=True)
    if n < 1:
        raise UnreadableFileError(f"the DICOM tag NumberOfFrames (0028,0008) is {n} (damaged "
                                  "header)", _REEXPORT, source=path)
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
            AttributeError, IndexError, BytesLengthException, struct.error) as exc:
        if "missing" in str(exc) and isinstance(exc, RuntimeError):  # plugin not installed
            problem = f"no decoder is installed for the compressed pixel data ({ts_name})"
            fix = f"install the decoders with `{_PLUGINS}`, or re-export the series uncompressed"
        elif isinstance(exc, NotImplementedError):
            problem = f"the pixel data's compression ({ts_name}) is not supported"
            fix = "re-export the series uncompressed, or convert it with dcm2niix"
        else:
            problem, fix = f"the file is truncated or corrupt ({reason(exc)})", _REEXPORT
        raise UnreadableFileError(problem, fix, source=path) from exc
    if _number(ds.get("SamplesPerPixel"), "SamplesPerPixel (0028,0002)", path, default=1,
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
            "stored values beyond any real intensity (damaged header)", _CONVERT, worst.path)
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
            sop = one_line(getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID")), 64)
            cut = "Image Storage" in sop  # an image file that ends before its image data
            raise UnreadableFileError(
                f"the file is truncated or corrupt: a {sop} file without image data" if cut
                else f"the DICOM file holds no image ({one_line(ds.get('Modality', '?'), 16)}, "
                f"{sop})",
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
        raise UnreadableFileError(f"series {one_line(series_uid)} is not in the folder (found: "
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
    if not str(path).strip():  # Path("") would be the working folder, searched for DICOM
        raise UnreadableFileError("the DICOM path is empty",
                                  "give a DICOM series folder or file")
    path = Path(path)
    with _quiet_pydicom():
        return _read_series(path, _choose(path, series_uid))


def _matrix_size(ds: pydicom.Dataset, path: Path) -> tuple[int, int]:
    """(Rows, Columns) of an image, both positive."""
    rows = _number(ds.get("Rows"), "Rows (0028,0010)", path, default=0, integer=True)
    cols = _number(ds.get("Columns"), "Columns (0028,0011)", path, default=0, integer=True)
    if rows < 1 or cols < 1:
        raise UnreadableFileError(f"the DICOM image size is {cols} x {rows} pixels (damaged "
                                  "header)", _REEXPORT, source=path)
    return rows, cols


def _read_series(path: Path, members: list) -> Volume:
    """The volume of the chosen (path, header) pairs (see :func:`read_dicom`)."""
    for member_path, ds in members:
        _convert_used(ds, member_path)
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
        value = _optional_number(value[0] if isinstance(value, pydicom.multival.MultiValue)
                                 and len(value) else value)
        if value is not None:
            meta[name] = value
    return Volume(array, _LPS_TO_RAS @ lps, str(path), meta)

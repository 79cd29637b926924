"""Reading DICOM headers and their values, with one clear error for a damaged one.

Used by the series search (:mod:`.dicom_series`) and the reader (:mod:`.dicom`): the header
read with our messages, the elements the reader uses converted at once (damaged bytes are
reported for their file), and numeric tags parsed strictly: a malformed value of a tag the
image depends on is an :class:`~lesion_core.errors.UnreadableFileError` naming the file and
the tag; a malformed optional tag (description, display) reads as absent.
"""

from __future__ import annotations

import struct
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from ..errors import UnreadableFileError
from .reasons import reason

PLUGINS_FIX = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"
CONVERT_FIX = "export the series again from the PACS or scanner, or convert it with dcm2niix"
REEXPORT_FIX = "copy or export the file again from the PACS or scanner (it may be incomplete)"
#: pydicom turns an element's bytes into a value when it is first used; damaged bytes
#: (e.g. a 3-byte US value, an unknown VR code) fail then, with these.
CONVERSION_ERRORS = (BytesLengthException, NotImplementedError, ValueError, TypeError,
                      struct.error)
#: The top-level elements the reader uses, converted as soon as a file is read so that a
#: damaged one is reported for its file (elements nobody reads may stay damaged).
USED_ELEMENTS = (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
    "FrameOfReferenceUID", "SeriesNumber", "SeriesDescription", "Modality", "Manufacturer",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
    "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "DirectoryRecordSequence")


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


def read_header(path: Path, full: bool = False, convert: bool = True) -> pydicom.Dataset:
    """dcmread with our error messages; ``full`` also loads the pixel data; ``convert``
    also converts the elements the reader uses (:func:`convert_used`)."""
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=not full)
    except (InvalidDicomError, EOFError, OSError, KeyError, IndexError, OverflowError,
            *CONVERSION_ERRORS) as exc:
        raise UnreadableFileError(
            f"the DICOM file is truncated or corrupt ({reason(exc, with_type=True)})",
            REEXPORT_FIX, source=path) from exc
    if convert:
        convert_used(ds, path)
    if "TransferSyntaxUID" not in (getattr(ds, "file_meta", None) or {}):
        # No file meta header: keep the encoding pydicom guessed from the data set itself.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(
            "1.2.840.10008.1.2" if implicit is not False else
            "1.2.840.10008.1.2.1" if little is not False else "1.2.840.10008.1.2.2")
    return ds


def convert_used(ds: pydicom.Dataset, path: Path) -> None:
    """Convert the elements the reader uses now, so that damaged bytes in one of them are
    reported for this file rather than failing somewhere later."""
    for keyword in USED_ELEMENTS:
        try:
            ds.get(keyword)
        except CONVERSION_ERRORS as exc:
            raise UnreadableFileError(
                f"the DICOM element {keyword} is damaged ({reason(exc, with_type=True)})",
                REEXPORT_FIX, source=path) from exc


def is_index(path: Path, ds: pydicom.Dataset | None = None) -> bool:
    """A DICOMDIR (media index): by name, or by its SOP class / directory records."""
    return path.name.upper() == "DICOMDIR" or ds is not None and (
        str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10"
        or "DirectoryRecordSequence" in ds)


@contextmanager
def quiet_pydicom():
    """Silence pydicom's warnings about header values while we read: every value we use is
    checked by us (a malformed one is our error, naming the file), and the others do not
    matter, so the warnings would only add lines to the one-line error a user sees."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def parse_number(value, integer: bool = False):
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


def number(value, tag: str, path: Path, default=None, integer: bool = False):
    """A numeric tag the image depends on: ``default`` when absent; a malformed value is an
    UnreadableFileError naming the tag (a damaged header, never to be guessed around)."""
    try:
        number = parse_number(value, integer)
    except ValueError as exc:
        raise UnreadableFileError(f"the DICOM tag {tag} is malformed ({exc}; damaged header)",
                                  CONVERT_FIX, source=path) from exc
    return default if number is None else number


def optional_number(value, integer: bool = False):
    """A numeric tag nothing depends on (description, display): None when absent or
    malformed, so a damaged optional tag never stops a read."""
    try:
        return parse_number(value, integer)
    except ValueError:
        return None


def described(ds: pydicom.Dataset, keyword: str):
    """An element's value for a description only: None when absent or damaged."""
    try:
        return ds.get(keyword)
    except CONVERSION_ERRORS:
        return None

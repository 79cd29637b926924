"""Write a :class:`~lesion_core.volume.Volume` as a DICOM series (one file per slice).

The inverse of :mod:`.dicom`: ``read_dicom(folder)`` gives back the same voxels (within
the stored integer precision) on the same grid. Used for the synthetic subjects'
DICOM sources (``lesion-suite synth ... --dicom``) and the tests of the DICOM export.

Geometry. The array ``[i, j, k]`` becomes slice ``k``'s pixel ``(row j, column i)``:
ImageOrientationPatient holds the LPS unit directions of ``i`` (row cosine) and ``j``
(column cosine), PixelSpacing ``[j step, i step]`` (mm), ImagePositionPatient of slice
``k`` is the LPS position of voxel ``(0, 0, k)``. Oblique and sheared (gantry-tilted)
grids are written as they are; ``i`` and ``j`` must be perpendicular (DICOM pixels are
rectangles). DICOM readers stack slices along ``row x column``, so a grid whose ``k``
axis points the other way (a left-handed voxel order, e.g. LAS) is written with its
slices in reverse order: read back, it is the same image with ``k`` reversed.

Values. CT: stored unsigned 16-bit with RescaleIntercept (HU of stored value 0, at most
-1024) and RescaleSlope 1 (HU rounded to whole numbers). MR: whole numbers within
0..65535 are stored as they are; anything else is scaled onto 0..65535 with
RescaleSlope/RescaleIntercept (precision: the value range / 65535), which the project's
reader, Slicer and dcm2niix apply.

Objects: CT Image Storage or MR Image Storage, explicit VR little endian, with the
patient, study, series, frame-of-reference and equipment modules; MR acquisition
attributes (scanning sequence, TR, TE, TI) of a typical protocol of each sequence name
(:data:`MR_PROTOCOLS`). Pure pydicom.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..volume import Volume

__all__ = ["SeriesIdentity", "MRProtocol", "MR_PROTOCOLS", "write_dicom_series",
           "deterministic_uid", "CT_IMAGE_STORAGE", "MR_IMAGE_STORAGE"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UINT16_MAX = 65535
#: CT stores HU + 1024 at least: the usual offset, so air (-1000 HU) is a small number.
_CT_INTERCEPT_HU = -1024.0


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what a series belongs to (DICOM identifying attributes).

    Series of one subject share the patient, the study and the frame of reference (one
    patient coordinate system), and differ in series UID, number and description.
    ``study_date`` is ``YYYYMMDD``, ``study_time`` ``HHMMSS``; ``patient_age`` a DICOM
    age string (``"072Y"``) or ``""``.
    """

    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int = 1
    series_description: str = ""
    study_description: str = ""
    study_id: str = "1"
    accession_number: str = ""
    study_date: str = "20000101"
    study_time: str = "120000"
    patient_age: str = ""
    manufacturer: str = "LesionSuite"
    model_name: str = "synthetic phantom"


@dataclass(frozen=True)
class MRProtocol:
    """MR Image module attributes of one sequence (times in ms, angle in degrees)."""

    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    repetition_time_ms: float
    echo_time_ms: float
    inversion_time_ms: float | None = None
    flip_angle_deg: float = 90.0
    acquisition_type: str = "2D"
    echo_train_length: int = 1


#: Typical 3 T protocols of the synthetic sequences (the images do not depend on them).
MR_PROTOCOLS: dict[str, MRProtocol] = {
    "FLAIR": MRProtocol(("SE", "IR"), ("SK", "SP", "MP"), 9000.0, 120.0, 2500.0, 150.0,
                        "2D", 16),
    "T1": MRProtocol(("GR", "IR"), ("SK", "SP", "MP"), 2300.0, 3.0, 900.0, 9.0, "3D", 1),
    "SWI": MRProtocol(("GR",), ("SP",), 28.0, 20.0, None, 15.0, "3D", 1),
    "T2star": MRProtocol(("GR",), ("SP",), 800.0, 20.0, None, 20.0, "2D", 1),
}
_DEFAULT_MR = MRProtocol(("RM",), ("NONE",), 1000.0, 10.0)


#: The namespace of :func:`deterministic_uid`'s name-based UUIDs (a fixed random UUID).
_UID_NAMESPACE = uuid.UUID("6f0a1f62-3c1e-4b8e-9a55-2d1b6c1c9e41")


def deterministic_uid(*parts: object) -> str:
    """A UID that depends only on ``parts``: ``2.25.<decimal>`` of the name-based (SHA-1,
    version 5) UUID of their text, the form DICOM PS3.5 B.2 gives UUIDs. The same subject
    written twice gets the same UIDs, different subjects different ones."""
    # pydicom's generate_uid ignores its entropy sources under the 2.25 root (random).
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(repr(p) for p in parts)).int}"


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS), as exact as that allows."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _ds_list(values: Sequence[float]) -> list[str]:
    return [_ds(v) for v in values]


@dataclass(frozen=True)
class _Grid:
    """The DICOM geometry of a volume: unit LPS row/column cosines, pixel spacing
    ``(between rows, between columns)`` in mm, LPS position of each slice's first pixel,
    the slice step (mm) and whether ``k`` was reversed."""

    row: np.ndarray
    col: np.ndarray
    spacing: tuple[float, float]
    positions: np.ndarray
    step_mm: float
    reversed_k: bool


def _grid(volume: Volume) -> _Grid:
    lps = _RAS_TO_LPS @ volume.affine
    di, dj = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    if di <= 0 or dj <= 0:
        raise ValueError("the volume's affine has a zero voxel size")
    row, col = lps[:3, 0] / di, lps[:3, 1] / dj
    if abs(float(row @ col)) > 1e-4:
        raise ValueError("the volume's i and j axes are not perpendicular; DICOM pixels are "
                         "rectangles (resample the volume first)")
    n = volume.shape[2]
    step = lps[:3, 2]
    reversed_k = float(step @ np.cross(row, col)) < 0  # readers stack along row x column
    first = lps[:3, 3] + (step * (n - 1) if reversed_k else 0.0)
    step = -step if reversed_k else step
    positions = first + np.outer(np.arange(n), step)
    return _Grid(row, col, (float(dj), float(di)), positions, float(np.linalg.norm(step)),
                 reversed_k)


def _stored_ct(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(uint16 stored values, slope, intercept) of an HU array."""
    finite = np.nan_to_num(values.astype(np.float64), nan=_CT_INTERCEPT_HU)
    intercept = float(min(_CT_INTERCEPT_HU, np.floor(finite.min())))
    stored = np.round(finite - intercept)
    if stored.max() > _UINT16_MAX:
        raise ValueError(f"the CT spans {finite.min():.0f}..{finite.max():.0f} HU, more than "
                         "16 bits hold")
    return stored.astype(np.uint16), 1.0, intercept


def _stored_mr(values: np.ndarray) -> tuple[np.ndarray, float | None, float | None]:
    """(uint16 stored values, slope, intercept); no rescale (None) for whole numbers
    that fit as they are."""
    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    if np.all(finite == np.round(finite)) and low >= 0 and high <= _UINT16_MAX:
        return finite.astype(np.uint16), None, None
    # The DS strings are what a reader sees: scale with the values they hold.
    slope = float(_ds((high - low) / _UINT16_MAX if high > low else 1.0))
    intercept = float(_ds(low))
    stored = np.clip(np.round((finite - intercept) / slope), 0, _UINT16_MAX)
    return stored.astype(np.uint16), slope, intercept


def _window(values: np.ndarray, modality: str) -> tuple[float, float]:
    """(centre, width) to display: the brain window for CT, the 1-99.5 % range for MR."""
    if modality == "CT":
        return 40.0, 80.0
    finite = values[np.isfinite(values)]
    low, high = (np.percentile(finite, [1.0, 99.5]) if finite.size else (0.0, 1.0))
    return float((low + high) / 2), float(max(high - low, 1e-3))


def _dataset(identity: SeriesIdentity, modality: str, sop_class: str):
    """The attributes every slice of the series shares."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    from .. import __version__

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    # Patient
    ds.PatientName, ds.PatientID = identity.patient_name, identity.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    if identity.patient_age:
        ds.PatientAge = identity.patient_age
    # General study
    ds.StudyInstanceUID, ds.StudyID = identity.study_uid, identity.study_id
    ds.StudyDate, ds.StudyTime = identity.study_date, identity.study_time
    ds.ReferringPhysicianName, ds.AccessionNumber = "", identity.accession_number
    ds.StudyDescription = identity.study_description
    # General series, frame of reference, equipment
    ds.Modality, ds.SeriesInstanceUID = modality, identity.series_uid
    ds.SeriesNumber, ds.SeriesDescription = identity.series_number, identity.series_description
    ds.SeriesDate, ds.SeriesTime = identity.study_date, identity.study_time
    ds.PatientPosition, ds.BodyPartExamined = "HFS", "HEAD"  # an unpaired part: no laterality
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = identity.frame_of_reference_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = identity.manufacturer, identity.model_name
    ds.SoftwareVersions = f"lesion-suite {__version__}"
    # General image, acquisition
    ds.ContentDate, ds.ContentTime = identity.study_date, identity.study_time
    ds.AcquisitionNumber = 1
    # Image pixel
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _modality_attributes(ds, modality: str, sequence: str | None, grid: _Grid) -> None:
    if modality == "CT":
        ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.RescaleType = "HU"
        return
    protocol = MR_PROTOCOLS.get(sequence or "", _DEFAULT_MR)
    ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]
    ds.ScanningSequence = list(protocol.scanning_sequence)
    ds.SequenceVariant = list(protocol.sequence_variant)
    ds.ScanOptions = ""
    ds.MRAcquisitionType = protocol.acquisition_type
    ds.RepetitionTime = _ds(protocol.repetition_time_ms)
    ds.EchoTime = _ds(protocol.echo_time_ms)
    if protocol.inversion_time_ms is not None:
        ds.InversionTime = _ds(protocol.inversion_time_ms)
    ds.EchoTrainLength = protocol.echo_train_length
    ds.FlipAngle = _ds(protocol.flip_angle_deg)
    ds.MagneticFieldStrength = "3"
    ds.ImagedNucleus = "1H"
    ds.SpacingBetweenSlices = _ds(grid.step_mm)
    if sequence:
        ds.SequenceName = sequence


def write_dicom_series(volume: Volume, folder: str | Path, modality: str,
                       identity: SeriesIdentity, sequence: str | None = None,
                       prefix: str = "IM") -> list[Path]:
    """Write ``volume`` (``[i, j, k]``, RAS affine; CT in HU) as one DICOM file per slice
    ``<prefix>0001.dcm`` ... into ``folder`` (created); returns the paths in slice order.

    ``modality``: ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage, with the
    protocol of ``sequence`` from :data:`MR_PROTOCOLS`: FLAIR, T1, SWI, T2star). SOP
    instance UIDs derive from the series UID and the slice number. Raises ValueError for
    a grid DICOM cannot hold (i and j not perpendicular) or CT values beyond 16 bits.
    """
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}")
    if volume.array.ndim != 3:
        raise ValueError(f"a DICOM series holds a 3D volume, got shape {volume.shape}")
    grid = _grid(volume)
    values = np.asarray(volume.array)
    if grid.reversed_k:
        values = values[:, :, ::-1]
    stored, slope, intercept = (_stored_ct(values) if modality == "CT" else _stored_mr(values))
    centre, width = _window(np.asarray(volume.array, np.float64), modality)
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns, rows, n_slices = values.shape
    iop = _ds_list(np.r_[grid.row, grid.col])
    thickness = _ds(grid.step_mm)
    paths = []
    for k in range(n_slices):
        ds = _dataset(identity, modality, sop_class)
        _modality_attributes(ds, modality, sequence, grid)
        ds.SOPInstanceUID = deterministic_uid(identity.series_uid, "slice", k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = _ds_list(grid.positions[k])
        ds.PixelSpacing = _ds_list(grid.spacing)
        ds.SliceThickness = thickness
        ds.Rows, ds.Columns = rows, columns
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
            if modality == "MR":
                ds.RescaleType = "US"  # unspecified units: MR intensities are relative
        ds.WindowCenter, ds.WindowWidth = _ds(centre), _ds(width)
        # DICOM pixel (row r, column c) is voxel (i=c, j=r): the slice transposed.
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype("<u2").tobytes()
        path = folder / f"{prefix}{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

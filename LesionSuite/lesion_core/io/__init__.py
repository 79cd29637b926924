"""Reading and writing image volumes: NIfTI, NRRD / Slicer ``.seg.nrrd``, DICOM series.

``read_volume`` picks the reader from the path (a folder is a DICOM series) and returns a
:class:`~lesion_core.volume.Volume`; every failure is an
:class:`~lesion_core.errors.UnreadableFileError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnreadableFileError
from ..volume import Volume
from .nifti import read_nifti, write_nifti
from .nrrd_io import SegmentInfo, read_nrrd, read_segmentation, write_nrrd, write_segmentation

__all__ = ["read_volume", "write_volume", "read_segmentation", "write_segmentation",
           "SegmentInfo", "image_format", "SUPPORTED_FORMATS"]

SUPPORTED_FORMATS = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .seg.nrrd) or a DICOM series folder"


def image_format(path: str | Path) -> str:
    """``"nifti"``, ``"seg.nrrd"``, ``"nrrd"`` or ``"dicom"``; raises for anything else."""
    if not str(path).strip():
        # Path("") is the working folder, which would then be searched for DICOM files.
        raise UnreadableFileError("the image path is empty",
                                  f"give {SUPPORTED_FORMATS}")
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("the file or folder does not exist",
                                  "check the path (and the working directory)", path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".seg.nrrd"):
        return "seg.nrrd"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    from .dicom import is_dicom_file  # pydicom is imported only when no suffix decides
    if name.endswith((".dcm", ".dicom", ".ima")) or is_dicom_file(path):
        return "dicom"
    raise UnreadableFileError(
        "not a supported image file", f"give {SUPPORTED_FORMATS}", path)


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read one 3D image. For a DICOM folder with several series, pass ``series_uid``."""
    kind = image_format(path)  # before Path(): an empty path must not become "."
    path = Path(path)
    if kind == "nifti":
        return read_nifti(path)
    if kind == "nrrd":
        return read_nrrd(path)
    if kind == "seg.nrrd":
        return read_segmentation(path)[0]
    from .dicom import read_dicom  # pydicom is only imported when DICOM is read
    return read_dicom(path, series_uid=series_uid)


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write to NIfTI or NRRD by the file name's extension; the parent folder is created."""
    path = Path(path)
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith((".nii", ".nii.gz")):
        write_nifti(volume, path)
    elif name.endswith(".nrrd") and not name.endswith(".seg.nrrd"):
        write_nrrd(volume, path)
    else:
        raise UnreadableFileError(
            "cannot write this file type", "name the output .nii.gz or .nrrd "
            "(segmentations: use write_segmentation for .seg.nrrd)", path)
    return path

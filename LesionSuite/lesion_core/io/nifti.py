"""NIfTI-1/2 (``.nii``, ``.nii.gz``) reading and writing with nibabel."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import UnreadableFileError
from ..volume import Volume
from .limits import check_voxel_count


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI image; the affine is the sform if set, else the qform (nibabel's rule).

    Scaled data (``scl_slope``/``scl_inter``) come out as float; unscaled data keep their
    on-disk dtype so that label maps stay integers.
    """
    import nibabel as nib  # not at import: Slicer loads modules without nibabel

    try:
        image = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, ValueError) as exc:
        raise UnreadableFileError(
            f"not a readable NIfTI image ({exc})",
            "check that the file is a complete .nii or .nii.gz image, or re-export it", path)
    check_voxel_count(image.shape, path)
    try:
        # nibabel applies scl_slope/scl_inter only when they are not the identity, so
        # unscaled label maps keep their integer dtype.
        array = np.asanyarray(image.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise UnreadableFileError(
            f"the image data are truncated or corrupt ({exc})",
            "re-copy or re-export the file", path)
    return Volume(array, image.affine, str(path), {"source_format": "nifti"})


def write_nifti(volume: Volume, path: Path) -> None:
    """Write with both sform and qform set to the volume's affine (code 1, scanner).

    NIfTI stores the sform in float32, so the affine survives to float32 precision
    (about 1e-7 relative); use NRRD where the float64 affine must survive bit for bit.
    """
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(volume.array), volume.affine)
    image.set_sform(volume.affine, code=1)
    image.set_qform(volume.affine, code=1)
    nib.save(image, str(path))

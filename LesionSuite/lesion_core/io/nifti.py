"""NIfTI-1/2 (``.nii``, ``.nii.gz``) reading and writing with nibabel.

nibabel repairs some header faults while loading (a zero voxel size becomes 1 mm, a
negative one positive) and logs a line about it; the reader checks the header as written
instead, so such a file is refused with one clear error rather than read at a guessed size.
"""

from __future__ import annotations

import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InvalidImageError, UnreadableFileError
from ..volume import Volume
from .limits import check_voxel_count
from .reasons import reason

_NOT_NIFTI_FIX = "check that the file is a complete .nii or .nii.gz image, or re-export it"
#: deflate expands at most about 1032-fold: a .nii.gz this many times smaller than the
#: voxel data its header describes cannot hold them.
_MAX_GZIP_RATIO = 1100


@contextmanager
def _nibabel_quiet():
    """Keep nibabel's header-repair log lines off stderr: the reader reports what matters
    itself, as its one error line."""
    from nibabel.imageglobals import logger

    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def _load(path: Path):
    """``nib.load`` with our errors, and the header exactly as the file holds it."""
    import nibabel as nib  # not at import: Slicer loads modules without nibabel
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError, HeaderTypeError

    try:
        with _nibabel_quiet():
            image = nib.load(str(path))
            holder = image.file_map.get("header") or image.file_map["image"]  # pair or .nii
            with nib.openers.ImageOpener(holder.filename) as stream:
                as_written = image.header_class.from_fileobj(stream, check=False)
    except (ImageFileError, HeaderDataError, HeaderTypeError, OverflowError) as exc:
        # e.g. an unknown datatype code, a bad magic string, an infinite vox_offset: the
        # header itself is damaged
        raise UnreadableFileError(f"not a readable NIfTI image ({reason(exc)})", _NOT_NIFTI_FIX,
                                  path)
    except (EOFError, OSError, zlib.error, struct.error, ValueError) as exc:
        raise UnreadableFileError(f"not a readable NIfTI image: the file is truncated or "
                                  f"corrupt ({reason(exc)})", _NOT_NIFTI_FIX, path)
    return image, as_written


def _check_voxel_size(header, path: Path) -> None:
    """Refuse a zero, negative or non-finite voxel size (pixdim) in the written header:
    nibabel would silently read it as 1 mm (or its absolute value)."""
    n = min(3, max(1, int(header["dim"][0])))
    sizes = np.asarray(header["pixdim"][1:1 + n], dtype=np.float64)
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise InvalidImageError(
            f"the header gives voxel size {' x '.join(f'{s:g}' for s in sizes)} mm (pixdim); "
            "a voxel size must be a positive number",
            "set the voxel size in the converter that wrote the file (e.g. from the DICOM "
            "PixelSpacing and slice spacing), then export it again", path)


def _check_data_size(image, path: Path) -> None:
    """Refuse a file too small for the voxel data its header describes, before reading:
    nibabel would first allocate the full size (gigabytes, for a damaged header)."""
    header = image.header
    if not image.shape or min(image.shape) < 1:
        raise UnreadableFileError(
            f"the header gives image size {' x '.join(map(str, image.shape)) or 'none'} (dim); "
            "every axis needs at least one voxel", _NOT_NIFTI_FIX, path)
    needed = int(np.prod(image.shape, dtype=np.float64)) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    # The offset the data are read from (nibabel may have repaired the header's copy); a
    # float, since a damaged one may be huge or infinite.
    offset = float(getattr(image.dataobj, "offset", header.get_data_offset()))
    held = size * _MAX_GZIP_RATIO if path.name.lower().endswith(".gz") else size - offset
    if needed > held:
        raise UnreadableFileError(
            f"the image data are truncated or corrupt: the header describes {needed:,} bytes "
            f"of voxels, more than the {size:,}-byte file can hold",
            "re-copy or re-export the file", path)


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI image; the affine is the sform if set, else the qform (nibabel's rule).

    Scaled data (``scl_slope``/``scl_inter``) come out as float; unscaled data keep their
    on-disk dtype so that label maps stay integers.
    """
    image, as_written = _load(path)
    _check_voxel_size(as_written, path)
    check_voxel_count(image.shape, path)
    _check_data_size(image, path)
    try:
        # nibabel applies scl_slope/scl_inter only when they are not the identity, so
        # unscaled label maps keep their integer dtype.
        array = np.asanyarray(image.dataobj)
    except (EOFError, OSError, zlib.error, ValueError, OverflowError) as exc:
        raise UnreadableFileError(
            f"the image data are truncated or corrupt ({reason(exc)})",
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

"""Which image a feedback-store case is about: its id, and the image named in ``case.json``.

Shared by every task whose reader decisions are kept in :mod:`lesion_core.feedback`
(ARWMC ratings, CMB decisions, ...), so a case means the same thing to all of them.

Case id (:func:`case_id_for_volume`): ``<volume name>-<12 hex digits>``, the digits being
a SHA-1 digest of the voxel values, data type, dimensions and voxel-to-RAS affine (rounded
to 0.001 mm). The digest, not a file path or a Slicer node ID, names the image: node IDs
restart in every Slicer session (two patients would share decisions), and a file path
changes when the file is moved or the image came from DICOM or was never saved. The name
only makes the store folder readable; :func:`find_case_id` finds a renamed image's case by
its digest.

The case's image (:func:`ensure_case_image`): ``case.json`` holds ``{"image": path,
"modality": ...}``; an image that has no file (made in a Slicer scene, loaded from DICOM)
is saved into the case folder first, so a later training run can always open it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from . import io as lesion_io
from .atomic import atomic_write
from .feedback import CaseFeedback, FeedbackStore
from .volume import Volume

#: File name of an image saved into a case folder because it had no file of its own.
CASE_IMAGE_FILE = "image.nii.gz"
_DIGEST_CHARS = 12


def case_id_for_volume(name: str, volume: Volume) -> str:
    """``<name>-<digest>`` for an image (see the module notes); a valid store case id."""
    digest = hashlib.sha1()
    array = np.ascontiguousarray(volume.array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.round(np.asarray(volume.affine, np.float64), 3).tobytes())
    digest.update(array.tobytes())
    safe = re.sub(r"[^A-Za-z0-9._+@=-]+", "_", name or "").strip("._-+@=")[:60] or "volume"
    return f"{safe}-{digest.hexdigest()[:_DIGEST_CHARS]}"


def find_case_id(store: FeedbackStore, case_id: str) -> str:
    """``case_id`` itself, or the existing case with the same image digest (an image
    renamed since it was reviewed), else ``case_id`` (a new case)."""
    if (store.root / case_id).is_dir():
        return case_id
    suffix = "-" + case_id.rsplit("-", 1)[-1]
    matches = [c for c in store.cases() if c.endswith(suffix)]
    return matches[0] if matches else case_id


def ensure_case_image(case: CaseFeedback, image: Volume | str | Path, modality: str) -> Path:
    """Name the case's image in ``case.json``: a file path as is, a Volume without a file
    saved as ``image.nii.gz`` in the case folder (atomically). Returns the image path."""
    info = case.info()
    if info.get("image") and Path(info["image"]).exists():
        return Path(info["image"])
    if isinstance(image, Volume):
        source = Path(image.source) if image.source else None
        if source is None or not source.is_file():
            case.folder.mkdir(parents=True, exist_ok=True)
            source = case.folder / CASE_IMAGE_FILE
            atomic_write(source, lambda tmp: lesion_io.write_volume(image, tmp))
        path = source
    else:
        path = Path(image)
    case.write_info({**info, "image": str(path.resolve()), "modality": modality})
    return path

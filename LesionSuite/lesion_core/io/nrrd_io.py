"""NRRD (``.nrrd``, ``.nhdr``) scalar volumes and Slicer ``.seg.nrrd`` segmentations (pynrrd).

NRRD keeps a float64 affine as text, so the affine survives a round trip exactly. World
space is converted between the file's (``left-posterior-superior`` as Slicer writes it, or
``right-anterior-superior``) and our RAS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nrrd
import numpy as np

from ..errors import UnreadableFileError
from ..volume import Volume
from .limits import check_voxel_count

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SPACE_SIGN = {
    "left-posterior-superior": _LPS_TO_RAS, "lps": _LPS_TO_RAS,
    "right-anterior-superior": np.eye(4), "ras": np.eye(4),
}


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a ``.seg.nrrd``: its label value in the merged label map."""

    segment_id: str
    name: str
    label_value: int
    color: tuple[float, float, float]
    terminology: str = ""


def _affine_from_header(header: dict, path: Path) -> tuple[np.ndarray, list[int]]:
    """(4x4 voxel-to-RAS affine, indices of the three spatial axes) from an NRRD header."""
    space = str(header.get("space", "")).lower()
    if space not in _SPACE_SIGN:
        raise UnreadableFileError(
            f"NRRD world space '{space or 'missing'}' is not supported",
            "save the volume from Slicer or another tool with space 'left-posterior-superior'",
            path)
    directions = np.asarray(header.get("space directions"), dtype=np.float64)
    spatial = [a for a in range(directions.shape[0]) if np.all(np.isfinite(directions[a]))]
    if len(spatial) != 3 or directions.shape[1] != 3:
        raise UnreadableFileError(
            "the NRRD file does not describe a 3D volume (it needs three spatial axes)",
            "convert it to a 3D NRRD or NIfTI volume", path)
    affine = np.eye(4)
    affine[:3, :3] = directions[spatial].T
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    return _SPACE_SIGN[space] @ affine, spatial


def _read(path: Path) -> tuple[np.ndarray, dict]:
    try:
        header = nrrd.read_header(str(path))
    except (nrrd.NRRDError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableFileError(f"not a readable NRRD file ({exc})",
                                  "check that the file is a complete .nrrd, or re-export it", path)
    check_voxel_count(header.get("sizes", []), path)
    try:
        array, header = nrrd.read(str(path), index_order="F")
    except (nrrd.NRRDError, OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(f"the NRRD data are truncated or corrupt ({exc})",
                                  "re-copy or re-export the file", path)
    return array, header


def read_nrrd(path: Path) -> Volume:
    """Read a 3D scalar NRRD volume, indexed ``[i, j, k]`` in the file's axis order."""
    array, header = _read(path)
    affine, spatial = _affine_from_header(header, path)
    if array.ndim != 3:
        raise UnreadableFileError(
            f"the NRRD file has {array.ndim} axes; a scalar 3D volume is needed",
            "for a Slicer segmentation use the .seg.nrrd reader; otherwise export one 3D volume",
            path)
    return Volume(array, affine, str(path), {"source_format": "nrrd"})


def write_nrrd(volume: Volume, path: Path, extra_header: dict | None = None) -> None:
    """Write in Slicer's convention (LPS space, gzip), keeping the float64 affine exactly."""
    lps = _LPS_TO_RAS @ volume.affine
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:3, :3].T,
        "space origin": lps[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
    }
    header.update(extra_header or {})
    nrrd.write(str(path), np.asarray(volume.array), header, index_order="F")


def read_segmentation(path: Path) -> tuple[Volume, list[SegmentInfo]]:
    """Read a Slicer ``.seg.nrrd`` into one label map (value = segment's label value).

    Segments on separate layers (a 4D file) may overlap; the merged map keeps, at each
    voxel, the segment listed last, as Slicer's label-map export does.
    """
    array, header = _read(path)
    affine, spatial = _affine_from_header(header, path)
    segments: list[tuple[SegmentInfo, int]] = []
    index = 0
    while f"Segment{index}_ID" in header:
        key = f"Segment{index}_"
        color = tuple(float(c) for c in str(header.get(key + "Color", "0.5 0.5 0.5")).split())
        segments.append((SegmentInfo(
            header[key + "ID"], header.get(key + "Name", header[key + "ID"]),
            int(header.get(key + "LabelValue", index + 1)), color,
            _terminology_from_tags(header.get(key + "Tags", ""))),
            int(header.get(key + "Layer", 0))))
        index += 1
    if array.ndim == 3:
        layers = array[np.newaxis]
    else:
        layer_axis = next(a for a in range(array.ndim) if a not in spatial)
        layers = np.moveaxis(array, layer_axis, 0)
    merged = np.zeros(layers.shape[1:], dtype=np.uint16)
    for info, layer in segments:
        merged[layers[layer] == info.label_value] = info.label_value
    return Volume(merged, affine, str(path), {"source_format": "seg.nrrd"}), [s for s, _ in segments]


def write_segmentation(labels: Volume, segments: list[SegmentInfo], path: Path) -> None:
    """Write a one-layer ``.seg.nrrd`` that Slicer opens as a segmentation node."""
    extra: dict[str, str] = {}
    for index, info in enumerate(segments):
        key = f"Segment{index}_"
        mask = np.argwhere(labels.array == info.label_value)
        lo, hi = (mask.min(0), mask.max(0)) if mask.size else (np.zeros(3, int), -np.ones(3, int))
        extra.update({
            key + "ID": info.segment_id, key + "Name": info.name,
            key + "Color": " ".join(f"{c:.6g}" for c in info.color),
            key + "LabelValue": str(info.label_value), key + "Layer": "0",
            key + "Extent": " ".join(f"{a} {b}" for a, b in zip(lo, hi)),
            key + "Tags": f"TerminologyEntry:{info.terminology}|" if info.terminology else "",
        })
    extra["Segmentation_MasterRepresentation"] = "Binary labelmap"
    extra["Segmentation_ContainedRepresentationNames"] = "Binary labelmap|"
    write_nrrd(labels.with_array(labels.array.astype(np.uint8 if labels.array.max(initial=0) < 256
                                                      else np.uint16)), path, extra)


def _terminology_from_tags(tags: str) -> str:
    for item in str(tags).split("|"):
        name, _, value = item.partition(":")
        if name == "TerminologyEntry":
            return value
    return ""

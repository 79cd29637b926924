"""NRRD (``.nrrd``, ``.nhdr``) scalar volumes and Slicer ``.seg.nrrd`` segmentations (pynrrd).

NRRD keeps a float64 affine as text, so the affine survives a round trip exactly. World
space is converted between the file's (``left-posterior-superior`` as Slicer writes it, or
``right-anterior-superior``) and our RAS.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nrrd
import numpy as np

from ..errors import InvalidImageError, UnreadableFileError
from ..volume import Volume
from .limits import check_voxel_count
from .reasons import one_line, reason

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
            f"NRRD world space '{one_line(space, 60) or 'missing'}' is not supported",
            "save the volume from Slicer or another tool with space 'left-posterior-superior'",
            path)
    try:
        directions = np.asarray(header.get("space directions"), dtype=np.float64)
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    except (TypeError, ValueError):  # pynrrd keeps fields it cannot parse as they are
        directions = origin = np.zeros(0)
    spatial = [a for a in range(directions.shape[0]) if np.all(np.isfinite(directions[a]))
               ] if directions.ndim == 2 else []
    if directions.ndim != 2 or directions.shape[1] != 3 or len(spatial) != 3:
        raise UnreadableFileError(
            "the NRRD file does not describe a 3D volume (it needs three spatial axes)",
            "convert it to a 3D NRRD or NIfTI volume", path)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise UnreadableFileError(
            f"the NRRD space origin {origin.tolist()} is not a 3D point (damaged header)",
            "re-export the file", path)
    sizes = np.linalg.norm(directions[spatial], axis=1)
    if not np.all(sizes > 0):
        # A zero direction is a zero voxel size: nothing could be measured in mm.
        raise InvalidImageError(
            f"the header gives voxel size {' x '.join(f'{s:g}' for s in sizes)} mm (space "
            "directions); a voxel size must be a positive number",
            "set the voxel size in the converter that wrote the file, then export it again",
            path)
    affine = np.eye(4)
    affine[:3, :3] = directions[spatial].T
    affine[:3, 3] = origin
    return _SPACE_SIGN[space] @ affine, spatial


def _read(path: Path) -> tuple[np.ndarray, dict]:
    try:
        # pynrrd casts damaged numbers (e.g. sizes "nan") with a numpy warning, which
        # would add lines to the one-line error; the values are checked below.
        with np.errstate(all="ignore"):
            header = nrrd.read_header(str(path))
    except (nrrd.NRRDError, OSError, UnicodeDecodeError, ValueError, KeyError,
            IndexError) as exc:  # KeyError: an unknown type; IndexError: an empty vector
        raise UnreadableFileError(f"not a readable NRRD file ({reason(exc, with_type=True)})",
                                  "check that the file is a complete .nrrd, or re-export it", path)
    sizes = np.asarray(header.get("sizes", []))
    if sizes.ndim != 1 or not sizes.size or sizes.dtype.kind not in "iu" or sizes.min() < 1:
        raise UnreadableFileError(f"the NRRD sizes {one_line(header.get('sizes'), 60)} are not "
                                  "a positive number of voxels per axis (damaged header)",
                                  "re-export the file", path)
    check_voxel_count(sizes, path)
    try:
        with np.errstate(all="ignore"):  # the header is parsed again (see above)
            array, header = nrrd.read(str(path), index_order="F")
    except (nrrd.NRRDError, OSError, ValueError, EOFError, KeyError, zlib.error) as exc:
        # zlib.error: gzip-encoded data that are not gzip; OSError covers bzip2 and gzip
        # framing errors; KeyError: a type pynrrd has no numpy type for.
        raise UnreadableFileError(f"the NRRD data are truncated or corrupt ({reason(exc)})",
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
    if array.ndim not in (3, 4):
        raise UnreadableFileError(
            f"the segmentation has {array.ndim} axes; Slicer writes 3 (one layer) or 4",
            "save the segmentation from Slicer again", path)
    if array.ndim == 3:
        layers = array[np.newaxis]
    else:
        layer_axis = next(a for a in range(array.ndim) if a not in spatial)
        layers = np.moveaxis(array, layer_axis, 0)
    segments = _segments(header, len(layers), path)
    merged = np.zeros(layers.shape[1:], dtype=np.uint16)
    for info, layer in segments:
        merged[layers[layer] == info.label_value] = info.label_value
    return Volume(merged, affine, str(path), {"source_format": "seg.nrrd"}), [s for s, _ in segments]


def _segments(header: dict, n_layers: int, path: Path) -> list[tuple[SegmentInfo, int]]:
    """Each ``SegmentN_*`` description with its layer; a malformed one is one clear error."""
    segments: list[tuple[SegmentInfo, int]] = []
    index = 0
    while f"Segment{index}_ID" in header:
        key = f"Segment{index}_"
        try:
            color = tuple(float(c) for c in str(header.get(key + "Color", "0.5 0.5 0.5")).split())
            value, layer = (int(header.get(key + "LabelValue", index + 1)),
                            int(header.get(key + "Layer", 0)))
        except (TypeError, ValueError) as exc:
            raise UnreadableFileError(f"segment {index}'s description is malformed "
                                      f"({reason(exc)})",
                                      "save the segmentation from Slicer again", path) from exc
        if not 0 <= layer < n_layers or not 0 < value < 2 ** 16:
            raise UnreadableFileError(
                f"segment {index} has layer {layer} and label value {value}, outside the "
                f"file's {n_layers} layer(s) and 1-65535", "save the segmentation from "
                "Slicer again", path)
        segments.append((SegmentInfo(
            str(header[key + "ID"]), str(header.get(key + "Name", header[key + "ID"])), value,
            color, _terminology_from_tags(header.get(key + "Tags", ""))), layer))
        index += 1
    return segments


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

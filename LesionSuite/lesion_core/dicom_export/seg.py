"""DICOM Segmentation (SEG) objects with highdicom, on the source series' own frames.

:func:`build_seg` writes a :class:`~.specs.SegmentPlan` as a binary SEG that references
the source series: one frame per source slice and segment (slices where a segment is
empty are left out, as highdicom does by default; a SEG whose segments are all empty
keeps every frame, so it is still a valid object with an empty segment). Each segment
carries its name, its SNOMED CT category and type (:mod:`lesion_core.labels`, via
:mod:`.codes`), the brain as anatomic region, its display colour (CIELab), a tracking
id and UID, and the algorithm (name, version, model name and version).
:func:`build_fractional_seg` writes a probability map (e.g. the WMH activation, the ICH
class activation map) as a fractional SEG of one segment.

The segment map must lie on the source grid (``[i, j, k]``: column, row, slice in the
sorted order of ``source_datasets``); :func:`check_on_source_grid` refuses anything else,
since frames are matched to source images by position, not resampled.
:func:`read_seg_labels` reads a SEG back to a segment-number array on that grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..labels import BRAIN
from ..volume import Volume
from . import codes
from .specs import AlgorithmInfo, SegmentPlan, SegmentSpec

if TYPE_CHECKING:
    import highdicom as hd
    from pydicom import Dataset

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Largest disagreement (mm) between a voxel centre and its source pixel's position.
GRID_TOLERANCE_MM = 0.01
#: Series numbers of the exported objects: the source's plus these offsets.
SEG_SERIES_OFFSET = 1000


def source_affine(source_datasets: Sequence["Dataset"]) -> np.ndarray:
    """The voxel-to-RAS (mm) affine of the source series, slices in the given order:
    ``i`` along the row cosine, ``j`` along the column cosine, ``k`` from one slice's
    ImagePositionPatient to the next (the reader's convention, :mod:`lesion_core.io.dicom`)."""
    first = source_datasets[0]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    dr, dc = (float(v) for v in first.PixelSpacing)
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient]
                            for ds in source_datasets])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 3] = iop[:3] * dc, iop[3:] * dr, positions[0]
    if len(positions) > 1:
        lps[:3, 2] = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        lps[:3, 2] = np.cross(iop[:3], iop[3:]) * float(first.get("SliceThickness") or 1.0)
    return _LPS_TO_RAS @ lps


def check_on_source_grid(volume: Volume, source_datasets: Sequence["Dataset"]) -> None:
    """Refuse (ValueError) a volume that is not on the source series' grid: its shape must
    be (columns, rows, slices), its ``i``/``j`` steps the row/column pixel steps, and
    voxel ``(0, 0, k)`` at slice ``k``'s ImagePositionPatient (within
    :data:`GRID_TOLERANCE_MM` over the whole image)."""
    first = source_datasets[0]
    expected = (int(first.Columns), int(first.Rows), len(source_datasets))
    if tuple(volume.shape[:3]) != expected:
        raise ValueError(f"the label map's shape {tuple(volume.shape[:3])} is not the source "
                         f"series' (columns, rows, slices) {expected}")
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    dr, dc = (float(v) for v in first.PixelSpacing)
    to_ras = _LPS_TO_RAS[:3, :3]
    steps = (to_ras @ iop[:3] * dc, to_ras @ iop[3:] * dr)
    worst = max(float(np.abs(volume.affine[:3, axis] - step).max()) * (n - 1)
                for axis, (step, n) in enumerate(zip(steps, expected[:2])))
    for k, ds in enumerate(source_datasets):
        position = to_ras @ np.asarray([float(v) for v in ds.ImagePositionPatient])
        worst = max(worst, float(np.abs(volume.voxel_to_ras([0, 0, k]) - position).max()))
    if worst > GRID_TOLERANCE_MM:
        raise ValueError(f"the label map is not on the source series' grid (up to {worst:.3g} "
                         "mm away); export on the grid of the image that was read")


def frames(volume_array: np.ndarray) -> np.ndarray:
    """``[i, j, k]`` -> ``[k, j, i]``: one (rows, columns) frame per source slice."""
    return np.ascontiguousarray(np.transpose(volume_array, (2, 1, 0)))


def dicom_cielab(rgb: Sequence[float]) -> tuple[int, int, int]:
    """An sRGB colour (components 0..1) as DICOM's Recommended Display CIELab Value: L*
    0..100 and a*, b* -128..127 (D65 white) scaled onto 0..65535 (PS3.3 C.10.7.1.1)."""
    def linear(c: float) -> float:
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = (linear(min(max(float(c), 0.0), 1.0)) for c in rgb)
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           0.0193 * r + 0.1192 * g + 0.9505 * b)

    def f(t: float) -> float:
        return t ** (1.0 / 3) if t >= 216.0 / 24389 else 841.0 / 108 * t + 4.0 / 29

    fx, fy, fz = (f(v / w) for v, w in zip(xyz, (0.95047, 1.0, 1.08883)))
    lab = (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))
    return (round(min(max(lab[0], 0.0), 100.0) * 65535 / 100),
            *(round((min(max(v, -128.0), 127.0) + 128) * 65535 / 255) for v in lab[1:]))


def algorithm_identification(algorithm: AlgorithmInfo) -> "hd.AlgorithmIdentificationSequence":
    import highdicom as hd

    return hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.concept("123110", "DCM", "Artificial Intelligence"),
        version=algorithm.version, source=algorithm.manufacturer,
        parameters=algorithm.parameters)


def segment_description(spec: SegmentSpec, algorithm: AlgorithmInfo, tracking_uid: str
                        ) -> "hd.seg.SegmentDescription":
    """highdicom's description of one segment (name, codes, colour, algorithm)."""
    import highdicom as hd

    label = spec.label
    description = hd.seg.SegmentDescription(
        segment_number=spec.number, segment_label=spec.name[:64],
        segmented_property_category=codes.coded(label.category),
        segmented_property_type=codes.coded(label.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(algorithm),
        tracking_uid=tracking_uid, tracking_id=spec.tracking_id[:64],
        anatomic_regions=[codes.coded(label.region or BRAIN)])
    description.RecommendedDisplayCIELabValue = list(dicom_cielab(label.color))
    text = label.description
    if label.type.value in codes.UNVERIFIED:
        text = (f"{text} SNOMED CT code {label.type.value} not verified against a "
                "SNOMED CT release.").strip()
    if text:
        description.SegmentDescription = text[:1024]
    return description


def _equipment(algorithm: AlgorithmInfo) -> dict:
    return {"manufacturer": algorithm.manufacturer,
            "manufacturer_model_name": algorithm.model_name[:64] or "unknown",
            # One value: highdicom's multi-valued form trips a pydicom VR warning.
            "software_versions": f"lesion-suite {algorithm.version}",
            "device_serial_number": algorithm.model_version[:64] or "0"}


def _series_number(source_datasets: Sequence["Dataset"], offset: int) -> int:
    number = source_datasets[0].get("SeriesNumber")
    try:
        return int(number) + offset if number not in (None, "") else offset
    except (TypeError, ValueError):
        return offset


def build_seg(source_datasets: Sequence["Dataset"], plan: SegmentPlan,
              algorithm: AlgorithmInfo, content_label: str = "LESIONS",
              description: str = "", series_number: int | None = None,
              tracking_uids: dict[int, str] | None = None) -> "hd.seg.Segmentation":
    """A binary SEG of ``plan`` on ``source_datasets`` (the source series' datasets in
    slice order; their pixel data is not needed).

    ``content_label``: DICOM CS (upper case, <= 16 characters), e.g. ``"WMH"``;
    ``tracking_uids``: segment number -> Tracking UID (new ones by default).
    Raises ValueError when the segment map is not on the source grid.
    """
    import highdicom as hd

    check_on_source_grid(plan.segment_map, source_datasets)
    tracking_uids = tracking_uids or {}
    descriptions = [segment_description(spec, algorithm, tracking_uids.get(spec.number)
                                        or hd.UID()) for spec in plan.segments]
    pixels = frames(np.asarray(plan.segment_map.array))
    if pixels.max(initial=0) > len(plan.segments):
        raise ValueError("the segment map holds numbers without a segment description")
    pixels = pixels.astype(np.uint8 if len(plan.segments) < 256 else np.uint16)
    return hd.seg.Segmentation(
        source_images=list(source_datasets), pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(),
        series_number=series_number or _series_number(source_datasets, SEG_SERIES_OFFSET),
        sop_instance_uid=hd.UID(), instance_number=1,
        content_label=content_label[:16].upper(), content_description=description[:64] or None,
        # highdicom leaves out empty frames; with nothing segmented it keeps them all, so
        # an empty result is a SEG with an empty segment on every source frame.
        omit_empty_frames=bool(pixels.any()), **_equipment(algorithm))


def build_fractional_seg(source_datasets: Sequence["Dataset"], probability: Volume,
                         spec: SegmentSpec, algorithm: AlgorithmInfo,
                         content_label: str = "PROBABILITY", description: str = "",
                         series_number: int | None = None) -> "hd.seg.Segmentation":
    """A fractional (probability, 8 bits) SEG of one segment from ``probability``
    (values in [0, 1] on the source grid, e.g. the WMH activation or the ICH CAM)."""
    import highdicom as hd

    check_on_source_grid(probability, source_datasets)
    pixels = np.clip(frames(np.nan_to_num(np.asarray(probability.array, np.float32))), 0, 1)
    return hd.seg.Segmentation(
        source_images=list(source_datasets), pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        segment_descriptions=[segment_description(spec, algorithm, hd.UID())],
        series_instance_uid=hd.UID(),
        series_number=series_number or _series_number(source_datasets, SEG_SERIES_OFFSET + 1),
        sop_instance_uid=hd.UID(), instance_number=1,
        content_label=content_label[:16].upper(), content_description=description[:64] or None,
        omit_empty_frames=bool(pixels.any()), **_equipment(algorithm))


def read_seg_labels(seg, source_datasets: Sequence["Dataset"]) -> np.ndarray:
    """A SEG (a path, a pydicom Dataset or a highdicom Segmentation) as segment numbers
    ``[i, j, k]`` on the grid of ``source_datasets`` (0: no segment; overlapping
    segments are not written by :func:`build_seg`)."""
    import highdicom as hd
    import pydicom

    if not isinstance(seg, hd.seg.Segmentation):
        dataset = seg if isinstance(seg, pydicom.Dataset) else pydicom.dcmread(seg)
        seg = hd.seg.Segmentation.from_dataset(dataset)
    uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True,
        assert_missing_frames_are_empty=True)
    return np.ascontiguousarray(np.transpose(np.asarray(pixels), (2, 1, 0)))

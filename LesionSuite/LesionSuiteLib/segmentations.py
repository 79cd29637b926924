"""Label map (Volume) <-> vtkMRMLSegmentationNode, with names, colours and terminology.

A label map is a :class:`lesion_core.Volume` of integers, indexed ``[i, j, k]``, 0 =
background, one value per lesion class (see :mod:`lesion_core.labels`). Each value present
becomes one segment, imported with Slicer's own
``vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode`` on the label map's
exact grid (oblique and anisotropic grids included). Each segment carries:

- the name and colour of its :class:`~lesion_core.labels.LesionLabel`;
- the Slicer terminology entry (category, type, anatomic region with SNOMED CT codes),
  serialised by Slicer's ``vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry``
  and stored in the segment's terminology tag (``vtkSegment.SetTerminology`` exists only
  from Slicer 5.10; the tag is what it sets, and what Slicer 5.6 and 5.8 read);
- the tag ``LesionSuite.LabelValue`` holding its label value, so that the export back to a
  label map gives every voxel its original value.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Union

import numpy as np
import slicer
from vtkmodules.vtkCommonCore import reference

from lesion_core.errors import InvalidImageError
from lesion_core.labels import LesionLabel, as_value_map, label_by_name
from lesion_core.volume import Volume

from .volumes import (array_to_image_data, image_data_to_array, node_ijk_to_ras,
                      numpy_to_matrix)

LABEL_VALUE_TAG = "LesionSuite.LabelValue"
TERMINOLOGY_CONTEXT = "LesionSuite lesions"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

# typing.Union: a module-level "|" union fails on the Python 3.9 of Slicer 5.6/5.8.
LabelsArg = Optional[Union[Iterable[LesionLabel], Mapping[int, LesionLabel]]]


def terminology_string(label: LesionLabel) -> str:
    """Slicer's serialised terminology entry for ``label`` (category, type, region)."""
    region = label.region
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT,
        label.category.value, label.category.scheme, label.category.meaning,
        label.type.value, label.type.scheme, label.type.meaning,
        "", "", "",
        ANATOMIC_CONTEXT if region else "",
        region.value if region else "", region.scheme if region else "",
        region.meaning if region else "",
        "", "", "")


def segment_terminology(segment) -> str:
    """The serialised terminology entry of a ``vtkSegment`` ("" when it has none), read
    from its tag as every Slicer since 5.0 stores it."""
    value = reference("")
    if not segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), value):
        return ""
    return str(value)


def oriented_image(volume: Volume) -> "slicer.vtkOrientedImageData":
    """``vtkOrientedImageData`` with the voxels and voxel->RAS geometry of ``volume``."""
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(array_to_image_data(volume.array))
    image.SetImageToWorldMatrix(numpy_to_matrix(volume.affine))
    return image


def _integer_labels(volume: Volume) -> np.ndarray:
    """The label array as integers; raise if the values are not whole numbers >= 0."""
    array = np.asarray(volume.array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InvalidImageError("the label map holds non-integer values",
                                    "Pass a label map (integers, 0 = background).",
                                    volume.source)
        array = array.astype(np.int32)
    if array.dtype.kind not in "ui":
        raise InvalidImageError(f"label map of type {array.dtype}",
                                "Pass a label map of integers (0 = background).", volume.source)
    if array.size and array.min() < 0:
        raise InvalidImageError("the label map holds negative values",
                                "Label values must be 0 (background) or positive.",
                                volume.source)
    return array


def _style_segment(segment, value: int, label: LesionLabel | None) -> None:
    segment.SetTag(LABEL_VALUE_TAG, str(int(value)))
    if label is None:
        segment.SetName(f"Label {int(value)}")
        return
    segment.SetName(label.name)
    segment.SetColor(*(float(c) for c in label.color))
    segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology_string(label))


def labelmap_to_segmentation(scene, label_volume: Volume, labels: LabelsArg = None,
                             name: str = "Segmentation", reference_node=None,
                             include_empty: bool = False, segmentation_node=None):
    """Turn a label map into a segmentation node, one segment per label value.

    Args:
        scene: the ``vtkMRMLScene``.
        label_volume: integer ``[i, j, k]`` label map with its voxel->RAS affine.
        labels: the lesion labels (list or ``{value: label}``) naming and colouring the
            segments; values without a label become segments named ``"Label <value>"``.
        name: name of the new segmentation node.
        reference_node: volume node whose grid is the segmentation's reference geometry
            (the image the labels were made on); default: the label map's own grid.
        include_empty: also add (empty) segments for labels absent from the map.
        segmentation_node: existing node to add the segments to instead of a new one.
    """
    array = _integer_labels(label_volume)
    label_map = {} if labels is None else as_value_map(labels)
    node = segmentation_node
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    image = oriented_image(label_volume.with_array(array))
    if reference_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    elif segmentation.GetNumberOfSegments() == 0:
        segmentation.SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
            slicer.vtkSegmentationConverter.SerializeImageGeometry(image))

    before = set(segmentation.GetSegmentIDs())
    present = [int(v) for v in np.unique(array) if v != 0]
    if present:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            image, node, "")
        if not ok:
            raise RuntimeError(f"Slicer could not import the label map into '{name}'")
    new_ids = [sid for sid in segmentation.GetSegmentIDs() if sid not in before]
    for segment_id in new_ids:
        segment = segmentation.GetSegment(segment_id)
        value = int(segment.GetLabelValue())
        _style_segment(segment, value, label_map.get(value))
    if include_empty:
        for value, label in sorted(label_map.items()):
            if value not in present:
                segment_id = segmentation.AddEmptySegment("", label.name)
                _style_segment(segmentation.GetSegment(segment_id), value, label)
    return node


def _reference_geometry(reference) -> tuple[np.ndarray, tuple[int, int, int]]:
    if isinstance(reference, Volume):
        return reference.affine, tuple(int(n) for n in reference.shape[:3])
    image = reference.GetImageData()
    if image is None:
        raise InvalidImageError(f"reference volume '{reference.GetName()}' has no image data",
                                "Choose a loaded volume as reference.")
    return node_ijk_to_ras(reference), tuple(int(n) for n in image.GetDimensions())


def segment_label_values(segmentation_node, labels: LabelsArg = None) -> dict[str, int]:
    """``{segment ID: label value}``: the segment's tag, else its label by name, else the
    next free value above all others."""
    label_list = list(as_value_map(labels).values()) if labels is not None else None
    segmentation = segmentation_node.GetSegmentation()
    values: dict[str, int] = {}
    untagged = []
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        tag = reference("")
        if segment.GetTag(LABEL_VALUE_TAG, tag) and str(tag).strip().isdigit():
            values[segment_id] = int(str(tag))
            continue
        label = label_by_name(segment.GetName(), label_list)
        if label is not None:
            values[segment_id] = int(label.value)
        else:
            untagged.append(segment_id)
    next_value = max(values.values(), default=0) + 1
    for segment_id in untagged:
        values[segment_id] = next_value
        next_value += 1
    return values


def segmentation_to_labelmap(segmentation_node, reference: Volume | object,
                             labels: LabelsArg = None, dtype=None,
                             segment_ids: Iterable[str] | None = None) -> Volume:
    """Export segments into one label map on the grid of ``reference``.

    Args:
        segmentation_node: the ``vtkMRMLSegmentationNode``.
        reference: a :class:`Volume` or a volume node whose grid (affine, shape) the label
            map takes; segments are resampled onto it (nearest neighbour), exactly when the
            grids agree.
        labels: lesion labels, used to find the value of segments made in Slicer without
            the ``LesionSuite.LabelValue`` tag (matched by name).
        dtype: output type; default ``uint8``, or ``uint16`` when a value exceeds 255.
        segment_ids: the segments to export (default all, in segmentation order; where
            segments overlap the later one wins).

    Returns:
        integer ``[i, j, k]`` label map, 0 = background.
    """
    affine, shape = _reference_geometry(reference)
    values = segment_label_values(segmentation_node, labels)
    ids = list(segment_ids) if segment_ids is not None else list(values)
    if dtype is None:
        dtype = np.uint8 if max((values[s] for s in ids), default=0) <= 255 else np.uint16
    out = np.zeros(shape, dtype=dtype)

    reference_image = oriented_image(Volume(np.zeros(shape, dtype=np.uint8), affine))
    if not segmentation_node.GetSegmentation().ContainsRepresentation(
            slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()):
        segmentation_node.CreateBinaryLabelmapRepresentation()
    for segment_id in ids:
        segment_image = slicer.vtkOrientedImageData()
        if not segmentation_node.GetBinaryLabelmapRepresentation(segment_id, segment_image):
            continue
        extent = segment_image.GetExtent()
        if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
            continue  # empty segment
        resampled = slicer.vtkOrientedImageData()
        slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            segment_image, reference_image, resampled, False, True)
        mask = image_data_to_array(resampled) != 0
        if mask.shape != shape:
            raise RuntimeError(f"segment '{segment_id}' resampled to {mask.shape}, not {shape}")
        out[mask] = values[segment_id]
    return Volume(out, affine.copy(), source=segmentation_node.GetName())

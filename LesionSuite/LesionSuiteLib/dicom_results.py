"""A result's DICOM SEG and SR from its MRML nodes: the source series and the export.

The task Logics' :meth:`~.task_logic.TaskLogic.export_dicom` writes a result as the DICOM
Segmentation and TID 1500 Structured Report of :mod:`lesion_core.dicom_export`; this
module holds what it needs from the Slicer side, with no Qt and no application:

- **the source series.** A volume loaded through Slicer's DICOM module carries the node
  attribute ``DICOM.instanceUIDs`` (:data:`INSTANCE_UIDS_ATTRIBUTE`): the SOP Instance
  UIDs of its images, separated by spaces. :func:`source_files` turns them into file
  paths with a *lookup* (UID -> path). The default lookup is Slicer's DICOM database,
  ``slicer.dicomDatabase.fileForInstance``, imported only when no lookup is given, so
  the Logic runs without the application (tests and scripts pass their own lookup, or
  the files themselves). A volume without the attribute (read from NIfTI or NRRD, or
  made in Slicer) has no source to reference: :func:`has_dicom_source` is False.
- **the headers on the volume's grid** (:func:`source_datasets`): read without pixel
  data and put in the order of the volume's slices by their ImagePositionPatient.
- **the label map of a segmentation** (:func:`segmentation_label_map`): the segments as
  they are now, with the reader's Segment Editor edits, on the input's *local* grid (the
  DICOM frame of reference: a parent transform is not part of the export). A non-empty
  segment the task does not know is refused by name rather than dropped or guessed.
- **the export** (:func:`export_to_folder`): one
  :class:`~lesion_core.errors.LesionSuiteError` for a label map off the source grid
  and for a folder that cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np

from lesion_core.errors import InvalidImageError, LesionSuiteError, UnreadableFileError
from lesion_core.volume import Volume

from . import mrml_bridge as mb

if TYPE_CHECKING:
    from pydicom import Dataset

#: Node attribute Slicer's DICOM module sets on a volume it loaded: the SOP Instance UIDs
#: of the series' images, separated by spaces.
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"

# typing.Optional / Union: a module-level "|" union fails on the Python 3.9 of Slicer 5.6/5.8.
#: UID -> the file of that instance (empty or None when unknown).
Lookup = Callable[[str], Optional[Union[str, Path]]]


def instance_uids(volume_node) -> list[str]:
    """The SOP Instance UIDs of the images ``volume_node`` was loaded from (empty when it
    was not loaded through Slicer's DICOM module)."""
    value = volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) if volume_node is not None \
        else None
    return str(value or "").split()


def has_dicom_source(volume_node) -> bool:
    """Whether ``volume_node`` names its source DICOM images (:data:`INSTANCE_UIDS_ATTRIBUTE`)."""
    return bool(instance_uids(volume_node))


def dicom_database_lookup() -> Lookup:
    """Slicer's DICOM database as a lookup: ``slicer.dicomDatabase.fileForInstance``
    (imported here, in the application only)."""
    import slicer

    database = getattr(slicer, "dicomDatabase", None)
    if database is None:
        raise InvalidImageError("Slicer's DICOM database is not open",
                                "Open the DICOM module once (it opens the database), then "
                                "export again")
    return database.fileForInstance


def source_files(volume_node, lookup: Lookup | None = None) -> list[Path]:
    """The files of the images ``volume_node`` was loaded from, in the order of its
    :data:`INSTANCE_UIDS_ATTRIBUTE`, each found with ``lookup`` (UID -> path; default
    :func:`dicom_database_lookup`). Raises ``InvalidImageError`` for a volume not loaded
    from DICOM, ``UnreadableFileError`` when an image is unknown or its file is gone."""
    name = volume_node.GetName() if volume_node is not None else "(none)"
    uids = instance_uids(volume_node)
    if not uids:
        raise InvalidImageError(
            f"volume '{name}' was not loaded from DICOM (it has no {INSTANCE_UIDS_ATTRIBUTE} "
            "attribute), so there is no source series for a DICOM SEG and SR to reference",
            "Load the series through Slicer's DICOM module and run the analysis on that "
            "volume, or save the result as files instead")
    lookup = lookup or dicom_database_lookup()
    files, missing = [], []
    for uid in uids:
        found = lookup(uid)
        path = Path(str(found)) if found else None
        if path is None or not path.is_file():
            missing.append(uid)
        else:
            files.append(path)
    if missing:
        raise UnreadableFileError(
            f"{len(missing)} of the {len(uids)} source images of volume '{name}' are not in "
            f"the DICOM database or their files are gone (first: {missing[0]})",
            "Import the series into Slicer's DICOM database again, or give the source files")
    return files


def source_datasets(files: Sequence[str | Path], grid: Volume) -> list["Dataset"]:
    """The headers of ``files`` (pixel data left out) in the order of ``grid``'s slices
    (``k``), by their ImagePositionPatient. Raises ``UnreadableFileError`` for a file that
    is not DICOM and ``InvalidImageError`` when the count is not the volume's slices."""
    import pydicom.errors

    from lesion_core.dicom_export.export import read_source_datasets

    files = [Path(f) for f in files]
    n_slices = int(grid.shape[2])
    if not files:
        raise InvalidImageError("no source DICOM file was given",
                                "Give the files of the series the volume was loaded from")
    try:
        datasets = read_source_datasets(files)
    except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
        raise UnreadableFileError(f"a source image cannot be read as DICOM ({exc})",
                                  "Give the files of the series the volume was loaded from",
                                  source=files[0].parent) from exc
    distinct = len({str(ds.SOPInstanceUID) for ds in datasets})
    if distinct != n_slices or len(datasets) != n_slices:
        raise InvalidImageError(
            f"the volume has {n_slices} slices but its DICOM source {len(datasets)} images "
            f"({distinct} distinct)",
            "Export from the volume as Slicer's DICOM module loaded it; an enhanced "
            "(multi-frame) source is not supported yet", source=files[0].parent)
    return _in_slice_order(datasets, grid)


def _in_slice_order(datasets: list["Dataset"], grid: Volume) -> list["Dataset"]:
    """``datasets`` sorted by the slice index ``k`` of their ImagePositionPatient on
    ``grid`` (as given when one has no position: the export's grid check then says why)."""
    to_voxel = np.linalg.inv(np.asarray(grid.affine, np.float64))
    ks = []
    for ds in datasets:
        position = ds.get("ImagePositionPatient")
        if position is None or len(position) != 3:
            return list(datasets)
        x, y, z = (float(v) for v in position)
        ks.append(float((to_voxel @ np.array([-x, -y, z, 1.0]))[2]))  # LPS -> RAS
    return [datasets[i] for i in sorted(range(len(datasets)), key=ks.__getitem__)]


def segmentation_label_map(segmentation_node, grid: Volume, labels: Sequence,
                           what: str) -> Volume:
    """The segments of ``segmentation_node`` that are one of ``labels`` (by their
    ``LesionSuite.LabelValue`` tag, else by name) as one label map on ``grid`` (values:
    the labels' values; where segments overlap the later one wins), as the segmentation
    is now. A non-empty segment that is none of them raises ``InvalidImageError`` naming
    it (``what``: the task's lesions, for the message); empty ones are left out."""
    values = mb.segment_label_values(segmentation_node, labels)
    known = {int(label.value) for label in labels}
    segmentation = segmentation_node.GetSegmentation()
    others = [sid for sid, value in values.items() if value not in known]
    drawn = [sid for sid in others
             if mb.segmentation_to_labelmap(segmentation_node, grid, labels,
                                            segment_ids=[sid]).array.any()]
    if drawn:
        names = ", ".join(f"'{segmentation.GetSegment(sid).GetName()}'" for sid in drawn)
        raise InvalidImageError(
            f"segment(s) {names} of '{segmentation_node.GetName()}' are not {what} segments "
            "the DICOM export knows",
            "Name each segment after what it is ("
            + ", ".join(f"'{label.name}'" for label in labels)
            + "), or delete the other segments, then export again")
    return mb.segmentation_to_labelmap(segmentation_node, grid, labels,
                                       segment_ids=[sid for sid in values if sid not in others])


def export_to_folder(task: str, labels: Volume, summary: dict,
                     datasets: Sequence["Dataset"], folder: str | Path, stem: str,
                     review=None) -> dict[str, Path]:
    """:func:`lesion_core.dicom_export.export.export_result`, written as
    ``<stem>_seg.dcm`` and ``<stem>_sr.dcm`` into ``folder`` (made if missing); role
    (``dicom_seg``, ``dicom_sr``) -> path. A label map off the source grid is an
    ``InvalidImageError``, a folder that cannot be written a ``LesionSuiteError``."""
    from lesion_core.dicom_export.export import export_result

    try:
        result = export_result(task, labels, summary, datasets, review=review)
    except ValueError as exc:
        raise InvalidImageError(
            f"the result cannot be written on its DICOM source series ({exc})",
            "Export from the volume as Slicer's DICOM module loaded it: not resampled, "
            "cropped, or with a transform hardened on it") from exc
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return result.write(folder, stem)
    except OSError as exc:
        raise LesionSuiteError(f"cannot write the DICOM SEG and SR ({exc.strerror or exc})",
                               "Choose a folder you may write to, on a disk with free space",
                               source=folder) from exc


__all__ = ["INSTANCE_UIDS_ATTRIBUTE", "Lookup", "dicom_database_lookup", "export_to_folder",
           "has_dicom_source", "instance_uids", "segmentation_label_map", "source_datasets",
           "source_files"]

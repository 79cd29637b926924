"""The reader's review of one CT's slices: a state machine in plain Python.

:class:`ICHSliceReview` binds a feedback-store case to a result's slice table (row ``r``
is the axial slice ``slices[r]["slice"]``) and its editable segmentation. It holds

- the *current* row, moved by :meth:`select` (a click on the table), :meth:`next` and
  :meth:`previous`; :meth:`jump_position` is where the widget sends the slice views (the
  haemorrhage on that slice, else its centre);
- the reader's *labels*: :meth:`mark_haemorrhage` (with subtypes) and
  :meth:`mark_no_haemorrhage` each write one record at once
  (:func:`lesion_core.ich.reader_labels.record_slice_label`) before anything on screen
  changes; :meth:`undo` takes back this review's last one. The table's ``reader`` column
  always shows the store's standing labels (:meth:`reload`), so reopening the case or
  re-running the model shows them again and never changes one;
- the reader's *mask*: :meth:`save_reader_mask` stores the edited segmentation as a new
  version of the case's reader mask (never overwriting an earlier one);
  :meth:`has_unsaved_edits` says whether the segmentation differs from what was loaded
  or last saved.

Slice indices ``k`` count along the CT's axial array axis in its own voxel order, as
``ich_slices.csv`` and the store do (see :mod:`lesion_core.ich.reader_labels`). The case,
the reader, the undo stack and the case image are
:class:`LesionSuiteLib.case_review.CaseReview`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from lesion_core.errors import FeedbackStoreError
from lesion_core.feedback import CaseFeedback, Record
from lesion_core.ich import reader_labels as rl
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib.case_review import CaseReview

from .outputs import ICH_LABELS, READER_COLUMN, READER_MASK_ATTRIBUTE, slice_point


class ICHSliceReview(CaseReview):
    """Slice labels and the reader's mask of one CT, kept in step with the nodes.

    Args:
        case: the case in the feedback store.
        slices: the rows of ``ich_slices.csv`` (dicts with ``slice``, ``probability``,
            ``present``, ...), in table order.
        table_node: the result's slice table (None: no display).
        segmentation_node: the editable segmentation (None: no mask saving).
        image: the case's image (a Volume, or its file) named in the store before the
            first record; None to name none.
        grid: the CT's voxels in its local geometry: the grid masks are saved on and
            slice positions are computed on.
        labels: the label map the segmentation was made from (the baseline of
            :meth:`has_unsaved_edits`); None: empty.
        slice_axis: the CT's axial array axis (0, 1 or 2).
        reader, model_id, model_version: stored with each record.
        position: ``k -> world RAS (mm)`` for :meth:`jump_position` (default: from
            ``grid``, no parent transform).
        name: the CT's name, for the mask node's new name.
    """

    default_modality = "CT"

    def __init__(self, case: CaseFeedback, slices: Iterable[dict], table_node=None,
                 segmentation_node=None, image: Volume | Path | None = None,
                 grid: Volume | None = None, labels: Volume | None = None,
                 slice_axis: int = 2, reader: str | None = None,
                 model_id: str | None = None, model_version: str | None = None,
                 position: Callable[[int], Any] | None = None, name: str = "CT"):
        super().__init__(case, image, "CT", reader, model_id, model_version)
        self.slices = [dict(row) for row in slices]
        self.table_node, self.segmentation_node = table_node, segmentation_node
        self.grid, self.slice_axis = grid, int(slice_axis)
        self.name = name
        self._position = position
        self._baseline = None if labels is None else np.asarray(labels.array)
        self.current: int | None = 0 if self.slices else None
        self.labels: dict[int, rl.SliceLabel] = {}
        self.reload()

    @classmethod
    def result_arguments(cls, result, opened) -> dict[str, Any]:
        """From a :class:`.logic.ICHResultNodes`: its slices, nodes and geometry."""
        return {"slices": result.slices, "table_node": result.table,
                "segmentation_node": result.segmentation, "grid": opened.image,
                "labels": result.labels, "slice_axis": result.slice_axis,
                "position": result.slice_position, "name": result.input.GetName()}

    # ------------------------------------------------------------------ state
    @property
    def current_slice(self) -> int | None:
        """``k`` of the current row."""
        return None if self.current is None else int(self.slices[self.current]["slice"])

    @property
    def current_label(self) -> rl.SliceLabel | None:
        """The reader's standing label of the current slice, or None."""
        k = self.current_slice
        return None if k is None else self.labels.get(k)

    def row_of_slice(self, k: int) -> int:
        for row, facts in enumerate(self.slices):
            if int(facts["slice"]) == int(k):
                return row
        raise IndexError(f"slice {k} has no row in this result")

    def reload(self) -> dict[int, rl.SliceLabel]:
        """Read the standing labels from the store and show them in the table."""
        self.labels = self.read_standing(lambda: rl.standing_slice_labels(self.case))
        self.show_column(self.table_node, READER_COLUMN, [
            _describe(self.labels.get(int(facts["slice"]))) for facts in self.slices])
        return dict(self.labels)

    def counts(self) -> dict[str, int]:
        """``slices``, ``predicted`` (slices the model calls haemorrhage), ``labelled``,
        ``haemorrhage`` / ``no_haemorrhage`` (the reader's) and ``disagree`` (labelled
        slices where the reader and the model differ)."""
        present = {int(r["slice"]): bool(r.get("present")) for r in self.slices}
        return {"slices": len(self.slices), "predicted": sum(present.values()),
                "labelled": len(self.labels),
                "haemorrhage": sum(1 for lab in self.labels.values() if lab.haemorrhage),
                "no_haemorrhage": sum(1 for lab in self.labels.values() if not lab.haemorrhage),
                "disagree": sum(1 for k, lab in self.labels.items()
                                if k in present and lab.haemorrhage != present[k])}

    # ------------------------------------------------------------- navigation
    def select(self, row: int) -> int:
        """Make table row ``row`` the current one; returns its slice ``k``."""
        if not 0 <= row < len(self.slices):
            raise IndexError(f"there is no slice row {row}")
        self.current = int(row)
        return self.current_slice

    def next(self) -> int | None:
        """Move to the next row (stays on the last); returns the current row."""
        if self.current is not None:
            self.current = min(self.current + 1, len(self.slices) - 1)
        return self.current

    def previous(self) -> int | None:
        """Move to the previous row (stays on the first)."""
        if self.current is not None:
            self.current = max(self.current - 1, 0)
        return self.current

    def jump_position(self) -> tuple[float, float, float] | None:
        """World RAS (mm) where the slice views show the current slice."""
        k = self.current_slice
        if k is None:
            return None
        if self._position is not None:
            return tuple(self._position(k))
        if self.grid is None:
            return None
        return tuple(float(c) for c in slice_point(self.grid, self.slice_axis, k,
                                                   self._baseline))

    # ------------------------------------------------------------------ labels
    def mark_haemorrhage(self, subtypes: Iterable[str] = (), row: int | None = None
                         ) -> Record | None:
        """Label a slice (default: the current one) haemorrhage, with the subtypes seen
        (keys of :data:`lesion_core.ich.reader_labels.SUBTYPE_KEYS`; none: unknown)."""
        return self.mark(True, subtypes, row)

    def mark_no_haemorrhage(self, row: int | None = None) -> Record | None:
        """Label a slice (default: the current one) as showing no haemorrhage."""
        return self.mark(False, (), row)

    def mark(self, haemorrhage: bool, subtypes: Iterable[str] = (), row: int | None = None
             ) -> Record | None:
        """Write one label at once; None (nothing written) when it is already the standing
        one or there is no row. Raises ``FeedbackStoreError`` (nothing written, nothing
        changed) for an invalid label or a store that cannot be written."""
        row = self.current if row is None else row
        if row is None:
            return None
        k = self.select(row)
        label = rl.check_slice_label(k, haemorrhage, subtypes, self.slice_axis,
                                     self.case.records_path)
        standing = self.labels.get(k)
        if standing is not None and (standing.haemorrhage, standing.subtypes) == \
                (label.haemorrhage, label.subtypes):
            return None
        self.store_image()
        return self.wrote(rl.record_slice_label(
            self.case, k, label.haemorrhage, label.subtypes, slice_axis=self.slice_axis,
            reader=self.reader, model_id=self.model_id, model_version=self.model_version))

    def take_back(self, record_id: str) -> None:
        rl.undo_slice_label(self.case, record_id, reader=self.reader)

    # ------------------------------------------------------------------ mask
    def edited_label_map(self) -> Volume:
        """The segmentation as it is now, as a label map on the CT's local grid (value =
        subtype, see :data:`lesion_core.labels.ICH_SUBTYPES`)."""
        if self.segmentation_node is None or self.grid is None:
            raise FeedbackStoreError("this review has no segmentation to save",
                                     "Open the review from a result (ICHSliceReview."
                                     "for_result)", source=self.case.folder)
        return mb.segmentation_to_labelmap(self.segmentation_node, self.grid, ICH_LABELS)

    def has_unsaved_edits(self) -> bool:
        """Whether the segmentation differs from what was loaded or last saved."""
        if self.segmentation_node is None or self.grid is None \
                or self.segmentation_node.GetScene() is None:
            return False
        now = self.edited_label_map().array
        base = np.zeros(now.shape, now.dtype) if self._baseline is None else self._baseline
        return not np.array_equal(now, base)

    def save_reader_mask(self) -> Record:
        """Store the edited segmentation as a new version of the case's reader mask
        (earlier versions are kept) and name the node after it; returns the record.
        Raises ``FeedbackStoreError`` (nothing stored) for a segment that is not an ICH
        subtype or a store that cannot be written."""
        volume = self.edited_label_map()
        rl.check_reader_mask(volume, self.case.labels_dir)
        self.store_image()
        record = rl.save_reader_mask(self.case, volume, reader=self.reader,
                                     model_id=self.model_id,
                                     model_version=self.model_version)
        version = int(record.payload["version"])
        self.segmentation_node.SetAttribute(READER_MASK_ATTRIBUTE, str(version))
        self.segmentation_node.SetName(f"{self.name} ICH (reader v{version})")
        self._baseline = np.asarray(volume.array)
        return record

    def reader_mask_versions(self) -> list[Path]:
        """The stored versions of this case's reader mask, oldest first."""
        return rl.reader_mask_versions(self.case)


def _describe(label: rl.SliceLabel | None) -> str:
    return label.describe() if label is not None else ""


__all__ = ["ICHSliceReview"]

"""What the three reviews share: one case of the feedback store, reviewed by one reader.

The task modules' reviews (WMH ratings, CMB decisions, ICH slice labels) derive from
:class:`CaseReview`, which holds

- the *case*: the volume node's case in the store (:func:`.review_cases.open_volume_case`:
  by the digest of its image, so a renamed volume keeps its case), opened from a result by
  :meth:`CaseReview.for_result`;
- who writes and on what: the reader, the model id and version of the result reviewed,
  and the case's image with its modality, named in the store before the first record
  (training needs it) and then forgotten;
- the *undo stack*: the records this review wrote, taken back last first by
  :meth:`CaseReview.undo` with the task's own undo record;
- the lines of the records file that could not be read (a record cut off by a crash),
  for the panel to report.

Each task's review keeps its own rules: what a record holds, the standing state it reads
(:meth:`CaseReview.reload`) and how the result's nodes show it. Every change is one record
written at once through the task's ``lesion_core`` functions, so the store's format is
theirs alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from lesion_core.feedback import CaseFeedback, Record
from lesion_core.volume import Volume

from .review_cases import VolumeCase, open_volume_case, read_noting_damage, store_case_image

T = TypeVar("T")


class CaseReview:
    """One reader's work on one case (see the module notes).

    Args:
        case: the case in the feedback store.
        image: the case's image (a Volume, or its file), named in the store before the
            first record; None to name none.
        modality: recorded with the image (default: :attr:`default_modality`).
        reader: the reader's name (default: the operating-system login).
        model_id, model_version: the model whose result is reviewed.
    """

    #: The modality recorded with the case image when none is given.
    default_modality = ""

    def __init__(self, case: CaseFeedback, image: Volume | Path | None = None,
                 modality: str | None = None, reader: str | None = None,
                 model_id: str | None = None, model_version: str | None = None):
        self.case = case
        self.image = image
        self.modality = modality or self.default_modality
        self.reader = reader or None
        self.model_id, self.model_version = model_id, model_version
        #: Lines of the records file that could not be read (e.g. cut off by a crash).
        self.skipped_lines: list[str] = []
        self._undo_stack: list[str] = []

    @classmethod
    def for_result(cls, result, feedback_root: str | Path, reader: str | None = None,
                   **options):
        """The review of a task's result (the case of its input volume), showing the
        store's standing work on the result's nodes. ``options``: the task's own."""
        opened = open_volume_case(feedback_root, result.input)
        return cls(opened.case, image=opened.stored_image, reader=reader,
                   model_id=result.model_id, model_version=result.model_version,
                   **cls.result_arguments(result, opened), **options)

    @classmethod
    def result_arguments(cls, result, opened: VolumeCase) -> dict[str, Any]:
        """The task's constructor arguments taken from a result (its nodes, its facts)."""
        return {}

    # ------------------------------------------------------------------ state
    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def can_undo(self) -> bool:
        """Whether this review wrote a record that :meth:`undo` can take back."""
        return bool(self._undo_stack)

    def reload(self) -> Any:
        """Read the standing work from the store and show it on the nodes."""
        raise NotImplementedError

    def read_standing(self, read: Callable[[], T]) -> T:
        """``read()`` (the task's standing state of :attr:`case`); the lines the store
        skipped are kept in :attr:`skipped_lines` instead of being warned about."""
        value, self.skipped_lines = read_noting_damage(read)
        return value

    # ---------------------------------------------------------------- changes
    def store_image(self) -> None:
        """Name the case's image in the store before the first record (training needs
        it); once stored, later records need not check again."""
        if self.image is not None:
            store_case_image(self.case, self.image, self.modality)
            self.image = None

    def wrote(self, record: Record) -> Record:
        """Note a record this review wrote (for :meth:`undo`) and show the new state."""
        self._undo_stack.append(record.record_id)
        self.reload()
        return record

    def undo(self) -> bool:
        """Take back the last record written through this review; False when none."""
        if not self._undo_stack:
            return False
        self.take_back(self._undo_stack.pop())
        self.reload()
        return True

    def take_back(self, record_id: str) -> None:
        """Write the record that undoes ``record_id`` (the task's own undo record)."""
        self.case.undo(record_id, reader=self.reader)

    # ------------------------------------------------------------------ nodes
    @staticmethod
    def show_column(table_node, column_name: str, texts: Sequence[str]) -> None:
        """Put ``texts[row]`` in the table's ``column_name`` (rows the table lacks are
        left out; no table or no such column: nothing)."""
        if table_node is None:
            return
        table = table_node.GetTable()
        column = table.GetColumnByName(column_name)
        if column is None:
            return
        for row, text in enumerate(texts[:table.GetNumberOfRows()]):
            column.SetValue(row, text)
        column.Modified()
        table.Modified()
        table_node.Modified()

"""The reader's review of one case's CMB candidates: a state machine in plain Python.

:class:`CMBReview` binds a feedback-store case to the candidates markups node and the table
node of a result (same order: control point ``n`` is table row ``n``). It holds

- the *items*: one per candidate of this run (in the JSON's order), then one per standing
  decision that no candidate of this run takes over (a microbleed the reader added, or an
  earlier run's candidate this run no longer finds);
- the *current* item, moved by :meth:`next` / :meth:`previous` (which skip hidden items)
  or :meth:`select`; :meth:`jump_position` is where the widget centres the slice views;
- the *filter*: a candidate dropped by stage 2 is hidden unless :attr:`show_rejected` is
  set, so the reader can rescue a microbleed the student classifier dropped; one dropped
  by the clean-up rules stays hidden; an item with a decision is always shown.

:meth:`accept`, :meth:`reject` and :meth:`add` each write one record at once
(:func:`lesion_core.cmb.reader_decisions.record_decision`) before anything on screen
changes; :meth:`undo` takes back this review's last one. The points and rows always show
the store's standing decisions (:meth:`reload`), matched to this run's candidates by
position (3 mm), so reopening a case or re-running the model restores every decision and
never overwrites one. A point's *selected* state means "counts as a microbleed" (accepted,
added, or kept by the model and not yet rejected), so its colour shows the current set;
its description ends with the reader's decision.

Coordinates: RAS millimetres in the input volume's own (local) frame, as the candidates
JSON gives them; the markups node lies under the input's parent transform, so
:meth:`jump_position` (world RAS) is where the point is shown.

The case, the reader, the undo stack and the case image are
:class:`LesionSuiteLib.case_review.CaseReview`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesion_core.cmb import reader_decisions as rd
from lesion_core.errors import InvalidImageError
from lesion_core.feedback import CaseFeedback, Record
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib.case_review import CaseReview

from .outputs import TABLE_COLUMNS, describe, table_row

#: Diameter (mm) given to a microbleed the reader adds, unless told otherwise.
ADDED_DIAMETER_MM = 3.0


@dataclass
class ReviewItem:
    """One point of the review. ``candidate``: its entry of the candidates JSON, or None
    for a point no candidate of this run matches; ``record``: the standing decision or
    None; ``target``: the store target a new decision on it is written under."""

    label: str
    centre_ras: tuple[float, float, float]
    candidate: dict[str, Any] | None
    record: Record | None
    target: str

    @property
    def decision(self) -> str | None:
        return None if self.record is None else self.record.payload.get("decision")

    @property
    def is_cmb(self) -> bool:
        """Accepted or added, or kept by the model and not (yet) rejected."""
        if self.decision is not None:
            return self.decision in rd.POSITIVE
        return bool(self.candidate and self.candidate.get("kept"))

    def facts(self) -> dict[str, Any]:
        """The candidate's sizes and probabilities (a reader point's from its record)."""
        if self.candidate is not None:
            return self.candidate
        payload = dict(self.record.payload) if self.record is not None else {}
        return {**payload, "id": payload.get("candidate_id")}


class CMBReview(CaseReview):
    """Accept / reject / add / undo on one case, kept in step with the nodes.

    Args:
        case: the case in the feedback store.
        candidates: the candidates of the result (``cmb_candidates.json`` entries).
        markups_node, table_node: the result's nodes (None: no display).
        image: the case's image (a Volume, or its file) named in the store before the
            first decision; None to name none.
        grid: the input image (local geometry) for the exported label map and the check
            that an added point lies inside the image.
        candidate_labels: label map of every candidate (value = id) on ``grid``, or None.
        modality, reader, model_id, model_version: stored with each decision.
        name: base name of the exported label map node.
    """

    default_modality = "SWI"

    def __init__(self, case: CaseFeedback, candidates: list[dict], markups_node=None,
                 table_node=None, image: Volume | Path | None = None,
                 grid: Volume | None = None, candidate_labels: Volume | None = None,
                 modality: str = "SWI", reader: str | None = None,
                 model_id: str | None = None, model_version: str | None = None,
                 show_rejected: bool = False, name: str = "CMB"):
        super().__init__(case, image, modality, reader, model_id, model_version)
        self.candidates = list(candidates)
        self.markups_node, self.table_node = markups_node, table_node
        self.grid, self.candidate_labels = grid, candidate_labels
        self.name = name
        self._show_rejected = bool(show_rejected)
        self.items: list[ReviewItem] = []
        self.current: int | None = None
        self.export_node = None
        self.reload()
        self.current = next(iter(self.visible_indices()), None)

    @classmethod
    def result_arguments(cls, result, opened) -> dict[str, Any]:
        """From a :class:`.logic.CMBResultNodes`: its candidates and nodes."""
        return {"candidates": result.candidates, "markups_node": result.markups,
                "table_node": result.table, "grid": opened.image,
                "candidate_labels": result.candidate_labels, "modality": result.modality,
                "name": result.input.GetName()}

    # ------------------------------------------------------------------ state
    @property
    def show_rejected(self) -> bool:
        """Show the candidates that stage 2 dropped (for rescuing a true microbleed)."""
        return self._show_rejected

    @show_rejected.setter
    def show_rejected(self, value: bool) -> None:
        self._show_rejected = bool(value)
        self._sync()
        self._settle()

    def reload(self) -> list[ReviewItem]:
        """Read the standing decisions from the store, match them to the candidates and
        show them on the points and rows."""
        standing = self.read_standing(lambda: rd.standing_decisions(self.case))
        matched = rd.match_decisions(self.candidates, standing)
        items = []
        for candidate, record in zip(self.candidates, matched):
            centre = rd.check_centre(candidate["centre_ras"])
            target = record.target if record is not None else rd.geometry_key(centre)
            items.append(ReviewItem(str(candidate["id"]), centre, candidate, record, target))
        taken = {r.record_id for r in matched if r is not None}
        rest = sorted((r for r in standing.values() if r.record_id not in taken
                       and rd.decision_centre(r) is not None), key=lambda r: r.time)
        for number, record in enumerate(rest, 1):
            items.append(ReviewItem(f"+{number}", rd.decision_centre(record), None, record,
                                    record.target))
        self.items = items
        if self.current is not None and self.current >= len(items):
            self.current = len(items) - 1 if items else None
        self._sync()
        self._settle()
        return items

    def _settle(self) -> None:
        """Move off a current item that is hidden now: to the next shown one, else the
        previous, else none."""
        if self.current is None or self.is_visible(self.current):
            return
        shown = self.visible_indices()
        after = [i for i in shown if i > self.current]
        before = [i for i in shown if i < self.current]
        self.current = after[0] if after else (before[-1] if before else None)

    def is_visible(self, index: int) -> bool:
        """Whether item ``index`` is shown (see the module notes for the filter)."""
        item = self.items[index]
        if item.record is not None or item.candidate is None or item.candidate.get("kept"):
            return True
        return self._show_rejected and item.candidate.get("dropped_by") == "stage2"

    def visible_indices(self) -> list[int]:
        return [i for i in range(len(self.items)) if self.is_visible(i)]

    def counts(self) -> dict[str, int]:
        """``shown``, ``cmb`` (the current set), ``accept``, ``reject``, ``add``,
        ``undecided`` (shown without a decision)."""
        shown = self.visible_indices()
        result = {"shown": len(shown), "cmb": sum(1 for i in self.items if i.is_cmb),
                  "undecided": sum(1 for i in shown if self.items[i].decision is None)}
        for decision in rd.DECISIONS:
            result[decision] = sum(1 for i in self.items if i.decision == decision)
        return result

    # ------------------------------------------------------------- navigation
    def select(self, index: int) -> ReviewItem:
        """Make item ``index`` (a table row) the current one."""
        if not 0 <= index < len(self.items):
            raise IndexError(f"there is no candidate row {index}")
        self.current = index
        return self.items[index]

    def next(self) -> int | None:
        """Move to the next shown item (stays on the last); returns the current index."""
        return self._step(+1)

    def previous(self) -> int | None:
        """Move to the previous shown item (stays on the first)."""
        return self._step(-1)

    def _step(self, direction: int) -> int | None:
        shown = self.visible_indices()
        if not shown:
            self.current = None
        elif self.current is None:
            self.current = shown[0] if direction > 0 else shown[-1]
        else:
            ahead = [i for i in shown if (i - self.current) * direction > 0]
            if ahead:
                self.current = ahead[0] if direction > 0 else ahead[-1]
        return self.current

    @property
    def current_item(self) -> ReviewItem | None:
        return None if self.current is None else self.items[self.current]

    def jump_position(self) -> tuple[float, float, float] | None:
        """World RAS (mm) of the current point, where the slice views are centred."""
        if self.current is None:
            return None
        node = self.markups_node
        if node is None or self.current >= node.GetNumberOfControlPoints():
            return self.items[self.current].centre_ras
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(self.current, position)
        return tuple(position)

    # --------------------------------------------------------------- decisions
    def accept(self, index: int | None = None, advance: bool = True) -> Record | None:
        """Accept item ``index`` (default: the current one) as a microbleed."""
        return self._decide(rd.ACCEPT, index, advance)

    def reject(self, index: int | None = None, advance: bool = True) -> Record | None:
        """Reject item ``index`` (default: the current one): not a microbleed."""
        return self._decide(rd.REJECT, index, advance)

    def _decide(self, decision: str, index: int | None, advance: bool) -> Record | None:
        """Write one decision; None (nothing written) when it is already the standing one
        or there is no item."""
        index = self.current if index is None else index
        if index is None:
            return None
        item = self.select(index)
        if item.decision == decision:
            record = None
        else:
            record = self._write(decision, item.centre_ras, item.facts(), item.target)
        if advance:
            self.next()
        return record

    def add(self, centre_ras, diameter_mm: float | None = None, world: bool = False
            ) -> Record:
        """Record a microbleed the model missed at ``centre_ras`` (RAS mm; ``world=True``:
        world coordinates, e.g. a point placed in a slice view) and make it current.

        Raises ``InvalidImageError`` (nothing written) when it lies outside the image."""
        centre = rd.check_centre(centre_ras, self.case.records_path)
        if world and self.markups_node is not None:
            local = [0.0, 0.0, 0.0]
            self.markups_node.TransformPointFromWorld(list(centre), local)
            centre = tuple(local)
        if self.grid is not None:
            voxel = self.grid.ras_to_voxel(centre).round()
            if (voxel < 0).any() or (voxel >= self.grid.shape[:3]).any():
                raise InvalidImageError(
                    f"the point {tuple(round(c, 1) for c in centre)} (RAS mm) lies outside "
                    "the image", "Place the missed microbleed inside the image",
                    source=self.name)
        record = self._write(rd.ADD, centre, None, None,
                             diameter_mm=diameter_mm or ADDED_DIAMETER_MM)
        found = [i for i, item in enumerate(self.items) if item.record is not None
                 and item.record.record_id == record.record_id]
        self.current = found[0] if found else self.current
        return record

    def take_back(self, record_id: str) -> None:
        rd.undo_decision(self.case, record_id, reader=self.reader)

    def _write(self, decision: str, centre, candidate, target, diameter_mm=None) -> Record:
        self.store_image()
        return self.wrote(rd.record_decision(
            self.case, decision, centre, candidate, target=target, modality=self.modality,
            diameter_mm=diameter_mm, reader=self.reader, model_id=self.model_id,
            model_version=self.model_version))

    # ------------------------------------------------------------------ export
    def accepted_items(self, include_undecided_kept: bool = False) -> list[ReviewItem]:
        """The items the reader accepted or added (and, if asked, those kept by the model
        that the reader has not decided on)."""
        return [i for i in self.items if i.decision in rd.POSITIVE or (
            include_undecided_kept and i.decision is None and i.is_cmb)]

    def accepted_label_map(self, include_undecided_kept: bool = False) -> Volume:
        """The accepted microbleeds on the input's grid, value ``n`` on the n-th (its
        candidate component, or a ball of its diameter for a reader's point)."""
        if self.grid is None:
            raise InvalidImageError("this review has no image grid to export onto",
                                    "Open the review from a result (CMBReview.for_result)")
        items = self.accepted_items(include_undecided_kept)
        return rd.label_map_from_accepted(
            self.grid, [i.centre_ras for i in items],
            [i.facts().get("diameter_mm") for i in items], self.candidate_labels,
            [None if i.candidate is None else i.candidate["id"] for i in items])

    def export_label_map(self, include_undecided_kept: bool = False):
        """Add (or update) a ``vtkMRMLLabelMapVolumeNode`` "<name> accepted CMBs" with
        :meth:`accepted_label_map`, under the input's parent transform; returns it."""
        volume = self.accepted_label_map(include_undecided_kept)
        scene = self.markups_node.GetScene() if self.markups_node is not None else None
        if scene is None:
            raise InvalidImageError("the review's nodes are not in a scene",
                                    "Apply again, then export")
        node = self.export_node if self.export_node is not None \
            and self.export_node.GetScene() is scene else None
        node = mb.volume_to_node(scene, volume, f"{self.name} accepted CMBs", node=node,
                                 class_name="vtkMRMLLabelMapVolumeNode")
        parent = self.markups_node.GetParentTransformNode()
        node.SetAndObserveTransformNodeID(parent.GetID() if parent is not None else None)
        self.export_node = node
        return node

    # ------------------------------------------------------------------ nodes
    def _sync(self) -> None:
        """Show the items on the markups node (one control point each, same order) and
        the table (one row each)."""
        node = self.markups_node
        if node is not None:
            was_modifying = node.StartModify()
            try:
                while node.GetNumberOfControlPoints() > len(self.candidates):
                    node.RemoveNthControlPoint(node.GetNumberOfControlPoints() - 1)
                for index, item in enumerate(self.items):
                    if index >= node.GetNumberOfControlPoints():
                        node.AddControlPoint(*item.centre_ras, item.label)
                    node.SetNthControlPointLabel(index, item.label)
                    node.SetNthControlPointDescription(
                        index, describe(item.candidate, item.decision))
                    node.SetNthControlPointSelected(index, item.is_cmb)
                    node.SetNthControlPointVisibility(index, self.is_visible(index))
                    node.SetNthControlPointLocked(index, True)
            finally:
                node.EndModify(was_modifying)
        if self.table_node is not None:
            rows = [table_row(i.label, i.candidate, i.decision, i.facts()) for i in self.items]
            mb.rows_to_table(self.table_node.GetScene(), rows, table_node=self.table_node,
                             columns=TABLE_COLUMNS)
            self.table_node.SetLocked(True)  # decisions go through this review

"""The CMB review state machine and the reader's decisions in the feedback store.

Under the slicer-core wheel, on hand-made prediction outputs (``cmb_outputs``): each
accept / reject / add / undo writes exactly one record; a re-run with new ids and moved
centres keeps every decision and overwrites none; a record torn by a killed process loses
only itself; the decisions become training points; the accepted set exports as a label
map on the input's grid; the "show rejected by stage 2" filter. Then the pure
``lesion_core.cmb.reader_decisions`` rules.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("slicer")

import cmb_outputs as co  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from lesion_core import io as lesion_io  # noqa: E402
from lesion_core.cmb import reader_decisions as rd  # noqa: E402
from lesion_core.errors import FeedbackStoreError, InvalidImageError  # noqa: E402
from lesion_core.feedback import FeedbackStore, FeedbackStoreWarning  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from CMBDetectorLib.logic import CMBDetectorLogic  # noqa: E402


@pytest.fixture(scope="module")
def image():
    return co.swi_volume(seed=5)


@pytest.fixture
def logic():
    return CMBDetectorLogic()


@pytest.fixture
def swi_node(mrml_scene, image):
    return mb.volume_to_node(mrml_scene, image, "SWI")


@pytest.fixture
def result(logic, swi_node, image, tmp_path):
    co.write_outputs(tmp_path / "run1", image)
    return logic.load_results(swi_node, tmp_path / "run1")


@pytest.fixture
def store(tmp_path):
    return tmp_path / "feedback"


def _decisions(review) -> list:
    return [r for r in review.case.records() if r.kind == rd.DECISION_KIND]


def _records(review) -> list:
    return review.case.records()


# ------------------------------------------------------------------ decisions


def test_each_action_changes_the_store_exactly_once(logic, result, store):
    review = logic.open_review(result, store, reader="dr-a")
    assert review.current == 0 and review.case_id.startswith("SWI-")
    review.accept()                                    # candidate 1, then on to 2
    assert len(_records(review)) == 1 and review.current == 1
    assert review.accept(0) is None                    # already accepted: nothing written
    review.reject()                                    # candidate 2
    assert len(_records(review)) == 2
    centre = np.array(result.candidates[0]["centre_ras"]) + [0.0, 0.0, 9.0]
    added = review.add(centre, diameter_mm=4.0)
    assert len(_records(review)) == 3 and review.current_item.record == added
    assert review.undo() and len(_records(review)) == 4  # an undo record, nothing erased

    records = _decisions(review)
    assert [r.payload["decision"] for r in records] == ["accept", "reject", "add"]
    first = records[0]
    assert first.target == rd.geometry_key(result.candidates[0]["centre_ras"])
    assert (first.reader, first.model_id, first.model_version) == \
        ("dr-a", "cmb_shiva_distilled", "1.0")
    assert first.payload["candidate_id"] == 1 and first.payload["stage2_probability"] == 0.9
    assert added.payload["diameter_mm"] == 4.0 and added.payload["candidate_id"] is None

    # Points and rows show the standing decisions; the undone add is gone again.
    rows = mb.table_to_rows(result.table)
    assert [r["decision"] for r in rows] == ["accept", "reject", "", "", ""]
    assert result.markups.GetNumberOfControlPoints() == len(rows) == 5
    assert not result.markups.GetNthControlPointSelected(1)  # rejected: not a CMB
    assert result.markups.GetNthControlPointDescription(0).endswith("accepted by the reader")
    assert review.counts()["cmb"] == 2  # accepted 1 + kept-undecided 5

    # The case names its image (saved into the case: the node has no file) for training.
    stored = lesion_io.read_volume(review.case.info()["image"])
    np.testing.assert_array_equal(stored.array, mb.node_to_volume(result.input).array)


def test_an_added_point_is_shown_and_one_outside_the_image_is_refused(logic, result, store):
    review = logic.open_review(result, store)
    review.add(np.array(result.candidates[0]["centre_ras"]) + [6.0, 0.0, 0.0])
    assert result.markups.GetNumberOfControlPoints() == 6
    assert result.markups.GetNthControlPointLabel(5) == "+1"
    assert result.markups.GetNthControlPointDescription(5) == "added by the reader"
    assert result.markups.GetNthControlPointSelected(5)  # counts as a microbleed
    rows = mb.table_to_rows(result.table)
    assert (rows[5]["status"], rows[5]["decision"], rows[5]["diameter_mm"]) == \
        ("reader", "add", 3.0)
    with pytest.raises(InvalidImageError, match="outside the image"):
        review.add((500.0, 0.0, 0.0))
    with pytest.raises(FeedbackStoreError):
        review.add((1.0, float("nan"), 2.0))
    assert len(_records(review)) == 1


def test_a_rerun_keeps_every_decision_and_overwrites_none(logic, swi_node, result, image,
                                                          store, tmp_path):
    first = logic.open_review(result, store, reader="dr-b")
    first.accept(0)
    first.reject(1)
    first.accept(2)  # rescue the candidate stage 2 dropped
    first.add(np.array(result.candidates[0]["centre_ras"]) + [0.0, 8.0, 0.0])
    written = len(_records(first))

    # The model runs again: new ids, centres moved by about 1.2 mm.
    co.write_outputs(tmp_path / "run2", image, id_offset=100, shift_mm=(0.8, -0.6, 0.7))
    rerun = logic.load_results(swi_node, tmp_path / "run2")
    review = logic.open_review(rerun, store)
    assert review.case_id == first.case_id
    assert [i.decision for i in review.items] == ["accept", "reject", "accept", None, None,
                                                  "add"]
    assert [i.label for i in review.items][:3] == ["101", "102", "103"]
    rows = mb.table_to_rows(rerun.table)
    assert [r["decision"] for r in rows] == ["accept", "reject", "accept", "", "", "add"]
    assert len(_records(review)) == written  # opening the re-run wrote nothing

    # Changing a decision on the re-run supersedes the earlier one (same target).
    review.accept(1)
    standing = rd.standing_decisions(review.case)
    assert len(standing) == 4
    assert standing[first.items[1].target].payload["decision"] == "accept"
    assert standing[first.items[1].target].payload["candidate_id"] == 102


def test_a_torn_write_loses_only_the_record_in_flight(logic, result, store):
    review = logic.open_review(result, store)
    review.accept(0)
    review.reject(1)
    whole = review.case.records_path.read_bytes().splitlines(keepends=True)[-1]
    with open(review.case.records_path, "ab") as handle:  # a process killed mid-write
        handle.write(whole[: len(whole) // 2])

    reopened = logic.open_review(result, store)
    assert [i.decision for i in reopened.items][:3] == ["accept", "reject", None]
    assert len(reopened.skipped_lines) == 1 and "cut off" in reopened.skipped_lines[0]
    reopened.reject(4)  # later decisions still save
    again = logic.open_review(result, store)
    assert [i.decision for i in again.items] == ["accept", "reject", None, None, "reject"]
    with pytest.warns(FeedbackStoreWarning):
        assert len(again.case.records()) == 3


def test_decisions_become_training_points(logic, result, store):
    review = logic.open_review(result, store)
    review.accept(0)
    review.reject(1)
    review.accept(2)
    review.reject(2)  # changed mind: the later decision stands
    review.add(np.array(result.candidates[4]["centre_ras"]) + [0.0, 0.0, -7.0])
    review.accept(4)
    review.undo()     # candidate 5's accept taken back
    points = rd.training_points(store)
    assert sorted((p.label, p.centre_ras) for p in points) == sorted([
        (1, tuple(result.candidates[0]["centre_ras"])),
        (0, tuple(result.candidates[1]["centre_ras"])),
        (0, tuple(result.candidates[2]["centre_ras"])),
        (1, review.items[5].centre_ras)])
    assert {(p.case_id, p.modality) for p in points} == {(review.case_id, "SWI")}
    volume = lesion_io.read_volume(points[0].image_path)  # the image is readable
    assert volume.shape == co.SHAPE
    assert rd.training_points(store, modality="T2star") == []


def test_the_accepted_set_exports_on_the_input_grid(logic, mrml_scene, result, store):
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    transform.SetMatrixTransformToParent(vtkMatrix4x4())
    result.input.SetAndObserveTransformNodeID(transform.GetID())
    result.markups.SetAndObserveTransformNodeID(transform.GetID())
    review = logic.open_review(result, store)
    review.accept(0)
    review.reject(1)
    review.accept(4)
    added = np.array(result.candidates[0]["centre_ras"]) + [0.0, 0.0, 12.0]
    review.add(added, diameter_mm=5.0)

    node = review.export_label_map()
    assert node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetParentTransformNode() is transform
    np.testing.assert_array_equal(mb.node_ijk_to_ras(node, world=False),
                                  mb.node_ijk_to_ras(result.input, world=False))
    labels = mb.node_to_volume(node, world=False).array
    assert labels.shape == co.SHAPE and sorted(np.unique(labels)) == [0, 1, 2, 3]
    _, components = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    assert components == 3  # one per accepted microbleed
    np.testing.assert_array_equal(labels == 1, result.candidate_labels.array == 1)
    np.testing.assert_array_equal(labels == 2, result.candidate_labels.array == 5)
    grid = mb.node_to_volume(result.input, world=False)
    voxel = tuple(np.round(grid.ras_to_voxel(added)).astype(int))
    assert labels[voxel] == 3 and 20 <= (labels == 3).sum() <= 120  # a 5 mm ball
    assert review.export_label_map() is node  # exported again: the same node updated


# ------------------------------------------------------------------ navigation


def test_show_rejected_filter_and_navigation(logic, mrml_scene, result, store):
    review = logic.open_review(result, store)
    assert review.visible_indices() == [0, 1, 4]  # stage-2 and clean-up drops hidden
    assert [review.next(), review.next(), review.next()] == [1, 4, 4]
    assert [review.previous(), review.previous(), review.previous()] == [1, 0, 0]

    review.show_rejected = True
    assert review.visible_indices() == [0, 1, 2, 4]  # the clean-up drop stays hidden
    assert result.markups.GetNthControlPointVisibility(2)
    assert not result.markups.GetNthControlPointVisibility(3)
    review.select(1)
    assert review.next() == 2
    review.accept()  # rescued: stays shown when the filter is off again
    review.show_rejected = False
    assert review.visible_indices() == [0, 1, 2, 4]
    review.select(2)
    review.undo()
    review.show_rejected = False
    assert review.visible_indices() == [0, 1, 4] and review.current == 4

    # The slice views are centred on the point as shown (with its parent transform).
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(shift)
    result.markups.SetAndObserveTransformNodeID(transform.GetID())
    review.select(0)
    np.testing.assert_allclose(review.jump_position(),
                               np.array(result.candidates[0]["centre_ras"]) + [10, 0, 0])
    record = review.add(review.jump_position(), world=True)  # placed in a slice view
    np.testing.assert_allclose(record.payload["centre_ras"], result.candidates[0]["centre_ras"])


# ------------------------------------------------------------------ pure rules


def test_geometry_key_and_validation(tmp_path):
    assert rd.geometry_key((12.26, -0.2, 7.74)) == "cmb@12.5,0.0,7.5"
    assert rd.geometry_key([-3.24, -3.26, 0]) == "cmb@-3.0,-3.5,0.0"
    case = FeedbackStore(tmp_path).case("c1")
    for decision, centre, candidate in (("maybe", (0, 0, 0), None), ("accept", (0, 0), None),
                                        ("accept", (0, 0, 0), {"stage1_probability": 1.5}),
                                        ("reject", (0, 0, 0), {"diameter_mm": -2})):
        with pytest.raises(FeedbackStoreError) as raised:
            rd.record_decision(case, decision, centre, candidate)
        assert raised.value.fix and str(case.records_path) in str(raised.value)
    with pytest.raises(FeedbackStoreError, match="modality"):
        rd.record_decision(case, "add", (0, 0, 0), modality="FLAIR")
    assert not case.folder.exists()  # refused input leaves no trace
    record = rd.record_decision(case, " Accept ", (1, 2, 3))
    assert record.payload["decision"] == "accept" and record.target == "cmb@1.0,2.0,3.0"


def test_match_decisions_nearest_first_one_to_one(tmp_path):
    case = FeedbackStore(tmp_path).case("c2")
    a = rd.record_decision(case, "accept", (0, 0, 0))
    b = rd.record_decision(case, "reject", (10, 0, 0))
    standing = rd.standing_decisions(case)
    candidates = [{"centre_ras": [1.0, 0, 0]}, {"centre_ras": [0.5, 0, 0]},
                  {"centre_ras": [10, 2.9, 0]}, {"centre_ras": [20, 0, 0]}]
    matched = rd.match_decisions(candidates, standing)
    assert [m.record_id if m else None for m in matched] == [None, a.record_id,
                                                             b.record_id, None]
    assert rd.match_decisions([[10, 3.1, 0]], standing) == [None]  # beyond 3 mm
    assert rd.match_decisions([], standing) == []


def test_training_points_refuse_a_case_without_its_image(tmp_path):
    store = FeedbackStore(tmp_path / "store")
    case = store.case("lost")
    rd.record_decision(case, "accept", (1, 2, 3))
    with pytest.raises(FeedbackStoreError, match="names no image") as raised:
        rd.training_points(store.root)
    assert "case.json" in str(raised.value)
    case.write_info({"image": str(tmp_path / "gone.nii.gz"), "modality": "SWI"})
    with pytest.raises(FeedbackStoreError, match="does not exist"):
        rd.training_points(store.root)
    rd.undo_decision(case, rd.standing_decisions(case)["cmb@1.0,2.0,3.0"].record_id)
    assert rd.training_points(store.root) == []  # nothing stands: nothing to read

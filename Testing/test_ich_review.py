"""The ICH slice review and the reader's labels in the feedback store.

Under the slicer-core wheel, on hand-made prediction outputs (``ich_outputs``): undo; the
store's slice labels become the weak-label scans training reads; the reader's edited
segmentation is stored as a versioned mask that a re-run shows again and never
overwrites. Then the pure ``lesion_core.ich.reader_labels`` rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")

import ich_outputs as io_  # noqa: E402

from lesion_core.errors import FeedbackStoreError  # noqa: E402
from lesion_core.feedback import FeedbackStore  # noqa: E402
from lesion_core.ich import reader_labels as rl  # noqa: E402
from lesion_core.labels import ICH_SUBTYPES  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from ich_fixtures import ct_node, logic, out_dir, result, store  # noqa: E402,F401


@pytest.fixture(scope="module")
def image():
    return io_.ct_volume(seed=11)




# ------------------------------------------------------------------ review


def test_undo_takes_back_only_the_last_label(logic, result, store):
    review = logic.open_review(result, store)
    assert not review.can_undo and not review.undo()
    review.mark_haemorrhage(["subdural"], row=5)
    review.mark_no_haemorrhage(row=5)
    assert review.labels[5].haemorrhage is False
    assert review.undo()                                        # back to the first label
    assert review.labels[5].describe() == "haemorrhage: subdural"
    assert mb.table_to_rows(result.table)[5]["reader"] == "haemorrhage: subdural"
    assert review.undo() and 5 not in review.labels and not review.can_undo
    kinds = [r.kind for r in review.case.records()]
    assert kinds == [rl.SLICE_KIND, rl.SLICE_KIND, "undo", "undo"]  # nothing erased


def test_weak_scans_from_store_give_the_slice_labels(logic, result, store, tmp_path):
    pytest.importorskip("torch")
    review = logic.open_review(result, store)
    review.mark_haemorrhage(["subdural"], row=4)
    review.mark_haemorrhage(row=6)
    review.mark_no_haemorrhage(row=10)
    rl.record_slice_label(review.case, 1, False, slice_axis=0)  # another axis: left out
    with pytest.warns(UserWarning, match="another axis"):
        scans = rl.weak_scans_from_store(store)
    assert len(scans) == 1 and scans[0].scan == review.case_id
    assert scans[0].image == review.case.info()["image"] and Path(scans[0].image).is_file()
    assert scans[0].labels == (None,) * 6                       # scan level: unknown
    assert dict(scans[0].slices) == {4: (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                                     6: (1.0,) + (None,) * 5,
                                     10: (0.0,) * 6}
    assert rl.weak_scans_from_store(tmp_path / "empty") == []


def test_a_saved_reader_mask_is_versioned_and_kept_over_a_rerun(logic, mrml_scene, ct_node,
                                                                 result, out_dir, store,
                                                                 image):
    review = logic.open_review(result, store, reader="dr-b")
    assert not review.has_unsaved_edits()
    edited = io_.label_map()
    edited[edited == 1] = 0                                     # drop the parenchymal bleed
    edited[30:34, 8:12, 9] = 5                                  # paint an epidural one
    segmentation = result.segmentation.GetSegmentation()
    segmentation.RemoveAllSegments()
    mb.labelmap_to_segmentation(mrml_scene, image.with_array(edited), ICH_SUBTYPES,
                                segmentation_node=result.segmentation)
    assert review.has_unsaved_edits()
    record = review.save_reader_mask()
    assert record.payload["version"] == 1 and not review.has_unsaved_edits()
    assert result.segmentation.GetName() == "CT ICH (reader v1)"
    first = review.reader_mask_versions()[0]
    stored = first.read_bytes()

    again = logic.load_results(ct_node, out_dir, feedback_root=store)  # a re-run
    assert again.reader_mask_version == 1 and again.segmentation.GetName() == "CT ICH (reader v1)"
    np.testing.assert_array_equal(
        mb.segmentation_to_labelmap(again.segmentation, ct_node, ICH_SUBTYPES).array, edited)
    assert again.model_segmentation.GetName() == "CT ICH (model)"
    assert not again.model_segmentation.GetDisplayNode().GetVisibility()
    np.testing.assert_array_equal(mb.segmentation_to_labelmap(
        again.model_segmentation, ct_node, ICH_SUBTYPES).array, io_.label_map())
    assert first.read_bytes() == stored and len(review.reader_mask_versions()) == 1

    reviewed = logic.open_review(again, store)
    assert not reviewed.has_unsaved_edits()
    mb.labelmap_to_segmentation(mrml_scene, image.with_array((edited > 0) * 6),
                                None, segmentation_node=again.segmentation)
    with pytest.raises(FeedbackStoreError, match="not an ICH subtype"):
        reviewed.save_reader_mask()                             # a segment of no subtype
    assert len(reviewed.reader_mask_versions()) == 1
    segments = again.segmentation.GetSegmentation()
    segments.RemoveSegment(segments.GetNthSegmentID(segments.GetNumberOfSegments() - 1))
    assert reviewed.save_reader_mask().payload["version"] == 2
    assert first.read_bytes() == stored and rl.latest_reader_mask(reviewed.case).meta[
        "version"] == 2


# ------------------------------------------------------------------ reader_labels rules


@pytest.mark.parametrize("args, text", [
    ((-1, True), "slice index -1"), ((2.0, True), "slice index 2.0"),
    ((2, "yes"), "is not yes or no"), ((2, None), "is not yes or no"),
    ((2, True, ["oedema"]), "oedema is not an ICH subtype"),
    ((2, False, ["subdural"]), "without haemorrhage cannot have a subtype"),
    ((2, True, (), 3), "slice axis 3"),
])
def test_invalid_labels_are_refused_before_anything_is_written(tmp_path, args, text):
    case = FeedbackStore(tmp_path).case("ct-1")
    with pytest.raises(FeedbackStoreError, match=text):
        rl.record_slice_label(case, *args[:3], slice_axis=args[3] if len(args) > 3 else 2)
    assert not case.folder.exists()


def test_label_semantics_and_targets(tmp_path):
    assert rl.SliceLabel(3, False).labels() == (0.0,) * 6
    assert rl.SliceLabel(3, True).labels() == (1.0,) + (None,) * 5
    assert rl.SliceLabel(3, True, ("subarachnoid",)).labels() == (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    assert rl.slice_target(7) == "slice:7" and rl.slice_of_target("slice:7") == 7
    assert rl.slice_of_target("cmb@1,2,3") is None
    case = FeedbackStore(tmp_path).case("ct-1")
    record = rl.record_slice_label(case, 2, 1, ["Epidural ", "subdural"])
    assert record.payload == {"haemorrhage": True, "subtypes": ["subdural", "epidural"],
                              "slice_axis": 2}
    case.record(rl.SLICE_KIND, "slice:x", {"haemorrhage": True})     # damaged record
    with pytest.warns(UserWarning, match="cannot be read"):
        assert list(rl.standing_slice_labels(case)) == [2]
    assert rl.latest_reader_mask(case) is None
    with pytest.warns(UserWarning), pytest.raises(FeedbackStoreError, match="names no image"):
        rl.weak_scans_from_store(tmp_path)


# ------------------------------------------------------------------ the real commands


def test_the_real_commands_predict_and_retrain_from_the_labels(logic, mrml_scene, store,
                                                               tmp_path):
    """``ich predict`` with a toy model on a CT whose axial axis is array axis 0, slice
    labels through the review, then ``ich train --feedback`` on them."""
    torch = pytest.importorskip("torch")
    from ich_toys import TOY, toy_ct

    from lesion_core.ich.model import ICHModel, save_ich_model
    from lesion_core.ich.segmenter import build_segmenter
    from lesion_core.ich.train import build_classifier
    from lesion_core.volume import Volume

    torch.manual_seed(0)
    save_ich_model(tmp_path / "model", ICHModel(None, build_classifier(TOY).eval(),
                                                build_segmenter(TOY).eval(), TOY),
                   name="ich_toy")
    ct = toy_ct(3, blood_slices=(3, 4))
    array = np.ascontiguousarray(np.moveaxis(np.asarray(ct.array), 2, 0)[:, ::-1])
    affine = np.array([[0, -4.0, 0, 80], [0, 0, 4.0, -80], [5.0, 0, 0, -20], [0, 0, 0, 1]])
    node = mb.volume_to_node(mrml_scene, Volume(array, affine), "ToyCT")
    # The toy head is smaller than an adult's: forced (the result is marked).
    result = logic.run(node, tmp_path / "model", device="cpu", feedback_root=store,
                       timeout=300, force=True)
    assert result.out_of_distribution
    assert result.slice_axis == 0 and result.table.GetNumberOfRows() == 8
    assert result.model_id == "ich_toy"
    np.testing.assert_array_equal(mb.node_ijk_to_ras(result.cam), affine)
    position = logic.slice_position(result, 5)
    assert np.linalg.solve(affine, [*position, 1.0])[0] == pytest.approx(5.0)

    review = logic.open_review(result, store)
    review.mark_haemorrhage(["subdural"], row=3)
    review.mark_no_haemorrhage(row=0)
    child, new_model = logic.start_training(store, tmp_path / "model", tmp_path / "new")
    assert child.wait(300) == 0, child.log_tail()
    child.poll()
    assert "on 2 labelled slices of 1 scans" in child.log_tail(), child.log_tail()
    assert (new_model / "metadata.json").is_file() and (tmp_path / "model").is_dir()

"""The ICH WeakSeg Logic and slice review under the slicer-core wheel (real MRML, no app).

The prediction outputs are hand-made (``ich_outputs``: a 40 x 36 x 12 oblique LPS head CT
in HU with a subdural and an intraparenchymal bleed), so what is checked does not depend
on a trained model: the nodes made from the contract's files and their geometry, the slice
positions, the CAM display, and the child-process path (a stand-in child writes the
files; the real command refuses an MR image given as CT). The reader's slice labels and
mask are in ``test_ich_review.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")

import ich_outputs as io_  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from lesion_core.errors import (FeedbackStoreError, LesionSuiteError,  # noqa: E402
                                ModalityError, ModelBundleError, UnreadableFileError)
from lesion_core.feedback import FeedbackStoreWarning  # noqa: E402
from lesion_core.ich import reader_labels as rl  # noqa: E402
from lesion_core.labels import ICH_SUBTYPES  # noqa: E402
from documented_scripts import check_documented_scripts  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from ICHWeakSegLib.logic import ICHWeakSegLogic  # noqa: E402
from ich_fixtures import ct_node, logic, out_dir, result, store  # noqa: E402,F401
from ICHWeakSegLib.outputs import TABLE_COLUMNS  # noqa: E402


@pytest.fixture(scope="module")
def image():
    return io_.ct_volume(seed=7)




def _fake_child(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def _slice_records(case) -> list:
    return [r for r in case.records() if r.kind == rl.SLICE_KIND]


# ------------------------------------------------------------------ nodes


def test_ct_in_gives_segmentation_cam_and_slice_table_on_the_same_grid(result, ct_node):
    geometry = mb.node_ijk_to_ras(ct_node)
    dims = ct_node.GetImageData().GetDimensions()
    # Segmentation: one segment per subtype present, with its name, colour, terminology.
    segmentation = result.segmentation.GetSegmentation()
    segments = [segmentation.GetNthSegment(n) for n in range(segmentation.GetNumberOfSegments())]
    assert sorted(s.GetName() for s in segments) == [ICH_SUBTYPES[0].name, ICH_SUBTYPES[3].name]
    subdural = next(s for s in segments if s.GetName() == ICH_SUBTYPES[3].name)
    assert "35486000" in mb.segment_terminology(subdural)
    assert subdural.GetColor() == pytest.approx(ICH_SUBTYPES[3].color)
    exported = mb.segmentation_to_labelmap(result.segmentation, ct_node, ICH_SUBTYPES)
    np.testing.assert_array_equal(exported.array, io_.label_map())
    np.testing.assert_array_equal(exported.affine, geometry)
    assert result.model_segmentation is None and result.reader_mask_version is None

    # CAM: float32 0..1 on the CT's grid, colour mapped, thresholded at the model's value.
    np.testing.assert_array_equal(mb.node_ijk_to_ras(result.cam), geometry)
    assert result.cam.GetImageData().GetDimensions() == dims
    np.testing.assert_allclose(mb.node_to_volume(result.cam).array, io_.cam_map(), atol=1e-6)
    display = result.cam.GetDisplayNode()
    assert display.GetColorNodeID() and display.GetApplyThreshold()
    assert ICHWeakSegLogic.cam_threshold(result) == pytest.approx(0.3)

    # Table: one locked row per axial slice, the CSV's facts and an empty reader column.
    rows = mb.table_to_rows(result.table)
    assert list(rows[0]) == list(TABLE_COLUMNS) and result.table.GetLocked()
    assert [r["slice"] for r in rows] == list(range(io_.SHAPE[2]))
    expected = io_.slice_rows(io_.ct_volume(seed=7))
    assert [r["present"] for r in rows] == [bool(e["present"]) for e in expected]
    assert rows[4]["subdural"] == pytest.approx(0.8) and rows[4]["epidural"] == pytest.approx(0.05)
    assert rows[6]["area_mm2"] == pytest.approx(expected[6]["area_mm2"])
    assert {r["reader"] for r in rows} == {""}
    assert (result.model_id, result.model_version, result.slice_axis) == \
        ("ich_weakseg_cam", "1.0", 2)


def test_slice_positions_follow_the_rows_and_the_parent_transform(logic, mrml_scene, ct_node,
                                                                  image, out_dir, store):
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = vtkMatrix4x4()
    shift.SetElement(2, 3, 7.5)
    transform.SetMatrixTransformToParent(shift)
    ct_node.SetAndObserveTransformNodeID(transform.GetID())
    result = logic.load_results(ct_node, out_dir, feedback_root=store)
    for node in (result.segmentation, result.cam):
        assert node.GetParentTransformNode() is transform
    bleed = io_.BLEEDS[0]
    on_bleed = np.array(logic.slice_position(result, 4)) - [0.0, 0.0, 7.5]
    np.testing.assert_allclose(image.ras_to_voxel(on_bleed), [*bleed.centre, 4], atol=1e-6)
    empty = np.array(logic.slice_position(result, 0)) - [0.0, 0.0, 7.5]
    np.testing.assert_allclose(image.ras_to_voxel(empty), [19.5, 17.5, 0], atol=1e-6)
    with pytest.raises(IndexError):
        logic.slice_position(result, 12)


def test_cam_overlay_opacity_and_threshold(logic, mrml_scene, result):
    views = [mrml_scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(2)]
    logic.show_cam(result, opacity=0.6)
    for view in views:
        assert view.GetBackgroundVolumeID() == result.input.GetID()
        assert view.GetForegroundVolumeID() == result.cam.GetID()
        assert view.GetForegroundOpacity() == pytest.approx(0.6)
    logic.set_cam_threshold(result, 0.55)
    assert logic.cam_threshold(result) == pytest.approx(0.55)
    logic.set_cam_threshold(result, 0.0)
    assert logic.cam_threshold(result) == 0.0
    with pytest.raises(LesionSuiteError, match="not in 0..1"):
        logic.set_cam_threshold(result, 1.5)


# ------------------------------------------------------------------ slice labels


def test_slice_labels_reach_the_store_exactly_once_and_show_in_the_table(logic, result,
                                                                         store):
    review = logic.open_review(result, store, reader="dr-a")
    assert review.case_id.startswith("CT-") and review.current_slice == 0
    assert review.select(4) == 4
    review.mark_haemorrhage(["subdural"])
    assert len(review.case.records()) == 1
    assert review.mark_haemorrhage(["Subdural"]) is None        # the standing label
    assert len(review.case.records()) == 1
    review.mark_no_haemorrhage(row=0)
    review.mark_haemorrhage(row=7)                              # subtypes unknown
    review.mark_haemorrhage(["intraparenchymal", "subarachnoid"], row=7)  # supersedes
    records = _slice_records(review.case)
    assert [r.target for r in records] == ["slice:4", "slice:0", "slice:7", "slice:7"]
    assert records[0].payload == {"haemorrhage": True, "subtypes": ["subdural"],
                                  "slice_axis": 2}
    assert {(r.reader, r.model_id, r.model_version) for r in records} == \
        {("dr-a", "ich_weakseg_cam", "1.0")}
    assert Path(review.case.info()["image"]).is_file()          # named for training
    rows = mb.table_to_rows(result.table)
    assert [rows[k]["reader"] for k in (0, 4, 7, 8)] == [
        "no haemorrhage", "haemorrhage: subdural",
        "haemorrhage: intraparenchymal, subarachnoid", ""]
    assert review.counts() == {"slices": 12, "predicted": 5, "labelled": 3, "haemorrhage": 2,
                               "no_haemorrhage": 1, "disagree": 0}
    with pytest.raises(FeedbackStoreError, match="without haemorrhage cannot have"):
        review.mark(False, ["subdural"])
    with pytest.raises(FeedbackStoreError, match="not an ICH subtype"):
        review.mark_haemorrhage(["oedema"])
    assert len(review.case.records()) == 4                      # refused: nothing written

    reopened = logic.open_review(result, store)                 # e.g. the next session
    assert {k: lab.describe() for k, lab in reopened.labels.items()} == {
        0: "no haemorrhage", 4: "haemorrhage: subdural",
        7: "haemorrhage: intraparenchymal, subarachnoid"}


def test_a_crash_mid_write_loses_only_the_label_in_flight(logic, result, store):
    review = logic.open_review(result, store)
    for row in (3, 4, 5):
        review.mark_haemorrhage(["subdural"], row=row)
    path = review.case.records_path
    torn = _slice_records(review.case)[0].to_line().replace(b"slice:3", b"slice:9")
    with path.open("ab") as handle:                             # killed half-way
        handle.write(torn[:len(torn) // 2])
    reopened = logic.open_review(result, store)
    assert sorted(reopened.labels) == [3, 4, 5] and len(reopened.skipped_lines) == 1
    reopened.mark_no_haemorrhage(row=9)                         # written after the tear
    again = logic.open_review(result, store)
    assert sorted(again.labels) == [3, 4, 5, 9] and again.labels[9].haemorrhage is False
    with pytest.warns(FeedbackStoreWarning, match="line 4 is not a valid record"):
        assert len(_slice_records(again.case)) == 4


# ------------------------------------------------------------------ child process


def test_prediction_command_line(logic, tmp_path):
    argv = logic.prediction_command(tmp_path / "in.nii.gz", tmp_path / "out", "model",
                                    device="cuda:1", error_file=tmp_path / "e.json",
                                    python="py")
    assert argv == ["py", "-m", "lesion_core", "--progress-lines", "--error-json",
                    str(tmp_path / "e.json"), "ich", "predict", str(tmp_path / "in.nii.gz"),
                    "--out", str(tmp_path / "out"), "--model", "model", "--device", "cuda:1"]
    assert logic.prediction_command("ct", "out", python="py") == [
        "py", "-m", "lesion_core", "--progress-lines", "ich", "predict", "ct", "--out", "out"]


def test_background_run_adds_the_nodes_of_the_child_outputs(logic, ct_node, out_dir, store,
                                                            monkeypatch):
    monkeypatch.setattr(logic, "prediction_command", lambda image, out, *a, **k: _fake_child(
        "import shutil\nprint('lesion-suite:progress 0.5 classifying slices', flush=True)\n"
        f"shutil.copytree({str(out_dir)!r}, {str(out)!r})\n"))
    job = logic.start_prediction(ct_node, feedback_root=store)
    assert job.wait(60) == 0, job.log_tail()
    result = logic.finish_prediction(job)
    assert not job.work_dir.exists() and result.input is ct_node
    assert result.table.GetNumberOfRows() == 12 and result.model_segmentation is None


def test_mr_given_as_ct_surfaces_the_one_clear_error_and_adds_no_node(logic, mrml_scene,
                                                                      store, monkeypatch):
    """The stand-in child checks its input as ``ich predict`` does (CT in HU)."""
    node = mb.volume_to_node(mrml_scene, io_.mr_volume(seed=2), "MR")
    monkeypatch.setattr(logic, "prediction_command", lambda image, out, *a, **k: _fake_child(
        "import sys\nfrom lesion_core import io\nfrom lesion_core.errors import "
        "LesionSuiteError, error_to_json\nfrom lesion_core.validation import Modality, "
        "validate_image\ntry:\n    validate_image(io.read_volume(sys.argv[1]), Modality.CT)\n"
        "except LesionSuiteError as exc:\n    open(sys.argv[2], 'w').write(error_to_json(exc))"
        "\n    sys.exit(2)\n") + [str(image), str(Path(out).parent / "error.json")])
    before = mrml_scene.GetNumberOfNodes()
    job = logic.start_prediction(node, feedback_root=store)
    job.wait(60)
    with pytest.raises(ModalityError, match="does not look like CT in Hounsfield") as raised:
        logic.finish_prediction(job)
    assert raised.value.fix.startswith("Give a non-contrast head CT in HU")
    assert mrml_scene.GetNumberOfNodes() == before and not job.work_dir.exists()
    assert not store.exists()


def test_the_real_command_refuses_mr_given_as_ct(logic, mrml_scene, store):
    """``lesion-suite ich predict`` itself, on an MR volume: refused before any model."""
    node = mb.volume_to_node(mrml_scene, io_.mr_volume(seed=3), "MR")
    before = mrml_scene.GetNumberOfNodes()
    with pytest.raises(ModalityError, match="not look like CT in Hounsfield units"):
        logic.run(node, device="cpu", feedback_root=store, timeout=240)
    assert mrml_scene.GetNumberOfNodes() == before and not store.exists()


def test_damaged_outputs_give_one_clear_error_and_no_node(logic, mrml_scene, ct_node,
                                                          out_dir, store):
    before = mrml_scene.GetNumberOfNodes()
    path = out_dir / "ich_slices.csv"
    text = path.read_text()
    path.write_text(text.replace("\n11,", "\n15,", 1))        # another CT's slices
    with pytest.raises(UnreadableFileError, match="slice 15 is not a slice index 0-11"):
        logic.load_results(ct_node, out_dir, feedback_root=store)
    path.write_text(text.replace("\n4,0.9", "\n4,1.9", 1))
    with pytest.raises(UnreadableFileError, match="probability outside") as raised:
        logic.load_results(ct_node, out_dir, feedback_root=store)
    assert str(path) in str(raised.value)
    (out_dir / "ich_summary.json").write_text(json.dumps({"model": {}}))
    with pytest.raises(UnreadableFileError, match="lacks"):
        logic.load_results(ct_node, out_dir, feedback_root=store)
    assert mrml_scene.GetNumberOfNodes() == before


def test_force_asks_for_a_result_marked_out_of_distribution(logic, ct_node, monkeypatch):
    """``force`` gives ``--force`` (last), from ``start_prediction`` too; never otherwise."""
    from lesion_core.cli import build_parser

    assert ICHWeakSegLogic.prediction_options(force=True)["--force"] is True
    assert ICHWeakSegLogic.prediction_options()["--force"] is False
    argv = logic.prediction_command("ct", "out", python="py", force=True)
    assert argv[-1] == "--force" and build_parser().parse_args(argv[3:]).force
    assert "--force" not in logic.prediction_command("ct", "out", "model", "cpu", python="py")
    # What start_prediction would run (no child is started here).
    monkeypatch.setattr(logic, "start_in_child", lambda node, command, **options: command(
        Path("in.nii.gz"), Path("out"), Path("error.json")))
    assert logic.start_prediction(ct_node, force=True)[-1] == "--force"
    assert "--force" not in logic.start_prediction(ct_node, "model", "cpu", "store")


def test_a_forced_result_says_so_and_an_older_one_still_loads(logic, ct_node, out_dir,
                                                              store):
    """``out_of_distribution`` of ``ich_summary.json``: the findings on the result and its
    nodes; a summary without it (written before the checks) loads unmarked."""
    path = out_dir / "ich_summary.json"
    summary = json.loads(path.read_text())
    assert "out_of_distribution" not in summary
    older = logic.load_results(ct_node, out_dir, feedback_root=store)
    assert older.out_of_distribution == () and older.summary_text("Done.") == "Done."
    attribute = "LesionSuite.ICH.OutOfDistribution"
    assert all(node.GetAttribute(attribute) is None for node in older.nodes)

    findings = ["only 4% of the non-air voxels are soft tissue (-20 to 100 HU), where a "
                "head CT is mostly brain", "the intracranial mask measures 80 mL, outside "
                "the 600-2600 mL of an adult brain (a wrong voxel size, a partial scan or "
                "not a head)"]
    path.write_text(json.dumps({**summary, "out_of_distribution": findings}))
    forced = logic.load_results(ct_node, out_dir, feedback_root=store)
    assert forced.out_of_distribution == tuple(findings)
    assert {node.GetAttribute(attribute) for node in forced.nodes} == {"; ".join(findings)}
    assert forced.summary_text("Done.").startswith(
        f"Out of distribution: {findings[0]}; {findings[1]}. Treat this result with "
        "caution.\n")


def test_the_command_line_parses_the_options_used():
    from lesion_core.cli import build_parser

    argv = ICHWeakSegLogic.prediction_command("ct.nii.gz", "out", "model", "cpu",
                                              error_file="e.json", python="py")
    args = build_parser().parse_args(argv[3:])
    assert (args.out, args.model, args.device, args.error_json) == ("out", "model", "cpu",
                                                                    "e.json")
    args = build_parser().parse_args(ICHWeakSegLogic.training_command("s", "i", "o")[3:])
    assert (args.feedback, args.init, args.out) == ("s", "i", "o")
    from lesion_core.ich.outputs_file import SUBTYPE_COLUMNS

    assert SUBTYPE_COLUMNS == rl.SUBTYPE_KEYS == io_.SUBTYPES


# ------------------------------------------------------------------ training, docs


def test_training_command_and_what_it_needs(logic, result, store, tmp_path):
    assert logic.training_command(store, tmp_path / "init", tmp_path / "new", python="py") == [
        "py", "-m", "lesion_core", "--progress-lines", "ich", "train", "--feedback",
        str(store), "--init", str(tmp_path / "init"), "--out", str(tmp_path / "new")]
    with pytest.raises(LesionSuiteError, match="no ICH slice label"):
        logic.start_training(tmp_path / "empty", init_model=tmp_path)
    logic.open_review(result, store).mark_no_haemorrhage()
    with pytest.raises(ModelBundleError, match="does not exist"):
        logic.start_training(store, init_model=tmp_path / "no-model")


def test_the_documented_scripts_use_only_existing_logic_calls():
    from ICHWeakSegLib.review import ICHSliceReview

    check_documented_scripts("ich_slicer.md", {"logic": ICHWeakSegLogic, "review": ICHSliceReview})

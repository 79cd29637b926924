"""The CMB Detector Logic under the slicer-core wheel (real MRML, no application).

The prediction outputs are hand-made (``cmb_outputs``: a 48 x 48 x 40 oblique LPS volume
with five candidates: three kept, one dropped by stage 2, one by the clean-up), so what is
checked does not depend on a trained model: the nodes made from ``cmb_candidates.json``
and the label maps, their geometry, the child-process path (a stand-in child writes the
files, or fails the way the command fails), and the training command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")

import cmb_outputs as co  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from lesion_core.errors import (InvalidImageError, LesionSuiteError,  # noqa: E402
                                ModalityError, ModelBundleError, OperationCancelled,
                                UnreadableFileError)
from lesion_core.labels import CMB  # noqa: E402
from documented_scripts import check_documented_scripts  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from CMBDetectorLib.logic import CMBDetectorLogic  # noqa: E402
from CMBDetectorLib.outputs import TABLE_COLUMNS  # noqa: E402


@pytest.fixture
def logic():
    return CMBDetectorLogic()


@pytest.fixture(scope="module")
def image():
    return co.swi_volume(seed=3)


@pytest.fixture
def swi_node(mrml_scene, image):
    return mb.volume_to_node(mrml_scene, image, "SWI")


@pytest.fixture
def out_dir(tmp_path, image):
    co.write_outputs(tmp_path / "run1", image)
    return tmp_path / "run1"


def _fake_child(script: str) -> list[str]:
    return [sys.executable, "-c", script]


# ------------------------------------------------------------------ nodes


def test_candidates_become_points_rows_and_a_segmentation(logic, swi_node, out_dir, image):
    data = json.loads((out_dir / "cmb_candidates.json").read_text())
    result = logic.load_results(swi_node, out_dir)

    # One locked point per candidate at its RAS centre, label = id, description.
    points, labels, descriptions, selected = mb.markups_to_points(result.markups)
    assert result.markups.IsA("vtkMRMLMarkupsFiducialNode") and result.markups.GetLocked()
    np.testing.assert_array_equal(points, [c["centre_ras"] for c in data["candidates"]])
    assert labels == [str(c["id"]) for c in data["candidates"]]
    assert descriptions[0] == "p1=0.95 p2=0.90 lobar/frontal"
    assert descriptions[4] == "p1=0.60 p2=0.70 infratentorial/cerebellum"
    assert selected == [True, True, False, False, True]  # kept = counted as CMB
    visible = [bool(result.markups.GetNthControlPointVisibility(i)) for i in range(5)]
    assert visible == [True, True, False, False, True]  # dropped ones hidden

    # The table is in step with the points: same count, order and facts.
    rows = mb.table_to_rows(result.table)
    assert list(rows[0]) == list(TABLE_COLUMNS) and result.table.GetLocked()
    assert [r["id"] for r in rows] == labels
    assert [r["status"] for r in rows] == ["kept", "kept", "dropped: stage 2",
                                           "dropped: elongated", "kept"]
    assert rows[1]["stage2_probability"] == pytest.approx(0.8)
    assert rows[1]["diameter_mm"] == data["candidates"][1]["diameter_mm"]
    assert (rows[1]["location"], rows[1]["region"]) == ("deep", "basal_ganglia")

    # The segmentation holds the kept microbleeds on the input's grid.
    segmentation = result.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    assert segmentation.GetNthSegment(0).GetName() == CMB.name
    exported = mb.segmentation_to_labelmap(result.segmentation, swi_node)
    expected = np.zeros(co.SHAPE, np.uint8)
    for spec in co.SPECS:
        if spec.dropped_by is None:
            expected[co._ball(spec)] = 1
    np.testing.assert_array_equal(exported.array, expected)
    assert result.candidate_labels.array.max() == 5
    assert (result.model_id, result.model_version, result.modality) == \
        ("cmb_shiva_distilled", "1.0", "SWI")
    assert result.kept_count == 3


def test_outputs_follow_the_input_parent_transform(logic, mrml_scene, swi_node, out_dir):
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = vtkMatrix4x4()
    shift.SetElement(1, 3, -12.5)
    transform.SetMatrixTransformToParent(shift)
    swi_node.SetAndObserveTransformNodeID(transform.GetID())
    result = logic.load_results(swi_node, out_dir)
    for node in (result.markups, result.segmentation):
        assert node.GetParentTransformNode() is transform
    local, *_ = mb.markups_to_points(result.markups, world=False)
    world, *_ = mb.markups_to_points(result.markups, world=True)
    np.testing.assert_allclose(world - local, [[0, -12.5, 0]] * 5, atol=1e-9)


def test_save_results_writes_files(logic, swi_node, out_dir, tmp_path):
    result = logic.load_results(swi_node, out_dir)
    paths = logic.save_results(result, tmp_path / "saved")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    lines = paths["table"].read_text().splitlines()
    assert lines[0].split("\t") == list(TABLE_COLUMNS) and len(lines) == 6


# ------------------------------------------------------------------ bad input


def test_bad_outputs_give_one_clear_error_and_no_node(logic, mrml_scene, swi_node, out_dir,
                                                      tmp_path):
    labelmap = mb.volume_to_node(mrml_scene, co.swi_volume().with_array(
        np.zeros(co.SHAPE, np.uint8)), "labels", class_name="vtkMRMLLabelMapVolumeNode")
    before = mrml_scene.GetNumberOfNodes()
    path = out_dir / "cmb_candidates.json"
    data = json.loads(path.read_text())
    data["candidates"][2]["centre_ras"] = [1.0, "x", 2.0]
    path.write_text(json.dumps(data))
    with pytest.raises(UnreadableFileError, match="candidate 3 has a centre_ras") as raised:
        logic.load_results(swi_node, out_dir)
    assert str(path) in str(raised.value) and raised.value.fix
    path.write_text('{"candidates": [')  # cut off
    with pytest.raises(UnreadableFileError, match="cannot be read"):
        logic.load_results(swi_node, out_dir)

    # Outputs of another image: the label maps lie on another grid.
    other = co.swi_volume()
    other.affine[:3, 3] += 5.0
    co.write_outputs(tmp_path / "other", other)
    with pytest.raises(InvalidImageError, match="another voxel grid") as raised:
        logic.load_results(swi_node, tmp_path / "other")
    assert "cmb_labels.nii.gz" in str(raised.value)
    with pytest.raises(InvalidImageError, match="no SWI or T2"):
        logic.load_results(labelmap, tmp_path / "other")
    assert mrml_scene.GetNumberOfNodes() == before


# ------------------------------------------------------------------ child process


def test_prediction_command_line(logic, tmp_path):
    argv = logic.prediction_command(tmp_path / "in.nii.gz", tmp_path / "out", "model",
                                    modality="T2star", allow_modality_mismatch=True,
                                    device="cuda:1", error_file=tmp_path / "e.json",
                                    python="py")
    assert argv == ["py", "-m", "lesion_core", "--progress-lines", "--error-json",
                    str(tmp_path / "e.json"), "cmb", "predict", str(tmp_path / "in.nii.gz"),
                    "--out", str(tmp_path / "out"), "--sequence", "T2star", "--model",
                    "model", "--allow-modality-mismatch", "--device", "cuda:1"]
    assert logic.prediction_command("in", "out", python="py") == [
        "py", "-m", "lesion_core", "--progress-lines", "cmb", "predict", "in", "--out",
        "out", "--sequence", "SWI"]
    with pytest.raises(InvalidImageError, match="modality 'FLAIR'"):
        logic.prediction_command("in", "out", modality="FLAIR")


def test_force_asks_for_a_result_marked_out_of_distribution(logic, swi_node, monkeypatch):
    """``force`` gives ``--force`` (last), from ``start_prediction`` too; never otherwise."""
    from lesion_core.cli import build_parser

    assert CMBDetectorLogic.prediction_options(force=True)["--force"] is True
    assert CMBDetectorLogic.prediction_options()["--force"] is False
    argv = logic.prediction_command("in", "out", python="py", force=True)
    assert argv[-1] == "--force" and build_parser().parse_args(argv[3:]).force
    assert "--force" not in logic.prediction_command("in", "out", python="py")
    assert not build_parser().parse_args(logic.prediction_command("in", "out")[3:]).force
    # What start_prediction would run (no child is started here).
    monkeypatch.setattr(logic, "start_in_child", lambda node, command, **options: command(
        Path("in.nii.gz"), Path("out"), Path("error.json")))
    assert logic.start_prediction(swi_node, force=True)[-1] == "--force"
    assert "--force" not in logic.start_prediction(swi_node, "model", "T2star", True, "cpu")


def test_a_forced_result_says_so_and_an_older_one_still_loads(logic, swi_node, out_dir):
    """``out_of_distribution`` of ``cmb_candidates.json``: the findings on the result and
    its nodes; a file without it (written before the checks) loads unmarked."""
    path = out_dir / "cmb_candidates.json"
    data = json.loads(path.read_text())
    assert "out_of_distribution" not in data
    older = logic.load_results(swi_node, out_dir)
    assert older.out_of_distribution == () and older.summary_text("Done.") == "Done."
    attribute = "LesionSuite.CMB.OutOfDistribution"
    assert all(node.GetAttribute(attribute) is None for node in older.nodes)

    findings = ["the image has only 3 distinct values: a mask or label map, not a scan"]
    path.write_text(json.dumps({**data, "out_of_distribution": findings}))
    forced = logic.load_results(swi_node, out_dir)
    assert forced.out_of_distribution == tuple(findings)
    assert forced.summary["out_of_distribution"] == findings
    assert {node.GetAttribute(attribute) for node in forced.nodes} == {findings[0]}
    assert forced.summary_text("Done.") == (f"Out of distribution: {findings[0]}. Treat this "
                                            "result with caution.\nDone.")
    path.write_text(json.dumps({**data, "out_of_distribution": []}))
    assert logic.load_results(swi_node, out_dir).out_of_distribution == ()


def test_the_command_line_parses_the_options_used():
    from lesion_core.cli import build_parser

    argv = CMBDetectorLogic.prediction_command("in.nii.gz", "out", "model", "cuda:1",
                                               error_file="e.json", python="py",
                                               modality="T2star", allow_modality_mismatch=True)
    args = build_parser().parse_args(argv[3:])
    assert (args.image, args.out, args.model, args.sequence, args.allow_modality_mismatch,
            args.device, args.error_json) == ("in.nii.gz", "out", "model", "T2star", True,
                                              "cuda:1", "e.json")
    argv = CMBDetectorLogic.training_command("s", "i", "o", stage1=True, python="py")
    args = build_parser().parse_args(argv[3:])
    assert (args.feedback, args.init, args.out, args.stage1) == ("s", "i", "o", True)


def test_background_run_adds_the_nodes_of_the_child_outputs(logic, mrml_scene, swi_node,
                                                            out_dir, monkeypatch):
    """A stand-in child reports progress and writes the files where ``--out`` says."""
    def command(image_path, out, *args, **kwargs):
        return _fake_child(
            "import shutil, sys\n"
            "print('lesion-suite:progress 0.5 detecting', flush=True)\n"
            f"shutil.copytree({str(out_dir)!r}, {str(out)!r})\n")

    monkeypatch.setattr(logic, "prediction_command", command)
    job = logic.start_prediction(swi_node)
    assert job.wait(60) == 0, job.log_tail()
    assert (job.work_dir / "input.nii.gz").is_file()
    result = logic.finish_prediction(job)
    assert not job.work_dir.exists()
    assert result.input is swi_node and result.markups.GetNumberOfControlPoints() == 5
    assert mb.table_to_rows(result.table)[2]["status"] == "dropped: stage 2"


@pytest.mark.parametrize("script, error, text", [
    ("import json, sys\n"
     "json.dump({'type': 'ModalityError', 'problem': 'this looks like CT, not SWI',"
     " 'fix': 'load an SWI or T2*-GRE volume', 'source': 'input.nii.gz'},"
     " open(sys.argv[-1], 'w'))\n"
     "sys.exit(2)\n", ModalityError, "looks like CT"),
    ("import sys\nprint('Traceback: boom')\nsys.exit(1)\n", RuntimeError, "Traceback: boom"),
])
def test_a_failing_command_surfaces_one_clear_error(logic, mrml_scene, swi_node,
                                                    monkeypatch, script, error, text):
    monkeypatch.setattr(logic, "prediction_command", lambda image, out, *a, **k: _fake_child(
        script) + [str(Path(out).parent / "error.json")])
    before = mrml_scene.GetNumberOfNodes()
    job = logic.start_prediction(swi_node)
    job.wait(60)
    with pytest.raises(error, match=text) as raised:
        logic.finish_prediction(job)
    if error is ModalityError:
        assert raised.value.fix == "Load an SWI or T2*-GRE volume"
    assert mrml_scene.GetNumberOfNodes() == before and not job.work_dir.exists()


def test_cancel_and_run_timeout_add_no_node(logic, mrml_scene, swi_node, monkeypatch):
    monkeypatch.setattr(logic, "prediction_command",
                        lambda *a, **k: _fake_child("import time\ntime.sleep(60)\n"))
    before = mrml_scene.GetNumberOfNodes()
    job = logic.start_prediction(swi_node)
    job.cancel()
    job.wait(30)
    with pytest.raises(OperationCancelled):
        logic.finish_prediction(job)
    with pytest.raises(OperationCancelled, match="ran over"):
        logic.run(swi_node, timeout=0.2)
    assert mrml_scene.GetNumberOfNodes() == before


def test_the_real_command_runs_with_the_shipped_model(logic, mrml_scene, tmp_path):
    """End to end through ``lesion-suite cmb predict`` once the default model ships."""
    pytest.importorskip("torch")
    from dataclasses import replace

    from lesion_core.cli.synth import small_config
    from lesion_core.synth import make_subject
    from lesion_core.tasks import get_task

    if not get_task("cmb").default_model_folder().is_dir():
        pytest.skip("the shipped CMB model is not installed")
    subject = make_subject(2, replace(small_config("cmb"), kind="cmb", swi_variant="SWI",
                                      lesion_count=4))
    node = mb.volume_to_node(mrml_scene, subject.images["SWI"], "SWI")
    job = logic.start_prediction(node, device="cpu")
    assert job.wait(300) == 0, job.log_tail()
    data = json.loads((job.out_dir / "cmb_candidates.json").read_text())
    result = logic.finish_prediction(job)
    points, labels, _, _ = mb.markups_to_points(result.markups, world=False)
    np.testing.assert_allclose(points, [c["centre_ras"] for c in data["candidates"]]
                               or np.zeros((0, 3)))
    assert labels == [str(c["id"]) for c in data["candidates"]]
    assert result.table.GetNumberOfRows() == len(labels)
    review = logic.open_review(result, tmp_path / "feedback", show_rejected=True)
    if review.items:
        review.reject(0)
        assert len(review.case.records()) == 1


# ------------------------------------------------------------------ training


def test_training_command_options(logic):
    # Its own options; the start every task shares: test_task_layer.py
    assert logic.training_command("s", "i", "o", stage1=True, python="py")[-1] == "--stage1"


def test_training_needs_decisions_and_a_start_model(logic, swi_node, out_dir, tmp_path):
    with pytest.raises(LesionSuiteError, match="no CMB decision"):
        logic.start_training(tmp_path / "empty")
    result = logic.load_results(swi_node, out_dir)
    logic.open_review(result, tmp_path / "feedback").accept()
    with pytest.raises(ModelBundleError, match="does not exist"):
        logic.start_training(tmp_path / "feedback", init_model=tmp_path / "no-model")


# ------------------------------------------------------------------ documentation


def test_the_documented_scripts_use_only_existing_logic_calls():
    """The scripts of docs/cmb_slicer.md compile and call only what the Logic and the
    review offer, with keyword names their signatures have."""
    from CMBDetectorLib.review import CMBReview

    check_documented_scripts("cmb_slicer.md", {"logic": CMBDetectorLogic, "review": CMBReview})

"""The WMH DualTasker Logic under the slicer-core wheel (real MRML, no application).

A small synthetic subject (3.5 mm; the FLAIR grid is oblique, the T1 grid LPS) runs
through tiny untrained models (seeded) with the atlases of its known MNI transform, so no
registration is needed. What is checked holds for any weights: the nodes made, their
geometry (identical to the input's), the reader's ratings in the feedback store (written
once, surviving a torn write, restored on reopening), the training command, and bad input
leaving the scene as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")
pytest.importorskip("torch")

import slicer  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from lesion_core.cli.synth import small_config  # noqa: E402
from lesion_core.errors import (FeedbackStoreError, InvalidImageError,  # noqa: E402
                                LesionSuiteError, ModalityError, ModelBundleError,
                                OperationCancelled)
from lesion_core.feedback import FeedbackStore, FeedbackStoreWarning  # noqa: E402
from lesion_core.labels import WMH  # noqa: E402
from lesion_core.progress import Progress  # noqa: E402
from lesion_core.synth import make_subject  # noqa: E402
from lesion_core.atlas.arwmc import REGIONS  # noqa: E402
from lesion_core.volume import Volume  # noqa: E402
from lesion_core.wmh.config import DualTaskerConfig  # noqa: E402
from lesion_core.wmh.data import known_transform_masks  # noqa: E402
from lesion_core.wmh.model import build_t1_network, save_wmh_model  # noqa: E402
from lesion_core.wmh.predict import SubjectAtlases, predict  # noqa: E402
from lesion_core.wmh.reader_ratings import RATING_KIND  # noqa: E402
from lesion_core.wmh.train import build_network  # noqa: E402
import saved_work as sw  # noqa: E402
from documented_scripts import check_documented_scripts  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from LesionSuiteLib.volumes import matrix_to_numpy  # noqa: E402
from WMHDualTaskerLib.logic import WMHDualTaskerLogic  # noqa: E402
from WMHDualTaskerLib.outputs import TABLE_COLUMNS  # noqa: E402
from WMHDualTaskerLib.review import (RatingReview, case_id_for_volume,  # noqa: E402
                                     case_image)

TINY = DualTaskerConfig(spacing_mm=4.0, shape=(48, 56, 48), features=(4, 8, 16))


@pytest.fixture(scope="module")
def subject():
    return make_subject(21, small_config("wmh"))


@pytest.fixture(scope="module")
def atlases(subject) -> SubjectAtlases:
    """Brain mask and ARWMC atlas on the anatomy grid (the Logic resamples them); the
    ARWMC atlas stands in for the zone atlas, which nothing here checks."""
    brain, arwmc = known_transform_masks(subject)
    return SubjectAtlases(brain, arwmc, arwmc)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    import torch

    folder = tmp_path_factory.mktemp("wmh_models")
    torch.manual_seed(0)
    save_wmh_model(folder / "flair", build_network(TINY), TINY)
    save_wmh_model(folder / "t1", build_t1_network(TINY), TINY, t1=True)
    return {"flair": folder / "flair", "t1": folder / "t1"}


@pytest.fixture
def logic():
    return WMHDualTaskerLogic()


@pytest.fixture
def flair_node(mrml_scene, subject):
    return mb.volume_to_node(mrml_scene, subject.images["FLAIR"], "FLAIR")


@pytest.fixture
def flair_result(logic, flair_node, model_dirs, atlases):
    return logic.run(flair_node, model_dirs["flair"], atlases=atlases)


def _on_grid(volume: Volume, image: Volume) -> Volume:
    return volume.resample_to_grid(image.affine, image.shape, order=0, fill=0)


def _assert_same_grid(node, input_node) -> None:
    """Same IJK-to-RAS matrix (bit for bit) and dimensions as the input volume."""
    np.testing.assert_array_equal(mb.node_ijk_to_ras(node, world=False),
                                  mb.node_ijk_to_ras(input_node, world=False))
    assert node.GetImageData().GetDimensions() == input_node.GetImageData().GetDimensions()


def _assert_reference_is_input(segmentation_node, input_node) -> None:
    geometry = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(
        segmentation_node.GetSegmentation().GetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()), geometry)
    matrix = vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose(matrix_to_numpy(matrix),
                               mb.node_ijk_to_ras(input_node, world=False), rtol=0, atol=1e-9)
    dims = input_node.GetImageData().GetDimensions()
    assert geometry.GetExtent() == (0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)


def _rating_records(review: RatingReview) -> list:
    return [r for r in review.case.records() if r.kind == RATING_KIND]


# ------------------------------------------------------------------ prediction


def test_flair_gives_segmentation_overlay_table_and_regions_on_the_input_grid(
        logic, flair_node, flair_result, model_dirs, atlases):
    result = flair_result
    image = mb.node_to_volume(flair_node, world=False)
    expected = predict(image, logic.load_model(model_dirs["flair"]),
                       SubjectAtlases(*(_on_grid(v, image) for v in
                                        (atlases.brain, atlases.arwmc, atlases.zones))))

    # WMH segmentation: one segment with the lesion terminology, the prediction's voxels.
    segmentation = result.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetNthSegment(0)
    assert segment.GetName() == WMH.name
    assert mb.segment_terminology(segment) == mb.terminology_string(WMH)
    _assert_reference_is_input(result.segmentation, flair_node)
    exported = mb.segmentation_to_labelmap(result.segmentation, flair_node)
    assert expected.labels.array.any()
    np.testing.assert_array_equal(exported.array, expected.labels.array)

    # Activation overlay: float32 0..1 on the same grid, with a colour map.
    _assert_same_grid(result.activation, flair_node)
    activation = mb.node_to_volume(result.activation)
    assert activation.array.dtype == np.float32
    np.testing.assert_array_equal(activation.array, expected.activation.array)
    assert result.activation.GetDisplayNode().GetColorNodeID()

    # ARWMC table: 10 region-sides then the total, predicted values, empty reader column.
    rows = mb.table_to_rows(result.table)
    assert list(rows[0]) == list(TABLE_COLUMNS)
    assert [f"{r['region']}_{r['side']}" for r in rows[:10]] == list(REGIONS)
    assert rows[10]["region"] == "total" and rows[10]["level"] == expected.total
    assert [r["level"] for r in rows[:10]] == [expected.levels[k] for k in REGIONS]
    assert rows[0]["rating"] == pytest.approx(expected.ratings[REGIONS[0]], abs=0.005)
    assert all(r["reader_rating"] == "" for r in rows)
    assert result.table.GetLocked()
    assert result.total == expected.total and result.model_version == "1.0"
    # The rating and the mask it comes with agree region by region: no lesion voxel where
    # the level is 0, and the agreement the widget shows is the prediction's.
    levels = [expected.levels[k] for k in REGIONS]
    for index, level in enumerate(levels):
        if level == 0:
            assert not (exported.array & (expected.atlases.arwmc.array == index + 1)).any()
    assert result.agreement == pytest.approx(expected.agreement)

    # Region atlas: one named segment per region-side present, hidden until asked for.
    present = sorted(int(v) for v in np.unique(expected.atlases.arwmc.array) if v)
    names = sorted(result.regions.GetSegmentation().GetNthSegment(i).GetName()
                   for i in range(result.regions.GetSegmentation().GetNumberOfSegments()))
    assert names == sorted(REGIONS[v - 1] for v in present) and len(present) == 10
    np.testing.assert_array_equal(mb.segmentation_to_labelmap(result.regions, flair_node).array,
                                  expected.atlases.arwmc.array)
    assert not result.regions.GetDisplayNode().GetVisibility()
    logic.set_regions_visible(result, True)
    assert result.regions.GetDisplayNode().GetVisibility()


def test_t1_mode_segments_without_ratings(logic, mrml_scene, subject, model_dirs, atlases):
    node = mb.volume_to_node(mrml_scene, subject.images["T1"], "T1")
    result = logic.run(node, model_dirs["t1"], t1=True, atlases=atlases)
    assert result.modality == "T1" and result.total is None
    _assert_same_grid(result.activation, node)
    _assert_reference_is_input(result.segmentation, node)
    _assert_reference_is_input(result.regions, node)
    rows = mb.table_to_rows(result.table)
    assert len(rows) == 11
    assert all(r["rating"] == "" and r["level"] == "" for r in rows)  # no rating in T1 mode
    # Every brain voxel has a region-side, so the region rows add up to the total (each
    # row is rounded to 0.001 mL).
    assert rows[10]["lesion_ml"] > 0
    assert sum(r["lesion_ml"] for r in rows[:10]) == pytest.approx(rows[10]["lesion_ml"],
                                                                    abs=0.006)


def test_outputs_follow_the_input_parent_transform(logic, mrml_scene, flair_node, model_dirs,
                                                   atlases):
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 25.0)
    transform.SetMatrixTransformToParent(shift)
    flair_node.SetAndObserveTransformNodeID(transform.GetID())
    result = logic.run(flair_node, model_dirs["flair"], atlases=atlases)
    for node in (result.segmentation, result.activation, result.regions):
        assert node.GetParentTransformNode() is transform
    _assert_same_grid(result.activation, flair_node)


def test_cancel_stops_the_run_and_adds_nothing(logic, mrml_scene, flair_node, model_dirs,
                                               atlases):
    before = mrml_scene.GetNumberOfNodes()
    progress = Progress()
    progress.cancel()
    with pytest.raises(OperationCancelled):
        logic.run(flair_node, model_dirs["flair"], progress=progress, atlases=atlases)
    assert mrml_scene.GetNumberOfNodes() == before


def test_save_results_writes_files_that_read_back(logic, flair_result, tmp_path):
    paths = logic.save_results(flair_result, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    lines = paths["table"].read_text().splitlines()
    assert lines[0].split("\t") == list(TABLE_COLUMNS) and len(lines) == 12


# ------------------------------------------------------------------ bad input


def _ct_like(shape=(40, 44, 36)) -> Volume:
    rng = np.random.default_rng(0)
    array = np.full(shape, -1000.0, np.float32)            # air in Hounsfield units
    array[8:32, 8:36, 6:30] = 35 + rng.normal(0, 5, (24, 28, 24))  # brain
    return Volume(array, np.diag([0.9, 0.9, 1.5, 1.0]))


@pytest.mark.parametrize("make, error", [
    (lambda: _ct_like(), ModalityError),
    (lambda: Volume(np.random.default_rng(1).random((40, 44, 1), np.float32) * 500,
                    np.diag([0.9, 0.9, 5.0, 1.0])), InvalidImageError),
])
def test_bad_input_raises_the_clear_error_and_leaves_no_node(logic, mrml_scene, model_dirs,
                                                             make, error):
    node = mb.volume_to_node(mrml_scene, make(), "bad")
    before = mrml_scene.GetNumberOfNodes()
    with pytest.raises(error) as raised:
        logic.run(node, model_dirs["flair"])
    assert raised.value.fix  # the message says what to do
    assert mrml_scene.GetNumberOfNodes() == before


def test_labelmap_and_missing_or_wrong_models_are_refused(logic, mrml_scene, flair_node,
                                                          model_dirs, monkeypatch, tmp_path):
    labelmap = mb.volume_to_node(mrml_scene, Volume(np.ones((8, 8, 8), np.uint8), np.eye(4)),
                                 "labels", class_name="vtkMRMLLabelMapVolumeNode")
    before = mrml_scene.GetNumberOfNodes()
    with pytest.raises(InvalidImageError):
        logic.run(labelmap, model_dirs["flair"])
    with pytest.raises(ModelBundleError, match="this is a FLAIR model but the T1 mode"):
        logic.run(flair_node, model_dirs["flair"], t1=True)
    # No shipped model installed: the error says so and what to do.
    monkeypatch.setattr("lesion_core.model_folders.default_models_dir", lambda: tmp_path / "none")
    with pytest.raises(ModelBundleError, match="shipped FLAIR WMH model is not installed"):
        logic.run(flair_node)
    assert mrml_scene.GetNumberOfNodes() == before


def test_a_failure_while_adding_nodes_removes_those_added(logic, mrml_scene, flair_node,
                                                          model_dirs, atlases, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("table could not be made")

    before = mrml_scene.GetNumberOfNodes()
    monkeypatch.setattr(mb, "rows_to_table", broken)
    with pytest.raises(RuntimeError, match="table could not be made"):
        logic.run(flair_node, model_dirs["flair"], atlases=atlases)
    # The segmentation and activation made before the failure are gone again (the scene
    # may keep the shared colour table the activation created).
    leftover = [mrml_scene.GetNthNode(i) for i in range(before, mrml_scene.GetNumberOfNodes())]
    assert not [n for n in leftover if not n.IsA("vtkMRMLColorNode")]


# ------------------------------------------------------------------ ratings


def test_a_rating_is_stored_once_with_reader_and_model(logic, flair_result, tmp_path):
    review = logic.open_review(flair_result, tmp_path / "feedback", reader="dr-a")
    record = review.set_rating("frontal_left", 2)
    assert review.set_rating("frontal_left", 2) is None  # unchanged: nothing written

    records = _rating_records(review)
    assert len(records) == 1 and records[0].record_id == record.record_id
    assert (records[0].target, records[0].payload, records[0].reader) == \
        ("frontal_left", {"rating": 2}, "dr-a")
    assert (records[0].model_id, records[0].model_version) == \
        (flair_result.model_id, flair_result.model_version) == ("wmh_flair_dualtasker", "1.0")
    assert mb.table_to_rows(flair_result.table)[0]["reader_rating"] == "2"
    assert [row.reader for row in review.rows()][:2] == [2, None]

    # The case names its image (saved into the case: the node has no file) for training.
    info = review.case.info()
    assert info["modality"] == "FLAIR"
    from lesion_core import io as lesion_io
    stored = lesion_io.read_volume(info["image"])
    np.testing.assert_array_equal(stored.array,
                                  mb.node_to_volume(flair_result.input, world=False).array)


def test_invalid_ratings_are_refused_and_not_stored(logic, flair_result, tmp_path):
    review = logic.open_review(flair_result, tmp_path / "feedback")
    for target, text in (("frontal_left", "4"), ("frontal_left", "1.5"), ("frontal_left", "x"),
                         ("frontal_left", "-1"), ("frontal_left", "nan"), ("total", "31")):
        with pytest.raises(FeedbackStoreError):
            review.set_rating_text(target, text)
    with pytest.raises(FeedbackStoreError):
        review.set_rating("occipital_middle", 1)
    assert _rating_records(review) == [] and review.ratings == {}
    assert not review.case.folder.exists()  # a refused entry leaves no trace
    review.set_rating_text("total", " 12 ")
    assert review.ratings == {"total": 12}
    assert mb.table_to_rows(flair_result.table)[10]["reader_rating"] == "12"


def test_clear_and_undo(logic, flair_result, tmp_path):
    review = logic.open_review(flair_result, tmp_path / "feedback")
    assert not review.can_undo
    review.set_rating("temporal_right", 1)
    review.set_rating("temporal_right", 3)
    assert review.undo() and review.rating("temporal_right") == 1
    review.set_rating_text("temporal_right", "")  # typing nothing clears
    assert review.rating("temporal_right") is None
    assert mb.table_to_rows(flair_result.table)[5]["reader_rating"] == ""
    assert review.undo() and review.rating("temporal_right") == 1
    assert review.undo() and review.rating("temporal_right") is None
    assert not review.undo()
    # The store keeps the whole history; a fresh review sees only what stands.
    assert logic.open_review(flair_result, tmp_path / "feedback").ratings == {}


def test_a_torn_write_loses_only_the_record_in_flight(logic, flair_result, tmp_path):
    review = logic.open_review(flair_result, tmp_path / "feedback", reader="dr-b")
    review.set_rating("frontal_left", 1)
    review.set_rating("basal_ganglia_right", 2)
    # A process killed in the middle of writing the next rating leaves a partial line.
    whole = review.case.records_path.read_bytes().splitlines(keepends=True)[-1]
    with open(review.case.records_path, "ab") as handle:
        handle.write(whole[: len(whole) // 2])

    # The review reports the damaged line (the widget says so) instead of warning.
    reopened = logic.open_review(flair_result, tmp_path / "feedback", reader="dr-b")
    assert reopened.ratings == {"frontal_left": 1, "basal_ganglia_right": 2}
    assert len(reopened.skipped_lines) == 1 and "cut off" in reopened.skipped_lines[0]
    reopened.set_rating("temporal_left", 3)  # later ratings still save
    again = logic.open_review(flair_result, tmp_path / "feedback")
    assert again.ratings == {"frontal_left": 1, "basal_ganglia_right": 2, "temporal_left": 3}
    with pytest.warns(FeedbackStoreWarning):  # the store itself still flags the line
        assert len(again.case.records()) == 3
    assert len(again.skipped_lines) == 1  # the sealed torn line, nothing else


def test_reopening_the_case_restores_the_ratings_into_a_new_table(
        logic, flair_node, flair_result, model_dirs, atlases, tmp_path):
    root = tmp_path / "feedback"
    first = logic.open_review(flair_result, root, reader="dr-c")
    first.set_rating("infratentorial_left", 2)
    first.set_rating("total", 9)

    # Run again (a new table with an empty reader column), with the volume renamed.
    flair_node.SetName("FLAIR renamed")
    rerun = logic.run(flair_node, model_dirs["flair"], atlases=atlases)
    assert rerun.table is not flair_result.table
    review = logic.open_review(rerun, root)
    assert review.case_id == first.case_id
    assert review.ratings == {"infratentorial_left": 2, "total": 9}
    reader = [row["reader_rating"] for row in mb.table_to_rows(rerun.table)]
    assert reader[REGIONS.index("infratentorial_left")] == "2" and reader[10] == "9"
    assert sum(1 for value in reader if value) == 2
    assert len(_rating_records(review)) == 2  # the re-run wrote and erased nothing


def test_case_id_names_the_image_content(subject, mrml_scene, tmp_path):
    flair, t1 = subject.images["FLAIR"], subject.images["T1"]
    case_id = case_id_for_volume("FLAIR 3D/ax", flair)
    assert case_id == case_id_for_volume("FLAIR 3D/ax", flair.with_array(flair.array.copy()))
    assert case_id.startswith("FLAIR_3D_ax-") and len(case_id.rsplit("-", 1)[1]) == 12
    assert FeedbackStore(tmp_path).case(case_id).case_id == case_id  # a valid store id
    assert case_id_for_volume("FLAIR 3D/ax", t1) != case_id
    shifted = Volume(flair.array, flair.affine.copy())
    shifted.affine[0, 3] += 1.0  # same voxels, placed 1 mm to the right: another image
    assert case_id_for_volume("FLAIR 3D/ax", shifted) != case_id
    assert case_id_for_volume("", flair).startswith("volume-")

    # A volume read from a file (and not changed since) is stored by its path, not copied.
    node = mb.volume_to_node(mrml_scene, flair, "FLAIR")
    assert isinstance(case_image(node, flair), Volume)
    path = mb.write_node(node, tmp_path / "flair.nrrd")
    assert case_image(node, flair) == path.resolve()


# ------------------------------------------------------------------ training


def test_training_command_options(logic):
    # Its own options; the start every task shares: test_task_layer.py
    argv = logic.training_command("s", "i", "o", steps=25, device="cuda:1", python="py")
    assert argv[-4:] == ["--steps", "25", "--device", "cuda:1"]
    assert logic.training_command("s", "i", "o", device="mps", python="py")[-2:] == \
        ["--device", "mps"]
    from lesion_core.cli import build_parser  # the command line parses
    args = build_parser().parse_args(argv[3:])
    assert (args.feedback, args.init, args.out, args.steps) == ("s", "i", "o", 25)


def test_training_needs_a_rated_case_and_a_start_model(logic, flair_result, tmp_path):
    with pytest.raises(LesionSuiteError, match="no FLAIR case"):
        logic.start_training(tmp_path / "empty")
    review = logic.open_review(flair_result, tmp_path / "feedback")
    review.set_rating("frontal_left", 1)
    with pytest.raises(ModelBundleError, match="does not exist"):
        logic.start_training(tmp_path / "feedback", init_model=tmp_path / "no-model")


def test_the_training_command_runs(logic, flair_result, model_dirs, tmp_path):
    """The real ``lesion-suite wmh train`` fine-tunes from the store (one step)."""
    from lesion_core.wmh.model import load_wmh_model

    review = logic.open_review(flair_result, tmp_path / "feedback")
    review.set_rating("frontal_right", 1)
    review.set_rating("total", 6)
    child, out = logic.start_training(tmp_path / "feedback", model_dirs["flair"],
                                      tmp_path / "new_model", steps=1, device="cpu")
    assert child.wait(600) == 0, child.log_tail()
    child.poll()  # the events the GUI's timer would have read
    assert out == tmp_path / "new_model"
    assert child.last_progress is not None and child.last_progress.fraction == 1.0
    model = load_wmh_model(out)
    assert model.metadata.training["subjects"] == 1
    assert "wmh_flair_dualtasker" in model.metadata.training["fine_tuned_from"]


# ------------------------------------------------------------------ background


def test_prediction_command_line(logic, tmp_path):
    """The child runs the command line's ``wmh predict``; the command parses."""
    from lesion_core.cli import build_parser

    argv = logic.prediction_command(tmp_path / "in.nii.gz", tmp_path / "out", "model",
                                    t1=True, device="cuda:1", atlases_dir=tmp_path / "atl",
                                    error_file=tmp_path / "error.json", python="py")
    assert argv[:7] == ["py", "-m", "lesion_core", "--progress-lines", "--error-json",
                        str(tmp_path / "error.json"), "wmh"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.wmh_command, args.image, args.out, args.model, args.t1,
            args.device, args.atlases) == ("wmh", "predict", str(tmp_path / "in.nii.gz"),
                                           str(tmp_path / "out"), "model", True, "cuda:1",
                                           str(tmp_path / "atl"))
    argv = logic.prediction_command("in.nii.gz", "out", python="py")
    assert argv == ["py", "-m", "lesion_core", "--progress-lines", "wmh", "predict",
                    "in.nii.gz", "--out", "out", "--device", "cpu"]


def test_force_asks_for_a_result_marked_out_of_distribution(logic, mrml_scene,
                                                            monkeypatch):
    """``force`` gives ``--force`` (last), from ``start_prediction`` too; never otherwise."""
    from lesion_core.cli import build_parser

    assert WMHDualTaskerLogic.prediction_options(force=True)["--force"] is True
    assert WMHDualTaskerLogic.prediction_options()["--force"] is False
    argv = logic.prediction_command("in.nii.gz", "out", python="py", force=True)
    assert argv[-1] == "--force" and build_parser().parse_args(argv[3:]).force
    assert "--force" not in logic.prediction_command("in.nii.gz", "out", "m", t1=True)
    # What start_prediction would run (no child is started here).
    node = mb.volume_to_node(mrml_scene, sw.wmh_image(), "FLAIR")
    monkeypatch.setattr(logic, "start_in_child", lambda node, command, **options: command(
        Path("in.nii.gz"), Path("out"), Path("error.json")))
    assert logic.start_prediction(node, "model", force=True)[-1] == "--force"
    assert "--force" not in logic.start_prediction(node, "model", True, "cpu")


def _write_outputs(folder: Path, image: Volume, **summary) -> None:
    """The files of a ``wmh predict`` output folder, made by hand (``saved_work``'s
    outputs), the summary updated with ``summary``."""
    import json

    from lesion_core import io as lesion_io
    from lesion_core.wmh.outputs_file import FILES

    outputs = sw.wmh_outputs(image)
    paths = FILES.create(folder)
    for key in ("labels", "activation", "regions"):
        lesion_io.write_volume(getattr(outputs, key), paths[key])
    paths["summary"].write_text(json.dumps({**outputs.summary, "brain_ml": 1200.0,
                                            "zone_ml": {}, **summary}))


def test_a_forced_result_says_so_and_an_older_one_still_loads(logic, mrml_scene, tmp_path):
    """``out_of_distribution`` of ``wmh_summary.json``: the findings on the result and its
    nodes; a summary without it (written before the checks) loads unmarked."""
    image = sw.wmh_image()
    node = mb.volume_to_node(mrml_scene, image, "FLAIR")
    attribute = "LesionSuite.WMH.OutOfDistribution"
    _write_outputs(tmp_path / "older", image)
    older = logic.load_results(node, tmp_path / "older")
    assert older.out_of_distribution == () and older.summary_text("Done.") == "Done."
    assert all(n.GetAttribute(attribute) is None for n in older.nodes)

    findings = ["the image spans 48 to 84 mm along its axes (voxel size 2, 2, 3 mm), outside "
                "the 40-450 mm of a head; a wrong voxel size in the header does this too"]
    _write_outputs(tmp_path / "forced", image, out_of_distribution=findings)
    forced = logic.load_results(node, tmp_path / "forced")
    assert forced.out_of_distribution == tuple(findings)
    assert {n.GetAttribute(attribute) for n in forced.nodes} == {findings[0]}
    assert forced.summary_text("ARWMC total: 4.").splitlines() == [
        f"Out of distribution: {findings[0]}. Treat this result with caution.",
        "ARWMC total: 4."]


def test_background_prediction_gives_the_in_process_result(logic, mrml_scene, flair_node,
                                                           flair_result, model_dirs, atlases):
    job = logic.start_prediction(flair_node, model_dirs["flair"], atlases=atlases)
    assert not job.done
    assert job.wait(600) == 0, job.log_tail()
    assert job.poll()[0] == 1.0
    result = logic.finish_prediction(job)
    assert not job.work_dir.exists()
    assert result.input is flair_node and result.model_version == "1.0"
    _assert_same_grid(result.activation, flair_node)
    _assert_reference_is_input(result.segmentation, flair_node)
    # The child read the image back from a file whose header keeps the affine in float32,
    # so the working grid may differ by micrometres: the maps agree to float precision.
    np.testing.assert_allclose(mb.node_to_volume(result.activation).array,
                               mb.node_to_volume(flair_result.activation).array, atol=1e-4)
    ours = mb.segmentation_to_labelmap(result.segmentation, flair_node).array
    theirs = mb.segmentation_to_labelmap(flair_result.segmentation, flair_node).array
    assert np.mean(ours != theirs) < 1e-3
    assert mb.table_to_rows(result.table)[10]["level"] == flair_result.total


def test_background_cancel_and_errors_add_no_node(logic, mrml_scene, flair_node, model_dirs,
                                                  atlases):
    before = mrml_scene.GetNumberOfNodes()
    job = logic.start_prediction(flair_node, model_dirs["flair"], atlases=atlases)
    job.cancel()
    job.wait(60)
    with pytest.raises(OperationCancelled):
        logic.finish_prediction(job)
    assert not job.work_dir.exists()

    # A user error in the child comes back as the same error class, with its fix.
    ct = mb.volume_to_node(mrml_scene, _ct_like(), "CT")
    before = mrml_scene.GetNumberOfNodes()
    job = logic.start_prediction(ct, model_dirs["flair"])
    assert job.wait(600) == 2
    with pytest.raises(ModalityError, match="looks like CT") as raised:
        logic.finish_prediction(job)
    assert raised.value.fix
    assert mrml_scene.GetNumberOfNodes() == before and not job.work_dir.exists()
    job = logic.start_prediction(flair_node, model_dirs["flair"], t1=True, atlases=atlases)
    assert job.wait(600) == 2
    with pytest.raises(ModelBundleError, match="this is a FLAIR model"):
        logic.finish_prediction(job)
    assert mrml_scene.GetNumberOfNodes() == before and not job.work_dir.exists()


# ------------------------------------------------------------------ documentation


def test_the_documented_scripts_use_only_existing_logic_calls():
    """The scripts of docs/wmh_slicer.md compile and call only what the Logic and the
    review offer, with keyword names their signatures have."""
    check_documented_scripts("wmh_slicer.md",
                             {"logic": WMHDualTaskerLogic, "review": RatingReview})

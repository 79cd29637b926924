"""ICHWeakSeg inference, bundles, evaluation, CLI and fine-tuning (``lesion_core.ich``):
toy CTs (40 x 40 x 8 voxels) and toy networks (the ``TOY`` config), seeded, CPU.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch
from ich_toys import TOY, toy_ct

from lesion_core import io as lesion_io
from lesion_core.cli import main
from lesion_core.errors import FeedbackStoreError, UnreadableFileError
from lesion_core.ich import outputs_file
from lesion_core.ich.config import CLASSES, SUBTYPES, SubtypePlaceConfig
from lesion_core.ich.data import WeakScan
from lesion_core.ich.evaluate import case_figures, summarize
from lesion_core.ich.finetune import FINETUNE, finetune_ich
from lesion_core.ich.model import ICHModel, ICHThresholds, load_ich_model, save_ich_model
from lesion_core.ich.predict import (STAGES, Component, ICHPrediction, label_components,
                                     bone_distances, predict_ich, write_prediction)
from lesion_core.ich.segmenter import build_segmenter
from lesion_core.ich.train import build_classifier
from lesion_core.volume import Volume


def _toy_model(combination="segmenter_and_pseudo_mask") -> ICHModel:
    torch.manual_seed(0)
    thresholds = ICHThresholds(0.5, 0.5, (0.3, 0.4, 0.5, 0.6, 0.7))
    return ICHModel(None, build_classifier(TOY).eval(), build_segmenter(TOY).eval(), TOY,
                    thresholds, combination)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The toy model saved as a bundle, and a toy CT file whose axial axis is axis 0."""
    folder = tmp_path_factory.mktemp("ich_model")
    save_ich_model(folder / "model", _toy_model(), name="ich_toy", version="1.0")
    ct = toy_ct(3, blood_slices=(3, 4))
    # Axial along the first array axis, stored LPS-like: the slice axis is not always k.
    array = np.moveaxis(np.asarray(ct.array), 2, 0)[:, ::-1]
    affine = np.array([[0, -4.0, 0, 80], [0, 0, 4.0, -80], [5.0, 0, 0, -20], [0, 0, 0, 1]])
    path = lesion_io.write_volume(Volume(np.ascontiguousarray(array), affine,
                                         meta={"modality": "CT"}), folder / "ct.nii.gz")
    return folder / "model", path


def test_bundle_round_trip_predicts_identically(saved):
    folder, ct_path = saved
    model = _toy_model()
    loaded = load_ich_model(folder)
    assert (loaded.config, loaded.thresholds, loaded.combination) == \
        (model.config, model.thresholds, model.combination)
    assert loaded.metadata.extra["config"]["thresholds"]["subtypes"]["subdural"] == 0.6
    ct = lesion_io.read_volume(ct_path)
    a, b = predict_ich(ct, model, stages=True), predict_ich(ct, loaded, stages=True)
    assert np.array_equal(a.labels.array, b.labels.array)
    assert np.array_equal(a.cam.array, b.cam.array)
    assert np.array_equal(a.slice_probabilities, b.slice_probabilities)
    assert set(a.stages) == set(STAGES)


def test_predict_writes_the_contract_files_on_the_ct_grid(saved, tmp_path):
    folder, ct_path = saved
    ct = lesion_io.read_volume(ct_path)
    prediction = predict_ich(ct, load_ich_model(folder))
    paths = write_prediction(prediction, tmp_path, str(ct_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [outputs_file.LABELS_FILE, outputs_file.CAM_FILE, outputs_file.SLICES_FILE,
         outputs_file.SUMMARY_FILE])
    labels, cam = lesion_io.read_volume(paths["labels"]), lesion_io.read_volume(paths["cam"])
    for image in (labels, cam):
        assert image.shape == ct.shape and np.allclose(image.affine, ct.affine)
    assert labels.array.dtype == np.uint8 and set(np.unique(labels.array)) <= set(range(6))
    assert cam.array.dtype == np.float32 and 0 <= cam.array.min() and cam.array.max() <= 1
    summary = outputs_file.read_summary(paths["summary"])
    assert summary["slice_axis"] == 0 and summary["image"] == str(ct_path)
    assert summary["combination"] == "segmenter_and_pseudo_mask"
    assert abs(sum(summary["volume_ml_by_subtype"].values()) - summary["volume_ml"]) < 0.01
    rows = outputs_file.read_slices(paths["slices"])
    assert [r["slice"] for r in rows] == list(range(ct.shape[0]))
    assert tuple(outputs_file.SUBTYPE_COLUMNS) == SUBTYPES
    voxel_area = 4.0 * 4.0
    assert [r["area_mm2"] for r in rows] == pytest.approx(
        (np.asarray(labels.array) > 0).sum(axis=(1, 2)) * voxel_area)


def test_damaged_output_files_give_one_clear_error(tmp_path):
    bad = tmp_path / "ich_summary.json"
    bad.write_text('{"model": {}, "present": true')
    with pytest.raises(UnreadableFileError, match="not valid JSON"):
        outputs_file.read_summary(bad)
    csv_path = tmp_path / "ich_slices.csv"
    csv_path.write_text(",".join(outputs_file.SLICE_COLUMNS) + "\n0,0.5,1,x,0,0,0,0,3\n")
    with pytest.raises(UnreadableFileError, match="line 2"):
        outputs_file.read_slices(csv_path)
    with pytest.raises(UnreadableFileError, match="missing"):
        outputs_file.read_summary(tmp_path / "absent.json")


def test_components_get_the_most_probable_subtype_or_unknown():
    mask = np.zeros((12, 12, 6), bool)
    mask[1:4, 1:4, 1:3] = True      # slices 1-2: subdural likely
    mask[7:10, 7:10, 4:6] = True    # slices 4-5: nothing reaches its threshold
    probabilities = np.zeros((6, len(SUBTYPES)), np.float32)
    probabilities[1:3] = [0.2, 0.1, 0.55, 0.65, 0.1]  # subarachnoid below its 0.6
    thresholds = ICHThresholds(0.5, 0.5, (0.5, 0.5, 0.6, 0.6, 0.5))
    labels, components = label_components(mask, probabilities, 2, thresholds, 0.001,
                                          (1, 1, 1), 0.0)
    assert set(np.unique(labels)) == {0, 1, 4}
    assert [(c.subtype, c.value, c.first_slice, c.last_slice) for c in components] == \
        [("subdural", 4, 1, 2), ("unknown", 1, 4, 5)]


def test_the_place_of_a_component_picks_the_subtypes_the_classifier_chooses_from():
    """One slab of bone; the same slices' probabilities favour subdural everywhere, yet a
    component deep inside is intraventricular or intraparenchymal by its place."""
    shape, spacing = (60, 20, 6), (1.0, 1.0, 2.0)
    bone = np.zeros(shape, bool)
    bone[:2] = True
    mask = np.zeros(shape, bool)
    mask[3:6, 5:9, 1:3] = True      # 1-4 mm from bone: extra-axial
    mask[12:16, 5:9, 1:3] = True    # 10-14 mm: intraparenchymal or subarachnoid
    mask[40:44, 5:9, 1:3] = True    # 38-42 mm: intraventricular or intraparenchymal
    probabilities = np.zeros((6, len(SUBTYPES)), np.float32)
    probabilities[1:3] = [0.3, 0.6, 0.4, 0.9, 0.1]
    thresholds = ICHThresholds(0.5, 0.5, (0.5, 0.5, 0.5, 0.5, 0.5))
    place = SubtypePlaceConfig()
    labels, components = label_components(mask, probabilities, 2, thresholds, 0.002, spacing,
                                          0.0, bone, place)
    # Near bone: subdural (at its threshold); mid-depth: neither candidate reaches its
    # threshold, the more probable is taken; deep: intraventricular.
    assert [c.subtype for c in components] == ["subdural", "subarachnoid", "intraventricular"]
    assert labels[4, 6, 1] == SUBTYPES.index("subdural") + 1
    # Without the rule (disabled, or no bone mask) the classifier alone names all three.
    for args in ((bone, SubtypePlaceConfig(enabled=False)), (None, place)):
        _, alone = label_components(mask, probabilities, 2, thresholds, 0.002, spacing, 0.0,
                                    *args)
        assert [c.subtype for c in alone] == ["subdural"] * 3
    # Nothing at its threshold stays unknown wherever it lies.
    _, none = label_components(mask, probabilities * 0.1, 2, thresholds, 0.002, spacing, 0.0,
                               bone, place)
    assert {c.subtype for c in none} == {"unknown"}


def test_a_component_far_from_bone_is_intraventricular_whatever_the_classifier_says():
    """Between 20 and 36 mm from bone the classifier chooses intraventricular or
    intraparenchymal; beyond, in the ventricles, only intraventricular is possible."""
    shape, spacing = (60, 20, 6), (1.0, 1.0, 2.0)
    bone = np.zeros(shape, bool)
    bone[:2] = True
    mask = np.zeros(shape, bool)
    mask[26:30, 5:9, 1:3] = True    # 24-28 mm from bone
    mask[42:46, 5:9, 1:3] = True    # 40-44 mm
    probabilities = np.zeros((6, len(SUBTYPES)), np.float32)
    probabilities[1:3, SUBTYPES.index("intraparenchymal")] = 0.9
    probabilities[1:3, SUBTYPES.index("intraventricular")] = 0.6
    thresholds = ICHThresholds(0.5, 0.5, (0.5, 0.5, 0.5, 0.5, 0.5))
    _, components = label_components(mask, probabilities, 2, thresholds, 0.002, spacing, 0.0,
                                     bone, SubtypePlaceConfig())
    assert [c.subtype for c in components] == ["intraparenchymal", "intraventricular"]
    assert SubtypePlaceConfig().candidates(37.0) == ("intraventricular",)


def test_bone_distances_are_exact_within_reach_and_infinite_without_bone():
    bone = np.zeros((40, 8, 8), bool)
    bone[0] = True
    inside = np.ones((2, 8, 8), bool)
    box = (slice(10, 12), slice(0, 8), slice(0, 8))
    assert np.median(bone_distances(bone, box, inside, (1.0, 1.0, 1.0), 25.0)) == 10.5
    assert bone_distances(bone, box, inside, (1.0, 1.0, 1.0), 25.0).max() == 11.0
    assert np.median(bone_distances(bone, box, inside, (0.5, 1.0, 1.0), 25.0)) == 5.25
    far = bone_distances(np.zeros_like(bone), box, inside, (1.0,) * 3, 25.0)
    assert far.shape == (128,) and np.all(far == np.inf)


def test_a_lens_against_the_bone_is_epidural_a_crescent_subdural():
    place = SubtypePlaceConfig()
    assert place.candidates(5.0, 14.0, 20.0) == ("epidural",)      # 14 mm thick, 20 mL
    assert place.candidates(5.0, 9.0, 20.0) == ("subdural",)       # too thin
    assert place.candidates(5.0, 12.0, 60.0) == ("subdural",)      # thick, but spread
    assert place.candidates(15.0, 14.0, 20.0) == ("intraparenchymal", "subarachnoid")


def _hand_prediction(truth: Volume, masks: dict) -> ICHPrediction:
    n = truth.shape[2]
    probabilities = np.full((n, len(CLASSES)), 0.1, np.float32)
    probabilities[:, 4] = 0.9  # subdural wherever anything is found
    return ICHPrediction(truth.with_array(np.zeros(truth.shape, np.uint8)),
                         truth.with_array(np.zeros(truth.shape, np.float32)), probabilities,
                         probabilities.max(axis=0), 2, [], ICHThresholds(), {}, "segmenter",
                         "hand", "1", stages=masks)


def test_evaluation_figures_on_hand_made_cases():
    truth_array = np.zeros((10, 10, 4), np.uint8)
    truth_array[2:6, 2:6, 1:3] = 4                       # 32 voxels of subdural
    truth = Volume(truth_array, np.diag([1.0, 1.0, 2.0, 1.0]))
    blood = truth_array > 0
    half = blood.copy()
    half[..., 2] = False
    case = case_figures(_hand_prediction(truth, {"segmenter": blood, "cam": np.zeros_like(blood),
                                                 "pseudo_mask": half}), truth)
    perfect, empty, halved = (case["stages"][k] for k in ("segmenter", "cam", "pseudo_mask"))
    assert perfect["dice"] == 1.0 and perfect["slice_dice"] == [1.0, 1.0]
    assert all(v == 0 for v in perfect["volume_error_ml"].values())
    true_ml = 32 * 2.0 / 1000
    assert empty["dice"] == 0.0 and empty["volume_error_ml"]["subdural"] == pytest.approx(-true_ml)
    assert halved["slice_dice"] == [1.0, 0.0] and halved["dice"] == pytest.approx(2 / 3)
    negative = Volume(np.zeros_like(truth_array), truth.affine)
    clean = case_figures(_hand_prediction(negative, {"segmenter": blood}), negative)
    assert clean["stages"]["segmenter"]["dice"] is None
    assert clean["stages"]["segmenter"]["fp_volume_ml"] == pytest.approx(true_ml)
    summary = summarize([case, clean])
    assert summary["stages"]["segmenter"]["dice"]["mean"] == 1.0
    assert summary["stages"]["cam"]["volume_abs_error_ml"]["subdural"]["mean"] == pytest.approx(true_ml)
    assert summary["stages"]["segmenter"]["fp_volume_ml"]["mean"] == pytest.approx(true_ml)


def test_final_components_are_checked_against_the_truth_subtype():
    truth_array = np.zeros((10, 10, 4), np.uint8)
    truth_array[2:6, 2:6, 1:3] = 4                       # subdural
    truth = Volume(truth_array, np.diag([1.0, 1.0, 2.0, 1.0]))
    labels = np.zeros_like(truth_array)
    labels[2:6, 2:6, 1:3] = 4                            # found, called subdural
    labels[8:10, 8:10, 0:2] = 1                          # on no blood, subtype unknown
    prediction = _hand_prediction(truth, {})
    prediction.labels = truth.with_array(labels)
    prediction.components = [Component(4, "subdural", 0.064, 1, 2),
                             Component(1, "unknown", 0.016, 0, 1)]
    case = case_figures(prediction, truth)
    assert case["component_subtypes"] == [["subdural", "subdural"], ["none", "unknown"]]
    assert case["stages"]["final"]["dice"] == pytest.approx(64 / 72)
    counts = summarize([case])["subtype_confusion"]["counts"]
    assert counts["subdural"]["subdural"] == 1 and counts["none"]["unknown"] == 1
    assert sum(n for row in counts.values() for n in row.values()) == 2
    prediction.components = prediction.components[:1]
    with pytest.raises(ValueError, match="components"):
        case_figures(prediction, truth)


def test_cli_predict_and_bad_input(saved, tmp_path, capsys):
    folder, ct_path = saved
    # The toy head is far smaller than an adult's: refused, then reported when forced.
    argv = ["ich", "predict", str(ct_path), "--model", str(folder), "--device", "cpu",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2 and "intracranial mask measures" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    summary = outputs_file.read_summary(tmp_path / "out" / outputs_file.SUMMARY_FILE)
    assert "intracranial mask measures" in summary["out_of_distribution"][0]
    ct = lesion_io.read_volume(ct_path)
    hu = np.asarray(ct.array, np.float32)
    mr_path = lesion_io.write_volume(Volume(np.clip(hu + 1000, 0, None) * 0.4, ct.affine,
                                            meta={"modality": "MR"}), tmp_path / "t2.nii.gz")
    capsys.readouterr()
    assert main(["ich", "predict", str(mr_path), "--model", str(folder),
                 "--out", str(tmp_path / "mr")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "t2.nii.gz" in err
    assert not (tmp_path / "mr").exists()


def test_finetune_from_a_fake_store_changes_the_classifier(saved, tmp_path, monkeypatch):
    folder, ct_path = saved
    try:
        import lesion_core.ich.reader_labels as reader_labels
    except ImportError:  # the review module's file is not there yet: stand in for it
        reader_labels = types.ModuleType("lesion_core.ich.reader_labels")
        monkeypatch.setitem(sys.modules, "lesion_core.ich.reader_labels", reader_labels)
    unknown = (None,) * len(CLASSES)
    positive = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    negative = (0.0,) * len(CLASSES)
    scan = WeakScan("case1", str(ct_path), unknown, ((3, positive), (4, positive), (7, negative)))
    stores = {"empty": [WeakScan("case2", str(ct_path))], "labelled": [scan]}
    monkeypatch.setattr(reader_labels, "weak_scans_from_store",
                        lambda store: stores[str(store)], raising=False)
    model = load_ich_model(folder)
    with pytest.raises(FeedbackStoreError):
        finetune_ich(model, "empty")
    unsaved, report = finetune_ich(model, "labelled",
                                   replace(FINETUNE.optim, steps=3, precision="fp32"))
    assert unsaved.metadata is None and unsaved.card.training is report
    meta = unsaved.save(tmp_path / "tuned")
    tuned = load_ich_model(tmp_path / "tuned")
    assert meta.version == "1.1" and tuned.version == "1.1" and report["labelled_slices"] == 3
    before, after = model.classifier.state_dict(), tuned.classifier.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(v, tuned.segmenter.state_dict()[k])
               for k, v in model.segmenter.state_dict().items())
    assert json.loads((tmp_path / "tuned" / "metadata.json").read_text())["training"][
        "finetuned_from"] == "ich_toy 1.0"


def _slab_around_blood(seed: int, margin: int = 3) -> Volume:
    """A synthetic head CT with haemorrhage (2 mm anatomy), cut to the axial slices that
    hold blood and ``margin`` slices on each side (keeps the bf16 run short on CPUs that
    emulate bf16)."""
    from lesion_core.synth.anatomy import AnatomyConfig
    from lesion_core.synth.cohort import SubjectConfig, make_subject

    subject = make_subject(seed, SubjectConfig(kind="ich", anatomy=AnatomyConfig(spacing_mm=2.0),
                                               ich_probability=1.0, severity=1.0))
    ct, truth = subject.images["CT"], subject.labels["CT"]["ich"]
    slices = np.flatnonzero(np.isin(np.asarray(truth.array), (1, 2, 3, 4, 5)).any(axis=(0, 1)))
    first, last = max(slices.min() - margin, 0), min(slices.max() + margin + 1, ct.shape[2])
    affine = ct.affine.copy()
    affine[:3, 3] += affine[:3, 2] * first
    return Volume(np.ascontiguousarray(np.asarray(ct.array)[..., first:last]), affine,
                  meta=dict(ct.meta))


def test_shipped_model_agrees_in_bf16_and_fp32():
    from lesion_core.metrics import dice
    from lesion_core.tasks import get_task

    if not get_task("ich").default_model_folder().is_dir():
        pytest.skip("the shipped ICH model is not installed")
    ct = _slab_around_blood(3)
    model = load_ich_model(device="cpu")
    fp32, bf16 = (predict_ich(ct, model, precision=p) for p in ("fp32", "bf16"))
    masks = [np.asarray(p.labels.array) > 0 for p in (fp32, bf16)]
    assert masks[0].sum() > 500  # a case with haemorrhage found, so Dice means something
    assert dice(*masks) >= 0.98
    assert np.abs(fp32.slice_probabilities - bf16.slice_probabilities).max() < 0.1

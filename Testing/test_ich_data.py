"""ICHWeakSeg weak-label data, input handling and training runs (``lesion_core.ich``): the
training path never opens a voxel label, the slice grid maps back to the CT, bad input
gets the one clear error, preprocessed stacks come back from the array cache, the HU
randomization is seeded, and a killed training resumes to the same weights. Toy CTs
(40 x 40 x 8 voxels), CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from geometry import oblique_lps_affine
from ich_toys import TOY, recording, toy_ct

from lesion_core import io as lesion_io
from lesion_core.errors import InvalidImageError, ModalityError, OperationCancelled
from lesion_core.ich.augment import ct_augmenter, training_slices
from lesion_core.ich.config import (CLASSES, CT_AUGMENT, ClassifierTrainConfig, SegmenterTrainConfig,
                                    TrainConfig)
from lesion_core.ich.data import (WeakLabelDataset, WeakLabelTableError, parse_rows,
                                  table_from_synthetic_cohort)
from lesion_core.ich.preprocess import preprocess
from lesion_core.ich.train import clean_with_labels, fraction_subset, load_samples, own_target, train
from lesion_core.progress import Progress
from lesion_core.training import OptimConfig
from lesion_core.volume import Volume


def _optim(steps: int, batch_size: int, **kwargs) -> OptimConfig:
    return OptimConfig(steps=steps, batch_size=batch_size, device="cpu", precision="fp32",
                       **kwargs)


def _toy_cohort(folder, n=4):
    """A folder laid out as ``synth.make_cohort`` writes it (images, truth maps, targets)."""
    rows = []
    for seed in range(n):
        blood = (2, 3, 4) if seed % 2 == 0 else ()
        ct = toy_ct(seed, blood)
        sub = folder / f"ich_{seed:05d}"
        label = ct.with_array(((np.asarray(ct.array) > 50) & (np.asarray(ct.array) < 100)).astype(np.uint8))
        row = {"subject": sub.name, "ct": str(lesion_io.write_volume(ct, sub / "ct.nii.gz")),
               "ct_ich_truth": str(lesion_io.write_volume(label, sub / "ct_ich_truth.nii.gz"))}
        slices = [{"index": k, "ich": k in blood, "subtypes": ["subdural"] if k in blood else []}
                  for k in range(ct.shape[2])]
        targets = {"ich_present": bool(blood), "subtypes": ["subdural"] if blood else [],
                   "slices": slices}
        (sub / "targets.json").write_text(json.dumps(
            {"targets": targets, "acquisition": {"CT": {"slice_axis": 2}}}))
        rows.append({**row, "targets": str(sub / "targets.json"), "ich_present": int(bool(blood))})
    with (folder / "ich_labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_training_path_never_reads_voxel_masks(tmp_path):
    rows = _toy_cohort(tmp_path)
    short = TrainConfig(ClassifierTrainConfig(max_slices=6, optim=_optim(4, 2)),
                        SegmenterTrainConfig(optim=_optim(3, 4)))
    with recording() as opened:
        scans = table_from_synthetic_cohort(tmp_path)
        dataset = WeakLabelDataset(scans, TOY)
        result = train(dataset, TOY, short)
    truth = {r["ct_ich_truth"] for r in rows}
    assert opened and not any("truth" in p for p in opened), opened
    assert not truth & set(opened)
    assert sorted(dataset.opened) == sorted(r["ct"] for r in rows)
    assert scans[0].slices[2][1][0] == 1.0 and scans[0].labels[CLASSES.index("subdural")] == 1.0
    assert len(result.pseudo_masks) == len(rows)
    assert result.pseudo_masks[0].mask.shape == (8, 32, 32)
    # Positive control: the separate fully supervised baseline does read the masks.
    from lesion_core.ich.supervised import fully_supervised, voxel_labelled_from_synthetic_cohort
    with recording() as opened:
        fully_supervised(voxel_labelled_from_synthetic_cohort(tmp_path)[:1], TOY,
                         SegmenterTrainConfig(optim=_optim(1, 2)))
    assert any("truth" in p for p in opened)
    # The table reader refuses truth columns and label-map images.
    with pytest.raises(WeakLabelTableError, match="voxel labels"):
        parse_rows([{"scan": "a", "image": "ct.nii.gz", "any": "1", "ct_ich_truth": "x"}])
    with pytest.raises(WeakLabelTableError, match="label map"):
        parse_rows([{"scan": "a", "image": "a/ct_ich_truth.nii.gz", "any": "1"}])
    with pytest.raises(WeakLabelTableError, match="label map"):
        dataset.read(rows[0]["ct_ich_truth"])


def test_preprocess_grid_and_slice_mapping():
    # Axial axis pointing inferior (stored top to bottom): working slices run the other way.
    affine = np.diag([-4.0, 4.0, -5.0, 1.0])
    ct = toy_ct(0, blood_slices=(1,), affine=affine)
    stack = preprocess(ct, TOY)
    assert stack.image.shape == (8, 3, 32, 32) and stack.image.dtype == torch.float32
    assert np.allclose(stack.spacing_mm, (5.0, 4.0, 4.0))
    assert stack.input_to_working.tolist() == list(range(7, -1, -1))
    targets = stack.slice_targets({1: (1.0,) + (None,) * 5, 2: (0.0,) * 6}, len(CLASSES))
    assert targets[6, 0] == 1.0 and targets[5, 0] == 0.0 and np.isnan(targets[0, 0])
    blood = (stack.hu > 55) & (stack.hu < 90) & stack.intracranial
    assert blood[6].sum() > 5 and blood[[0, 1, 2, 3, 4, 5, 7]].sum() == 0
    back = stack.to_input_grid(blood.astype(np.uint8), order=0)
    assert back.shape == ct.shape and np.allclose(back.affine, ct.affine)
    assert back.array[..., 1].sum() > 5 and back.array[..., [0, 2, 3]].sum() == 0


@pytest.mark.parametrize("case, error, words", [
    ("mr", ModalityError, "MR"), ("unscaled", ModalityError, "Hounsfield"),
    ("single", InvalidImageError, "single slice"), ("two", InvalidImageError, "axial slice"),
    ("scout_tag", InvalidImageError, "scout"), ("scout_lateral", InvalidImageError, "scout")])
def test_bad_input_gives_one_clear_error(case, error, words):
    ct = toy_ct(0)
    hu = np.asarray(ct.array, np.float32)
    source = f"{case}.nii.gz"
    volume = {
        "mr": Volume(np.clip(hu + 1000, 0, None) * 0.4, ct.affine, source, {"modality": "MR"}),
        "unscaled": Volume(hu + 1024, ct.affine, source),
        "single": Volume(hu[..., :1], ct.affine, source),
        "two": Volume(hu[..., :2], ct.affine, source),
        "scout_tag": Volume(hu[..., :1], ct.affine, source, {"series_description": "HEAD SCOUT"}),
        "scout_lateral": Volume(hu[:1], ct.affine, source),
    }[case]
    with pytest.raises(error) as caught:
        preprocess(volume, TOY)
    message = str(caught.value)
    assert message.startswith(source) and words.lower() in message.lower()
    assert caught.value.fix  # every error says what to do


def test_oblique_lps_ct_keeps_its_slices():
    affine = oblique_lps_affine(spacing=(4.0, 4.0, 5.0), degrees=(4.0, -6.0, 3.0))
    ct = toy_ct(1, blood_slices=(5,), affine=affine)
    stack = preprocess(ct, TOY)
    assert stack.n_slices == 8 and sorted(stack.input_to_working.tolist()) == list(range(8))
    s = int(stack.input_to_working[5])
    blood = (stack.hu > 55) & (stack.hu < 90) & stack.intracranial
    assert blood[s].sum() > 5 and blood.sum() - blood[s].sum() == 0
    back = stack.to_input_grid(stack.hu, order=1)
    head = np.asarray(ct.array) > 0
    assert np.corrcoef(back.array[head], np.asarray(ct.array)[head])[0, 1] > 0.8


def test_thin_slices_become_slabs_and_labels_follow():
    ct = toy_ct(2, shape=(40, 40, 20), affine=np.diag([4.0, 4.0, 1.25, 1.0]))
    config = dataclasses.replace(TOY, grid=dataclasses.replace(TOY.grid, slice_mm=5.0))
    stack = preprocess(ct, config)
    assert stack.n_slices == 5 and np.allclose(stack.spacing_mm, (5.0, 4.0, 4.0))
    assert stack.input_to_working.tolist() == [n // 4 for n in range(20)]
    unknown = (None,) * 5
    labels = {**{k: (0.0,) + unknown for k in range(4)}, 5: (1.0,) + unknown, 9: (0.0,) + unknown}
    targets = stack.slice_targets(labels, len(CLASSES))[:, 0]
    assert targets[0] == 0.0 and targets[1] == 1.0 and np.isnan(targets[2])
    with pytest.raises(InvalidImageError, match="20 axial slices"):
        stack.slice_targets({20: (1.0,) + unknown}, len(CLASSES))


def test_calibration_offset_is_undone_and_blood_keeps_its_contrast():
    """Two scans of one head whose calibrations differ by 9 HU give the same stack: the
    intracranial soft-tissue median is moved to ``brain_hu`` (off: the HU as stored)."""
    ct = toy_ct(3, blood_slices=(4,))
    shifted = ct.with_array(ct.array + np.int16(9))
    a, b = preprocess(ct, TOY), preprocess(shifted, TOY)
    assert a.hu_offset == pytest.approx(TOY.grid.brain_hu - 30.0, abs=1.0)
    assert b.hu_offset == pytest.approx(a.hu_offset - 9.0, abs=0.5)
    inside = a.intracranial & b.intracranial
    assert np.abs(a.hu[inside] - b.hu[inside]).max() < 0.5
    brain = np.median(a.hu[a.intracranial])
    assert a.hu[a.intracranial].max() > brain + 30  # the 70 HU disk is still 40 HU above
    off = dataclasses.replace(TOY, grid=dataclasses.replace(TOY.grid, brain_hu=None))
    raw = preprocess(shifted, off)
    assert raw.hu_offset == 0.0 and np.median(raw.hu[raw.intracranial]) == pytest.approx(39.0, abs=1.5)


def test_fraction_subsets_nest_and_training_can_be_cancelled(tmp_path):
    items = list(range(40))
    small, large = fraction_subset(items, 0.1, seed=3), fraction_subset(items, 0.5, seed=3)
    assert len(small) == 4 and len(large) == 20 and set(small) <= set(large)
    assert fraction_subset(items, 0.001) and fraction_subset(items, 1.0) == items
    _toy_cohort(tmp_path, n=2)
    progress = Progress()
    progress.cancel()
    with pytest.raises(OperationCancelled):
        train(WeakLabelDataset(table_from_synthetic_cohort(tmp_path), TOY), TOY, progress=progress)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _cancelling_at(message: str) -> Progress:
    """A reporter that cancels once a progress message contains ``message`` (the next
    update then raises, after the engine saved a checkpoint)."""
    progress = Progress(lambda fraction, text: progress.cancel() if message in text else None)
    return progress


def test_killed_training_resumes_in_its_stage_to_the_same_weights(tmp_path):
    _toy_cohort(tmp_path / "cohort", n=2)
    scans = table_from_synthetic_cohort(tmp_path / "cohort")
    every = dict(checkpoint_every_steps=2, log_every=1)
    config = TrainConfig(ClassifierTrainConfig(max_slices=6, optim=_optim(6, 2, **every)),
                         SegmenterTrainConfig(optim=_optim(6, 4, **every)))
    straight = train(WeakLabelDataset(scans, TOY), TOY, config)
    checkpoints = tmp_path / "checkpoints"
    for stage in ("classifier", "segmenter"):  # killed once in each stage
        with pytest.raises(OperationCancelled):
            train(WeakLabelDataset(scans, TOY), TOY, config, _cancelling_at(f"{stage} step 4/"),
                  checkpoint_dir=checkpoints)
    resumed = train(WeakLabelDataset(scans, TOY), TOY, config, checkpoint_dir=checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["classifier", "segmenter"]
    assert resumed.results["classifier"].resumed_from == 6  # finished: returned at once
    assert resumed.results["segmenter"].resumed_from == 4
    assert _same_weights(straight.classifier, resumed.classifier)
    assert _same_weights(straight.segmenter, resumed.segmenter)
    assert resumed.results["segmenter"].history["loss"] == straight.results["segmenter"].history["loss"]


def test_labels_clean_the_targets_and_self_training_continues_the_segmenter(tmp_path):
    _toy_cohort(tmp_path / "cohort", n=2)
    samples = load_samples(WeakLabelDataset(table_from_synthetic_cohort(tmp_path / "cohort"),
                                            TOY), TOY)
    positive, negative = samples  # seed 0 has blood on CT slices 2-4, seed 1 none
    everywhere = np.ones(positive.stack.hu.shape, bool)
    assert not clean_with_labels(everywhere, negative).any()
    kept = clean_with_labels(everywhere, positive)
    labelled = positive.slice_targets[:, 0].numpy()
    assert kept[labelled == 1].all() and not kept[labelled == 0].any()

    segmenter = SegmenterTrainConfig(optim=_optim(4, 4), self_training_rounds=1)
    config = TrainConfig(ClassifierTrainConfig(max_slices=6, optim=_optim(6, 2)), segmenter)
    trained = train(samples, TOY, config, checkpoint_dir=tmp_path / "run")
    assert trained.results["self_training_1"].steps == 4
    assert (tmp_path / "run" / "segmenter_round1").is_dir()
    once = train(samples, TOY, dataclasses.replace(config, segmenter=dataclasses.replace(
        segmenter, self_training_rounds=0)))
    assert not _same_weights(once.segmenter, trained.segmenter)
    target = own_target(trained.segmenter, positive.stack, TOY)
    assert target.shape == positive.stack.hu.shape and target.dtype == bool


def test_stack_cache_serves_a_rerun_without_reading_the_ct(tmp_path):
    rows = _toy_cohort(tmp_path / "cohort", n=2)
    scans = table_from_synthetic_cohort(tmp_path / "cohort")
    first = WeakLabelDataset(scans, TOY, cache_dir=tmp_path / "cache")
    stored = [first[n] for n in range(len(scans))]
    assert sorted(first.opened) == sorted(r["ct"] for r in rows)
    again = WeakLabelDataset(scans, TOY, cache_dir=tmp_path / "cache")
    with recording() as opened:
        cached = [again[n] for n in range(len(scans))]
    assert again.opened == [] and not any(r["ct"] in opened for r in rows)
    plain = preprocess(toy_ct(0, (2, 3, 4)), TOY)
    for a, b in zip(stored, cached):
        assert torch.equal(a.stack.image, b.stack.image) and np.array_equal(a.stack.hu, b.stack.hu)
        assert np.array_equal(a.stack.input_to_working, b.stack.input_to_working)
        assert torch.equal(a.slice_targets.nan_to_num(-1), b.slice_targets.nan_to_num(-1))
    assert torch.equal(cached[0].stack.image, plain.image)  # windowing from HU is exact


def test_hu_randomization_is_seeded_and_keeps_blood_above_brain():
    stack = preprocess(toy_ct(0, blood_slices=(3,)), TOY)
    augmenter = ct_augmenter(CT_AUGMENT, TOY.grid)
    index = np.arange(2, 6)
    a = training_slices(stack, index, TOY.windows, augmenter, np.random.default_rng(1))
    b = training_slices(stack, index, TOY.windows, augmenter, np.random.default_rng(1))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, stack.image[2:6])
    assert torch.equal(training_slices(stack, index, TOY.windows, None, np.random.default_rng(1)),
                       stack.image[2:6])
    # Away from the skull, which a softer kernel (low resolution) smears inwards.
    inner = ndimage.binary_erosion(stack.intracranial[3], iterations=2)
    blood = torch.from_numpy((stack.hu[3] > 55) & (stack.hu[3] < 90) & inner)
    brain = torch.from_numpy((np.abs(stack.hu[3] - 30) < 8) & inner)
    for seed in range(6):
        x = training_slices(stack, index, TOY.windows, augmenter, np.random.default_rng(seed))
        assert x[1, 0][blood].median() > x[1, 0][brain].median() + 0.25  # brain window, slice 3


def test_cli_train_checkpoints_caches_and_resumes(tmp_path, capsys):
    from lesion_core.cli import main
    from lesion_core.ich.model import load_ich_model

    _toy_cohort(tmp_path / "cohort", n=2)
    command = ["ich", "train", "--synthetic", str(tmp_path / "cohort"), "--classifier-steps", "2",
               "--segmenter-steps", "2", "--precision", "fp32", "--device", "cpu",
               "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "model")]
    assert main(command) == 0
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"classifier", "segmenter", "cache"}
    assert len(list((tmp_path / "run" / "cache").glob("*.npz"))) == 2
    training = load_ich_model(tmp_path / "model").metadata.training
    assert training["classifier"]["steps"] == 2 and training["classifier"]["precision"] == "fp32"
    assert training["segmenter"]["optim"]["batch_size"] == 8
    assert "optim" not in load_ich_model(tmp_path / "model").metadata.extra["config"]
    assert "classifier step 1/2" in capsys.readouterr().err
    # The same command again: both stages are finished, so nothing trains.
    assert main(command + ["--overwrite"]) == 0
    assert " step 1/2" not in capsys.readouterr().err
    again = load_ich_model(tmp_path / "model").metadata.training
    for stage in ("classifier", "segmenter"):
        assert again[stage]["loss_last50"] == training[stage]["loss_last50"]
    assert main(command[:3] + [str(tmp_path / "cohort"), "--steps", "5", "--out",
                               str(tmp_path / "other")]) == 2
    assert "--classifier-steps" in capsys.readouterr().err
    zero = command[:4] + ["--classifier-steps", "0", "--segmenter-steps", "2", "--precision",
                          "fp32", "--device", "cpu"]
    assert main(zero + ["--out", str(tmp_path / "other")]) == 2
    assert "needs --init MODEL" in capsys.readouterr().err

    # --init with 0 classifier steps keeps that model's classifier; the segmenter learns anew.
    init = zero + ["--init", str(tmp_path / "model")]
    assert main(init + ["--cam-layer-stage", "2", "--out", str(tmp_path / "kept")]) == 0
    first, kept = load_ich_model(tmp_path / "model"), load_ich_model(tmp_path / "kept")
    assert first.config.cam.layer_stage is None and kept.config.cam.layer_stage == 2
    # The model shows stage 2's LayerCAM, but its segmenter learnt from Grad-CAM pseudo-masks.
    assert main(init + ["--out", str(tmp_path / "grad_cam")]) == 0
    for name, tensor in load_ich_model(tmp_path / "grad_cam").segmenter.state_dict().items():
        assert torch.equal(tensor, kept.segmenter.state_dict()[name]), name
    assert main(init + ["--cam-layer-stage", "5", "--out", str(tmp_path / "other")]) == 2
    assert "--cam-layer-stage 5 is not an encoder stage" in capsys.readouterr().err
    for name, tensor in first.classifier.state_dict().items():
        assert torch.equal(tensor, kept.classifier.state_dict()[name]), name
    assert kept.metadata.training["classifier"]["steps"] == 0
    assert kept.metadata.training["classifier_from"] == "ich_weakseg_cam 1.0"
    assert kept.metadata.training["classifier_from_training"]["classifier"]["steps"] == 2
    assert kept.metadata.training["segmenter"]["steps"] == 2

    # The saved model evaluated by the same command line: report, JSON and the card's record.
    result = tmp_path / "evaluation" / "ich.json"
    assert main(["ich", "evaluate", str(tmp_path / "cohort"), "--model", str(tmp_path / "model"),
                 "--device", "cpu", "--precision", "fp32", "--json", str(result),
                 "--record"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(result.read_text())
    assert (report["task"], report["modality"], report["precision"]) == ("ich", "CT", "fp32")
    assert [c["subject"] for c in report["cases"]] == ["ich_00000", "ich_00001"]
    assert "CT model ich_weakseg_cam 1.0 on 2 subjects of" in printed and "slice AUC" in printed
    recorded = load_ich_model(tmp_path / "model").metadata.evaluation
    assert (recorded["cohort"], recorded["subjects"], recorded["precision"]) == ("cohort", 2, "fp32")
    assert recorded["stages"] == report["summary"]["stages"]


def test_cli_train_can_set_the_seed_level_from_validation_labels(tmp_path):
    from lesion_core.cli import main
    from lesion_core.ich.model import load_ich_model

    _toy_cohort(tmp_path / "cohort", n=2)
    command = ["ich", "train", "--synthetic", str(tmp_path / "cohort"), "--validation",
               str(tmp_path / "cohort"), "--classifier-steps", "2", "--segmenter-steps", "2",
               "--precision", "fp32", "--device", "cpu"]
    assert main(command + ["--out", str(tmp_path / "fixed")]) == 0
    fixed = load_ich_model(tmp_path / "fixed")
    assert "seed_probability" not in fixed.metadata.training["calibration"]
    assert main(command + ["--calibrate-seed-level", "--out", str(tmp_path / "own")]) == 0
    own = load_ich_model(tmp_path / "own")
    level = own.metadata.training["calibration"]["seed_probability"]
    assert own.config.grow.seed_probability == level

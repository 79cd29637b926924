"""ICHWeakSeg weak-label data and input handling (``lesion_core.ich``): the training path
never opens a voxel label, the slice grid maps back to the CT, and bad input gets the one
clear error. Toy CTs (40 x 40 x 8 voxels), CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from geometry import oblique_lps_affine
from ich_toys import TOY, recording, toy_ct

from lesion_core import io as lesion_io
from lesion_core.errors import InvalidImageError, ModalityError, OperationCancelled
from lesion_core.ich.config import CLASSES, ClassifierTrainConfig, SegmenterTrainConfig, TrainConfig
from lesion_core.ich.data import (WeakLabelDataset, WeakLabelTableError, parse_rows,
                                  table_from_synthetic_cohort)
from lesion_core.ich.preprocess import preprocess
from lesion_core.ich.train import fraction_subset, train
from lesion_core.progress import Progress
from lesion_core.volume import Volume


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
    short = TrainConfig(ClassifierTrainConfig(steps=4, batch_size=2, max_slices=6),
                        SegmenterTrainConfig(steps=3, batch_size=4))
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
                         SegmenterTrainConfig(steps=1, batch_size=2))
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

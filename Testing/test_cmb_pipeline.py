"""CMB detector end to end: stage 1 U-Net training and tiling, the three-stage prediction,
its files, the bundle, calibration, stage-wise evaluation and the CLI."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from lesion_core.cli import main
from lesion_core.cmb.calibrate import calibrate, detection_counts
from lesion_core.cmb.candidates import CandidateConfig
from lesion_core.cmb.discriminator import Stage2TrainConfig, build_network
from lesion_core.cmb.evaluate import case_counts, labels_of, stage_selections
from lesion_core.cmb.fit import CMBTrainConfig, fit_cmb, read_cohort
from lesion_core.cmb.model import CMBConfig, CMBModel, load_cmb_model, save_cmb_model
from lesion_core.cmb.candidates_file import read_candidates
from lesion_core.cmb.predict import predict_cmb, write_prediction
from lesion_core.cmb.stage1 import (PatchSampler, Stage1Config, TrainingVolume, build_stage1,
                                    stage1_probability, train_stage1)
from lesion_core.errors import InvalidImageError, UnreadableFileError
from lesion_core.io import read_volume, write_volume
from lesion_core.synth.cohort import make_cohort
from lesion_core.cli.synth import small_config
from lesion_core.volume import Volume

TINY = Stage1Config(features=(4, 8), patch_size=24, inference_roi=48, steps=2, batch_size=2,
                    candidates=CandidateConfig(spacing_mm=2.0))


class DarkSpotNet(torch.nn.Module):
    """A fixed stage 1 stand-in: voxels 0.12 darker than their 7-voxel neighbourhood are
    candidates (a bleed on the coarse test images is only ~0.15-0.2 darker)."""

    def __init__(self):
        super().__init__()
        self.contrast = torch.nn.Parameter(torch.tensor(0.12), requires_grad=False)

    def forward(self, x):
        local = torch.nn.functional.avg_pool3d(x, 7, 1, 3, count_include_pad=False)
        return 60.0 * (local - x - self.contrast)


def _toy_volume(seed=0) -> TrainingVolume:
    rng = np.random.default_rng(seed)
    image = rng.normal(1.0, 0.03, (40, 40, 40)).astype(np.float32)
    cmb = np.zeros(image.shape, bool)
    grid = np.indices(image.shape).transpose(1, 2, 3, 0)
    for centre in ((12, 12, 12), (28, 26, 20), (20, 30, 30)):
        ball = np.linalg.norm(grid - centre, axis=-1) <= 2.0
        cmb |= ball
    image[cmb] = 0.15
    return TrainingVolume(image, cmb, np.zeros_like(cmb), np.ones_like(cmb), np.eye(4))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmb_cohort")
    config = replace(small_config("cmb"), swi_variant="SWI", lesion_count=4)
    train = make_cohort("cmb", [1, 2], root / "train", config)
    validation = make_cohort("cmb", [100001], root / "validation", config)
    return read_cohort(train), read_cohort(validation)


@pytest.fixture(scope="module")
def dark_model():
    torch.manual_seed(0)
    config = CMBConfig(stage1=replace(TINY, candidates=CandidateConfig(spacing_mm=2.0,
                                                                         threshold=0.5)),
                       stage2_threshold=0.0)
    return CMBModel(None, DarkSpotNet(), build_network("student").eval(),
                    build_network("teacher").eval(), config)


# ------------------------------------------------------------------ stage 1
def test_patch_sampler_centres_patches_on_bleeds_and_flips_both():
    volume = _toy_volume()
    config = replace(TINY, batch_size=8, near_cmb_fraction=1.0, near_mimic_fraction=0.0,
                     jitter_mm=0.0)
    image, target = PatchSampler([volume], config).batch(np.random.default_rng(0))
    assert image.shape == target.shape == (8, 1, 24, 24, 24)
    # Centred on a bleed voxel: every patch holds a bleed, and image and target agree.
    assert bool((target.flatten(1).sum(1) > 0).all())
    assert bool((image[target > 0] < 0.3).all())


def test_stage1_learns_dark_spots_and_tiles_the_brain_box():
    volume = _toy_volume()
    config = replace(TINY, steps=120, lr=1e-2, batch_size=4)
    net, history = train_stage1([volume], config)
    assert np.mean(history[-10:]) < np.mean(history[:10])
    brain = np.zeros(volume.image.shape, bool)
    brain[4:36, 4:36, 4:36] = True
    probability = stage1_probability(net, Volume(volume.image, volume.affine), brain, config)
    assert probability.shape == volume.image.shape
    assert probability.array[12, 12, 12] > probability.array[20, 12, 30] + 0.2
    brain[:] = False
    empty = stage1_probability(net, Volume(volume.image, volume.affine), brain, config)
    assert not empty.array.any()


# ------------------------------------------------------------------ prediction
def test_prediction_finds_dark_bleeds_and_writes_the_promised_files(cohort, dark_model, tmp_path):
    row = cohort[0][0]
    image, truth = read_volume(row.image), read_volume(row.cmb)
    result = predict_cmb(image, dark_model, "SWI", with_teacher=True, locate=False)
    assert result.labels.shape == image.shape and np.allclose(result.labels.affine, image.affine)
    kept_ids = {c.id for c in result.kept}
    assert set(np.unique(result.labels.array)) - {0} == kept_ids
    assert {c.dropped_by for c in result.candidates} <= {None, "stage2", "cleanup"}
    assert all(c.reason is None for c in result.kept)
    assert all(c.teacher_probability is not None for c in result.candidates)
    counts = case_counts(result, truth)
    assert counts["stage1"].tp >= 1 and len(result.candidates) > 1

    paths = write_prediction(result, tmp_path, str(row.image))
    document = read_candidates(paths["json"])
    assert document["count"] == len(kept_ids) and document["modality"] == "SWI"
    first = document["candidates"][0]
    for key in ("id", "centre_ras", "volume_mm3", "diameter_mm", "stage1_probability",
                "stage2_probability", "kept", "dropped_by", "reason", "location", "region"):
        assert key in first
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.candidates) and "centre_s" in rows[0]
    assert read_volume(paths["labels"]).shape == image.shape


def test_stage_selections_nest_and_restrict_the_label_map(cohort, dark_model):
    model = replace(dark_model, config=replace(dark_model.config, stage2_threshold=0.5))
    result = predict_cmb(read_volume(cohort[0][0].image), model, "SWI", locate=False)
    chosen = stage_selections(result)
    ids = {stage: {c.id for c in cands} for stage, cands in chosen.items()}
    assert ids["all stages"] <= ids["stage1+2 student"] <= ids["stage1"]
    assert ids["stage1+2 teacher"] == set()  # teacher not asked for
    only = labels_of(result, chosen["stage1+2 student"])
    assert set(np.unique(only.array)) - {0} <= ids["stage1+2 student"]


def test_model_refuses_the_other_sequence_unless_told(dark_model, cohort):
    image = read_volume(cohort[0][0].image)
    with pytest.raises(InvalidImageError, match="trained on SWI") as error:
        predict_cmb(image, dark_model, "T2star", locate=False)
    assert "--allow-modality-mismatch" in error.value.fix
    result = predict_cmb(image, dark_model, "T2star", allow_other_sequence=True, locate=False)
    assert result.sequence == "T2star"


def test_unreadable_candidates_file_is_one_clear_error(tmp_path):
    path = tmp_path / "cmb_candidates.json"
    path.write_text("{\"candidates\": ")
    with pytest.raises(UnreadableFileError, match="cannot be read") as error:
        read_candidates(path)
    assert str(path) in str(error.value)


# ------------------------------------------------------------------ calibration
def test_detection_counts_pool_the_distance_rule():
    cases = [{"centres": np.array([[0, 0, 0], [20, 0, 0], [50, 0, 0.0]]),
              "true": np.array([[1, 0, 0], [20, 4, 0.0]]), "p1": np.array([0.9, 0.4, 0.8])},
             {"centres": np.zeros((0, 3)), "true": np.array([[5, 5, 5.0]]), "p1": np.zeros(0)}]
    assert detection_counts(cases, lambda c: c["p1"] >= 0) == (2, 1, 3)
    assert detection_counts(cases, lambda c: c["p1"] >= 0.5) == (1, 1, 3)


# ------------------------------------------------------------------ training and bundle
def test_fit_saves_a_bundle_that_predicts_identically(cohort, tmp_path):
    train, validation = cohort
    config = CMBTrainConfig(stage1=TINY, teacher=Stage2TrainConfig(steps=2, batch_size=4),
                            student=Stage2TrainConfig(steps=2, batch_size=4))
    networks, model_config, report = fit_cmb(train, validation, config)
    assert report["stage2_examples"] >= report["stage2_positives"] > 0
    assert 0.1 <= model_config.stage1.candidates.threshold <= 0.95
    assert model_config.sequences == ("SWI",)
    meta = save_cmb_model(tmp_path / "model", networks["stage1"], networks["student"],
                          networks["teacher"], model_config, training=report)
    assert set(meta.networks) == {"stage1", "student", "teacher"}
    loaded = load_cmb_model(tmp_path / "model")
    assert loaded.config == model_config
    image = read_volume(validation[0].image)
    a = predict_cmb(image, CMBModel(None, networks["stage1"], networks["student"], None,
                                    model_config), locate=False)
    b = predict_cmb(image, loaded, locate=False)
    assert [c.stage2_probability for c in a.candidates] == [c.stage2_probability for c in b.candidates]


def test_cli_predict_writes_outputs_and_refuses_bad_input(cohort, tmp_path, capsys):
    train, validation = cohort
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    save_cmb_model(model_dir, build_stage1(TINY), build_network("student"),
                   None, CMBConfig(stage1=replace(TINY, candidates=CandidateConfig(
                       spacing_mm=2.0, threshold=0.9))))
    out = tmp_path / "out"
    assert main(["cmb", "predict", str(validation[0].image), "--model", str(model_dir),
                 "--out", str(out)]) == 0
    assert (out / "cmb_candidates.json").is_file() and (out / "cmb_labels.nii.gz").is_file()
    assert main(["cmb", "predict", str(validation[0].image), "--model", str(model_dir),
                 "--sequence", "T2star", "--out", str(out)]) == 2
    flat = tmp_path / "flat.nii.gz"
    write_volume(Volume(np.ones((8, 8, 1), np.float32), np.eye(4)), flat)
    assert main(["cmb", "predict", str(flat), "--model", str(model_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and str(flat) in err[-1] and "Traceback" not in "".join(err)


def test_read_cohorts_takes_every_sequence_a_table_holds(cohort, tmp_path):
    from lesion_core.cmb.fit import read_cohorts
    table = cohort[0][0].image.parents[1] / "cmb_labels.csv"
    rows = read_cohorts([table])
    assert [r.sequence for r in rows] == ["SWI", "SWI"]
    with pytest.raises(InvalidImageError, match="no T2star images"):
        read_cohorts([table], ("T2star",))

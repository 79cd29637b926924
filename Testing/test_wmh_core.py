"""WMH-DualTasker core: transforms, consistency, ordinal head, rating loss, rating-only data
loading and a short training run on a tiny synthetic cohort (3 mm, CPU, seeded)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from lesion_core.synth.acquisition import AcquisitionConfig
from lesion_core.synth.anatomy import AnatomyConfig
from lesion_core.atlas.arwmc import LABELS, REGIONS
from lesion_core.wmh.calibrate import (GROW_TIE_TOLERANCE, CalibrationCase, calibrate_thresholds,
                                       segment)
from lesion_core.errors import OperationCancelled
from lesion_core.progress import Progress
from lesion_core.training import OptimConfig
from lesion_core.wmh.config import DualTaskerConfig, SegmentThresholds, TrainConfig
from lesion_core.wmh.consistency import Transform, consistency_loss, random_transform
from lesion_core.wmh.data import (RatingsDataset, RatingsTableError, known_transform_masks,
                                  parse_rows, read_ratings_table, table_from_synthetic_cohort,
                                  write_ratings_table)
from lesion_core.wmh.losses import localization_loss, rating_loss
from lesion_core.wmh.network import DualTaskerNet
from lesion_core.wmh.train import train

SMALL = DualTaskerConfig(spacing_mm=3.0, shape=(64, 72, 64), features=(8, 16, 32), res_units=1)


class Pointwise(nn.Module):
    """A 'network' whose map is a pointwise function of the image: equivariant to any
    voxel permutation."""

    def forward(self, image, regions):
        return {"activation": torch.sigmoid(4.0 * (image - 1.0))}


class Skewed(nn.Module):
    """A map from an asymmetric convolution: not equivariant to flips."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(27.0).reshape(1, 1, 3, 3, 3) / 27.0)

    def forward(self, image, regions):
        return {"activation": torch.sigmoid(self.conv(image))}


def _swap_sides(labels):
    return torch.where(labels > 0, ((labels - 1) ^ 1) + 1, labels)


def _exact_transforms():
    for n in range(4):
        for flips in itertools.combinations(range(3), n):
            for swap, turns in ((None, 0), ((0, 2), 0), (None, 1), ((0, 2), 3), (None, 2)):
                yield Transform(flips=flips, swap=swap, quarter_turns=turns)


def test_voxel_moves_are_exact_inverses():
    x = torch.randn(2, 1, 6, 6, 6)
    labels = torch.randint(0, 11, (2, 6, 6, 6))
    for t in _exact_transforms():
        assert t.exact
        assert torch.equal(t.inverse_map(t.map(x)), x)
        assert t.map(x).shape == x.shape
        assert torch.equal(t.valid(x.shape), torch.ones(1, 1, 6, 6, 6))
        moved_back = t.inverse_map(t.regions(labels)[:, None])[:, 0]
        assert torch.equal(_swap_sides(moved_back) if t.swaps_sides else moved_back, labels)
    with pytest.raises(ValueError):
        Transform(swap=(0, 1)).map(torch.zeros(1, 1, 4, 6, 4))


def test_affine_inverse_is_approximate_and_valid_mask_marks_the_field_of_view():
    gen = torch.Generator().manual_seed(3)
    t = random_transform((16, 16, 16), TrainConfig(affine_probability=1.0, flip_probability=0.0),
                         gen)
    assert not t.exact
    grid = torch.meshgrid(*[torch.linspace(-1, 1, 16)] * 3, indexing="ij")
    smooth = (grid[0] + 0.5 * grid[1] - grid[2] ** 2)[None, None]
    back = t.inverse_map(t.map(smooth))
    inside = (t.inverse_map(t.valid(smooth.shape)) > 0.999) & (smooth.abs() < 10)
    assert 0 < (back - smooth)[inside].abs().max() < 0.1
    assert 0.5 < float(t.valid(smooth.shape).mean()) < 1.0


def test_left_right_flip_relabels_regions_and_ratings():
    labels = torch.zeros(1, 8, 4, 4, dtype=torch.long)
    labels[:, :4] = LABELS["frontal_left"]        # low i = left (RAS working grid)
    labels[:, 4:] = LABELS["frontal_right"]
    labels[:, :4, 0, 0] = LABELS["basal_ganglia_left"]
    flip = Transform(flips=(0,))
    moved = flip.regions(labels)
    assert torch.equal(moved[:, :4, 1:], labels[:, :4, 1:])   # left side is still "left"
    assert int(moved[0, 7, 0, 0]) == LABELS["basal_ganglia_right"]
    assert int(moved[0, 0, 0, 0]) == LABELS["frontal_left"]
    ratings = torch.arange(10.0)[None]
    swapped = flip.ratings(ratings)
    assert swapped[0, LABELS["frontal_left"] - 1] == ratings[0, LABELS["frontal_right"] - 1]
    assert torch.equal(flip.ratings(swapped), ratings)
    assert not Transform(flips=(0, 1)).swaps_sides and Transform(flips=(1,)).swaps_sides
    assert torch.equal(Transform(quarter_turns=1).ratings(ratings), ratings)


def _loss(*args):
    return consistency_loss(*args).detach()


def test_consistency_zero_for_equivariant_map_positive_otherwise():
    torch.manual_seed(0)
    image = torch.rand(2, 1, 8, 8, 8) * 2
    regions = torch.randint(0, 11, (2, 8, 8, 8))
    for t in _exact_transforms():
        assert float(_loss(Pointwise(), image, regions, t)) == 0.0
    skewed = float(_loss(Skewed(), image, regions, Transform(flips=(0, 2))))
    assert skewed > 1e-4
    flip = Transform(flips=(1,))     # an acquisition change in the transformed branch
    assert float(_loss(Pointwise(), image, regions, flip, flip.map(image) ** 1.2 * 0.9)) > 1e-4


def test_ordinal_head_is_ordered_and_monotone():
    torch.manual_seed(1)
    net = DualTaskerNet(features=(4, 8), res_units=0, voxel_ml=0.027)
    with torch.no_grad():
        net.cut_steps.normal_(0, 3)
        net.cut_base.normal_(0, 2)
    cuts = net.cut_points()
    assert cuts.shape == (10, 3) and bool((cuts[:, 1:] > cuts[:, :-1]).all())
    loads = torch.logspace(-3, 2, 60)[:, None].repeat(1, 10)
    with torch.no_grad():
        out = net.rate(loads)
    expected = out["expected"]
    assert bool((expected[1:] > expected[:-1]).all())
    assert bool((out["cumulative"][..., 1:] <= out["cumulative"][..., :-1]).all())
    assert torch.allclose(out["total"], expected.sum(1))
    assert 0 <= float(expected.min()) and float(expected.max()) <= 3


def test_rating_loss_masks_missing_ratings():
    net = DualTaskerNet(features=(4, 8), res_units=0)
    loads = torch.full((3, 10), 0.5, requires_grad=True)
    nan = math.nan
    regional = torch.tensor([[nan] * 10,                    # total only
                             [1, 0, nan, nan, 2, 0, 0, 0, 3, nan],  # partial regions
                             [nan] * 10])                   # nothing rated
    total = torch.tensor([12.0, nan, nan])
    result = rating_loss(net.rate(loads), regional, total)
    assert result.n_totals == 1 and result.n_region_ratings == 7
    result.loss.backward()
    grad = loads.grad
    assert bool((grad[0] != 0).all())                 # the total trains every region
    known = torch.isfinite(regional[1])
    assert bool((grad[1][known] != 0).all()) and bool((grad[1][~known] == 0).all())
    assert bool((grad[2] == 0).all())
    changed = regional.clone()
    changed[1, 2] = nan
    changed[1, 3] = nan
    assert torch.equal(rating_loss(net.rate(loads), changed, total).loss, result.loss)
    full = torch.zeros(1, 10)      # all regions rated: the total adds nothing
    a = rating_loss(net.rate(loads[:1]), full, torch.tensor([30.0]))
    assert a.n_totals == 0 and float(a.total) == 0.0


def test_ratings_table_schema_refuses_labels(tmp_path):
    good = {"subject": "s1", "image": "flair.nii.gz", "total": "4", "frontal_left": "2"}
    rows = parse_rows([good])
    assert rows[0].total == 4 and rows[0].regions[REGIONS.index("frontal_left")] == 2
    for bad in ({**good, "flair_wmh": "x_wmh_truth.nii.gz"}, {**good, "label": "seg.nii.gz"},
                {**good, "image": "flair_wmh_truth.nii.gz"}, {**good, "total": "31"},
                {"subject": "s2", "image": "f.nii.gz"}):
        with pytest.raises(RatingsTableError):
            parse_rows([bad])
    path = write_ratings_table(rows, tmp_path / "ratings.csv")
    again = read_ratings_table(path)
    assert again[0].total == 4 and again[0].image == str(tmp_path / "flair.nii.gz")


# ------------------------------------------------------------ a tiny synthetic cohort
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """6 wmh subjects at 3 mm written by make_cohort; their in-memory subjects are kept
    (captured) only to supply brain masks and atlases from the known transform."""
    from lesion_core.synth import cohort as cohort_module

    folder = tmp_path_factory.mktemp("wmh_cohort")
    captured = {}
    original = cohort_module.make_subject

    def capture(seed, config):
        subject = original(seed, config)
        captured[subject.subject_id] = subject
        return subject

    config = cohort_module.SubjectConfig(
        kind="wmh", anatomy=AnatomyConfig(spacing_mm=3.0),
        acquisition={"FLAIR": AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=3.0),
                     "T1": AcquisitionConfig(in_plane_mm=6.0, slice_thickness_mm=6.0)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cohort_module, "make_subject", capture)
        cohort_module.make_cohort("wmh", [3, 4, 5, 6, 7, 8], folder, config)
    masks = {sid: known_transform_masks(s) for sid, s in captured.items()}
    return folder, masks, captured


def _dataset(cohort, config=SMALL):
    folder, masks, _ = cohort
    rows = table_from_synthetic_cohort(folder)
    return RatingsDataset(rows, lambda image, subject: masks[subject], config)


def test_loader_never_reads_voxel_labels(cohort, monkeypatch):
    import lesion_core.io as lesion_io

    folder = cohort[0]
    assert list(folder.rglob("*_truth*"))          # the truth exists beside the images
    opened = []
    real = lesion_io.read_volume
    monkeypatch.setattr(lesion_io, "read_volume",
                        lambda path, *a, **k: (opened.append(str(path)), real(path, *a, **k))[1])
    dataset = _dataset(cohort)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.data.image.shape == (1, 64, 72, 64)
    assert len(opened) == len(dataset)
    assert all("_truth" not in p for p in opened)
    assert sorted(opened) == sorted(row.image for row in dataset.rows)


def test_working_grid_maps_back_to_the_input(cohort):
    dataset = _dataset(cohort)
    _, masks, subjects = cohort
    sample = dataset[0]
    image = subjects[sample.subject].images["FLAIR"]
    back = sample.data.to_input_grid(sample.data.brain.numpy().astype(np.uint8), order=0)
    assert back.shape == image.shape and np.allclose(back.affine, image.affine)
    brain = masks[sample.subject][0].resample_to_grid(image.affine, image.shape, order=0).array > 0
    dice = 2 * (brain & (back.array > 0)).sum() / (brain.sum() + (back.array > 0).sum())
    assert dice > 0.97
    # a left-right mirror of the atlas, relabelled, is again (nearly) an atlas
    regions = sample.data.regions[None]
    flipped = Transform(flips=(0,)).regions(regions)
    both = (regions > 0) & (flipped > 0)
    assert float((regions[both] == flipped[both]).float().mean()) > 0.8


def _settings(steps: int, **optim) -> TrainConfig:
    return TrainConfig(optim=OptimConfig(steps=steps, batch_size=2, lr=3e-3, seed=0,
                                         device="cpu", precision="fp32", deterministic=True,
                                         **optim))


def test_localization_negatives_are_regions_rated_zero_and_the_outside():
    # one subject, 4x4x4 grid: brain = the inner 2x2x2 block, split between regions 1
    # (rated 0) and 2 (rated 2); the rest of the brain is unrated region 3.
    regions = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    brain = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    brain[:, 1:3, 1:3, 1:3] = True
    regions[:, 1:3, 1:3, 1] = 1
    regions[:, 1:3, 1:2, 2] = 2
    regions[:, 1:3, 2:3, 2] = 3
    ratings = torch.full((1, 10), math.nan)
    ratings[0, 0], ratings[0, 1] = 0.0, 2.0
    quiet = torch.zeros(1, 1, 4, 4, 4)
    assert float(localization_loss(quiet, regions, brain, ratings).negative) < 1e-5
    for where, counts in ((regions == 1, True), (~brain, True), (regions == 2, False),
                          (regions == 3, False)):
        act = quiet.clone()
        act[:, 0][where] = 0.9
        loss = localization_loss(act, regions, brain, ratings)
        assert (float(loss.negative) > 0.1) == counts, where
        inside = bool((where & brain).any())
        assert (float(loss.sparsity) > 0) == inside


def test_training_lowers_the_rating_loss(cohort):
    dataset = _dataset(cohort)
    net, result = train(dataset, SMALL, _settings(24))
    history = result.history
    rating = np.asarray(history["rating_loss"])
    assert len(rating) == 24 and np.isfinite(history["consistency_loss"]).all()
    assert rating[-5:].mean() < 0.9 * rating[:5].mean(), rating.round(3)
    assert result.summary()["steps"] == 24 and result.precision == "fp32"
    out = net(dataset[0].data.image[None], dataset[0].data.regions[None])
    assert out["activation"].shape == (1, 1, 64, 72, 64) and out["expected"].shape == (1, 10)
    # the frozen ordinal head kept its volume meaning
    fresh = DualTaskerNet(**SMALL.network_args())
    assert torch.equal(net.cut_base, fresh.cut_base) and torch.equal(net.raw_slope,
                                                                     fresh.raw_slope)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


def test_a_cancelled_training_resumes_to_the_same_weights(cohort, tmp_path):
    """Cancelled after 3 of 5 steps, the same call resumes from the checkpoint and ends
    where an uninterrupted run ends (augmentation, transforms and epoch order included)."""
    dataset = _dataset(cohort)
    settings = _settings(5, checkpoint_every_steps=2, log_every=1)
    straight, straight_result = train(dataset, SMALL, settings)

    def cancel_after_step_3(fraction, message):
        if "step 3/5" in message:
            progress.cancel()
    progress = Progress(cancel_after_step_3)
    with pytest.raises(OperationCancelled):
        train(dataset, SMALL, settings, progress=progress, checkpoint_dir=tmp_path)
    resumed, result = train(dataset, SMALL, settings, checkpoint_dir=tmp_path)
    assert result.resumed_from == 3 and result.steps == 5
    assert _same(straight, resumed)
    assert result.history["loss"] == straight_result.history["loss"]


def test_the_array_cache_replaces_reading_and_masking(cohort, tmp_path, monkeypatch):
    import lesion_core.io as lesion_io

    folder, masks, _ = cohort
    rows = table_from_synthetic_cohort(folder)[:2]

    def masker(image, subject):
        return masks[subject]
    masker.cache_name = "known transform (test)"
    first = RatingsDataset(rows, masker, SMALL, cache_dir=tmp_path)
    before = [first[i] for i in range(2)]
    monkeypatch.setattr(lesion_io, "read_volume", lambda *a, **k: pytest.fail("read again"))
    again = RatingsDataset(rows, masker, SMALL, cache_dir=tmp_path)
    for old, new in zip(before, (again[i] for i in range(2))):
        assert torch.equal(old.data.image, new.data.image)
        assert torch.equal(old.data.regions, new.data.regions)
        assert torch.equal(old.data.brain, new.data.brain)
        assert np.allclose(old.data.affine, new.data.affine) and old.data.scale == new.data.scale
    assert len(list(tmp_path.glob("*.npz"))) == 2
    # another working grid is another entry, never a stale one
    other = DualTaskerConfig(spacing_mm=4.0, shape=(48, 56, 48), features=(8, 16, 32))
    with pytest.raises(pytest.fail.Exception, match="read again"):
        RatingsDataset(rows, masker, other, cache_dir=tmp_path)[0]


def test_acquisition_randomization_keeps_the_brain_median_and_the_outside():
    from lesion_core.training.augment import Augmenter
    from lesion_core.wmh.config import WMH_ACQUISITION
    from lesion_core.wmh.preprocess import randomize_acquisition

    brain = torch.zeros(24, 24, 24, dtype=torch.bool)
    brain[4:20, 4:20, 4:20] = True
    image = torch.where(brain, 1.0 + 0.05 * torch.randn(24, 24, 24,
                                                        generator=torch.Generator().manual_seed(0)),
                        torch.zeros(()))[None]
    image[0, 10:13, 10:13, 10:13] = 2.0                     # a lesion
    augmenter = Augmenter(WMH_ACQUISITION, 3.0)
    for seed in range(6):
        out = randomize_acquisition(augmenter, image, brain, np.random.default_rng(seed))
        assert out.shape == image.shape and bool((out[0][~brain] == 0).all())
        assert abs(float(out[0][brain].median()) - 1.0) < 0.02
        assert float(out[0, 11, 11, 11]) > float(out[0][brain].median())
    again = randomize_acquisition(augmenter, image, brain, np.random.default_rng(5))
    assert torch.equal(again, out)                          # drawn from the rng only


def test_calibration_uses_ratings_only():
    rng = np.random.default_rng(0)
    cases = []
    # lesion volumes in the Wahlund range of each rating: 0, 0.5, 4.9 and 15.6 mL
    boxes = {0: (0, 0, 0), 1: (2, 3, 3), 2: (5, 6, 6), 3: (9, 8, 8)}
    for index in range(8):
        rating = index % 4
        flair = rng.normal(1.0, 0.05, (20, 20, 20)).astype(np.float32)
        a, b, c = boxes[rating]
        flair[2:2 + a, 5:5 + b, 5:5 + c] += 1.0
        regions = np.ones(flair.shape, np.int64)
        activation = np.clip(flair - 1.0, 0, 1)
        cases.append(CalibrationCase(activation, flair, np.ones(flair.shape, bool), regions,
                                     float(rating), np.array([rating] + [np.nan] * 9)))
    best, table = calibrate_thresholds(cases, voxel_ml=0.027)
    assert len(table) > 10 and best.activation_level is not None
    assert max(row["score"] for row in table) > 0.9
    mask = segment(cases[2].activation, cases[2].flair, cases[2].brain, best)
    assert 120 <= mask.sum() <= 200                           # most of the 180-voxel lesion
    assert segment(cases[0].activation, cases[0].flair, cases[0].brain, best).sum() <= 2
    assert SegmentThresholds().activation_level is None


def test_segment_grows_lesions_from_their_seeds_only():
    flair = np.ones((24, 24, 24), np.float32)
    flair[4:12, 4:12, 4:12] = 1.3                  # a lesion's faint rim ...
    flair[6:10, 6:10, 6:10] = 1.8                  # ... around its bright core
    flair[16:20, 16:20, 16:20] = 1.3               # a faint blob with no bright voxel
    activation = np.full(flair.shape, 0.6, np.float32)
    brain = np.ones(flair.shape, bool)
    strict = SegmentThresholds(activation_level=0.5, flair_level=1.5)
    grown = SegmentThresholds(activation_level=0.5, flair_level=1.5,
                              grow_activation_level=0.1, grow_flair_level=1.2)
    assert segment(activation, flair, brain, strict).sum() == 4 ** 3
    mask = segment(activation, flair, brain, grown)
    assert mask.sum() == 8 ** 3 and not mask[16:20, 16:20, 16:20].any()
    brain[:, :, :8] = False                        # e.g. a region-side rated 0
    assert segment(activation, flair, brain, grown).sum() == 8 * 8 * 4
    activation[6:10, 6:10, 6:10] = 0.2             # the core is not in the map: no lesion
    assert not segment(activation, flair, np.ones(flair.shape, bool), grown).any()
    with pytest.raises(ValueError, match="both growth levels"):
        SegmentThresholds(activation_level=0.5, flair_level=1.5, grow_flair_level=1.2)
    with pytest.raises(ValueError, match="fixed activation and FLAIR"):
        SegmentThresholds(grow_activation_level=0.1, grow_flair_level=1.2)


def test_calibration_grows_lesions_whose_rims_the_ratings_count():
    rng = np.random.default_rng(1)
    cases = []
    # rated volumes: 0 none, 2 (0.1-14 mL): the 6x6x6 lesion with its rim makes 5.8 mL,
    # its core alone 0.03 mL, the faint noise voxels of a scan 3.7 mL
    for index in range(8):
        rating = 2 * (index % 2)
        flair = rng.normal(1.0, 0.03, (24, 24, 24)).astype(np.float32)
        flair[rng.random(flair.shape) < 0.01] = 1.35          # faint noise voxels everywhere
        if rating:
            flair[8:14, 8:14, 8:14] = 1.35                     # rim
            flair[10, 10, 10] = 2.0                            # core
        activation = np.where(flair > 1.2, 0.8, 0.05).astype(np.float32)
        cases.append(CalibrationCase(activation, flair, np.ones(flair.shape, bool),
                                     np.ones(flair.shape, np.int64), float(rating),
                                     np.array([rating] + [np.nan] * 9)))
    plain, _ = calibrate_thresholds(cases, voxel_ml=0.027)
    best, table = calibrate_thresholds(cases, voxel_ml=0.027, grow=True)
    assert plain.grow_activation_level is None and best.grow_flair_level is not None
    assert best.grow_flair_level < best.flair_level
    lesion = segment(cases[1].activation, cases[1].flair, cases[1].brain, best)
    assert lesion[8:14, 8:14, 8:14].mean() > 0.9 and lesion.sum() < 6 ** 3 * 1.2
    assert not segment(cases[0].activation, cases[0].flair, cases[0].brain, best).any()


def test_calibration_with_growth_keeps_a_grown_candidate_on_a_tie_only():
    def cohort(outside_activation):
        rng = np.random.default_rng(2)
        cases = []
        for index in range(8):
            rating = 2 * (index % 2)
            flair = rng.normal(1.0, 0.03, (24, 24, 24)).astype(np.float32)
            if rating:
                flair[8:14, 8:14, 8:14] = 1.8                  # a lesion without a rim
            activation = np.where(flair > 1.2, 0.8, outside_activation).astype(np.float32)
            cases.append(CalibrationCase(activation, flair, np.ones(flair.shape, bool),
                                         np.ones(flair.shape, np.int64), float(rating),
                                         np.array([rating] + [np.nan] * 9)))
        return cases

    # no activation outside the lesions: growth can add nothing, every grown candidate
    # ties with its seeds, and the search returns a grown one
    cases = cohort(0.0)
    plain, table = calibrate_thresholds(cases, voxel_ml=0.027)
    best, grown_table = calibrate_thresholds(cases, voxel_ml=0.027, grow=True)
    assert plain.grow_activation_level is None and best.grow_activation_level is not None
    assert max(row["score"] for row in grown_table) == max(row["score"] for row in table)
    for case in cases:
        mask = segment(case.activation, case.flair, case.brain, best)
        assert mask[8:14, 8:14, 8:14].all() if case.total else not mask.any()
    # faint activation everywhere: growth reaches noise and scores clearly lower, so the
    # pair without growth stays
    best, grown_table = calibrate_thresholds(cohort(0.05), voxel_ml=0.027, grow=True)
    scores = [row["score"] for row in grown_table if row["grow_activation_level"] is not None]
    assert best.grow_activation_level is None
    assert max(scores) < max(row["score"] for row in grown_table) - GROW_TIE_TOLERANCE


def test_network_rebuilds_from_a_bundle(tmp_path):
    from lesion_core.bundle import BundleMetadata, NetworkSpec, load_bundle, save_bundle

    torch.manual_seed(0)
    net = DualTaskerNet(**SMALL.network_args()).eval()
    meta = BundleMetadata(name="wmh-test", task="wmh", version="0.0.1", input_modality="FLAIR",
                          spacing_mm=(3.0, 3.0, 3.0),
                          networks={"dualtasker": NetworkSpec("lesion_suite.DualTaskerNet",
                                                              SMALL.network_args())})
    save_bundle(tmp_path / "model", meta, {"dualtasker": net})
    loaded = load_bundle(tmp_path / "model").networks["dualtasker"]
    image = torch.rand(1, 1, 16, 16, 16)
    regions = torch.randint(0, 11, (1, 16, 16, 16))
    with torch.no_grad():
        assert torch.equal(loaded(image, regions)["total"], net(image, regions)["total"])

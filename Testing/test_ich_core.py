"""ICHWeakSeg library core (``lesion_core.ich``): interslice context, Grad-CAM, HU
refinement and multiple-instance pooling, on toy data (<= 48 pixels a side, a few dozen
training steps, seeded), CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ich_toys import TOY, TOY_WINDOW, blob_stacks, fit, toy_sample
from scipy import ndimage

from lesion_core.ich.cam import compute_cam, grad_cam
from lesion_core.ich.classifier import ICHSliceClassifier, mil_pool
from lesion_core.ich.config import (CLASSES, SUBTYPES, CAMConfig, ClassifierConfig,
                                    ClassifierTrainConfig, GrowConfig, ICHConfig, RefineConfig,
                                    config_from_dict, config_to_dict)
from lesion_core.ich.grow import confident_components, grow_into_blood, inner_table_seeds
from lesion_core.ich.refine import fit_gmm_1d, refine
from lesion_core.ich.train import train_classifier
from lesion_core.labels import ICH_SUBTYPE_KEYS
from lesion_core.networks import get_network_class, name_of_network
from lesion_core.training import OptimConfig


def test_config_round_trip_and_classes():
    assert CLASSES == ("any",) + tuple(ICH_SUBTYPE_KEYS[v] for v in sorted(ICH_SUBTYPE_KEYS))
    assert len(SUBTYPES) == 5
    data = json.loads(json.dumps(config_to_dict(TOY)))
    assert config_from_dict(data) == TOY
    with pytest.raises(TypeError):
        config_from_dict({**data, "thresholds": {}})


def test_classifier_rebuilds_from_json_args():
    args = json.loads(json.dumps(TOY.classifier.network_args(len(TOY.windows))))
    net = get_network_class("lesion_suite.ICHSliceClassifier")(**args)
    assert name_of_network(net) == "lesion_suite.ICHSliceClassifier"
    logits = net(torch.zeros(2, 5, 3, 32, 32), torch.tensor([5, 3]))
    assert logits.shape == (2, 5, len(CLASSES))


def test_sequence_model_sees_neighbours():
    # Label of slice s = a disk on slice s-1: nothing in the slice itself tells.
    x, present, _ = blob_stacks(64, seed=1)
    y = torch.zeros(present.shape)
    y[:, 1:] = torch.from_numpy(present[:, :-1].astype(np.float32))
    x_test, present_test, _ = blob_stacks(64, seed=2)
    y_test = torch.zeros(present_test.shape)
    y_test[:, 1:] = torch.from_numpy(present_test[:, :-1].astype(np.float32))
    accuracy = {}
    for context in (True, False):
        torch.manual_seed(0)
        net = ICHSliceClassifier(1, 1, channels=(8, 16), strides=(2, 2), gru_hidden=16,
                                 dropout=0.0, context=context)
        net = fit(net, x, y, steps=60)
        with torch.no_grad():
            accuracy[context] = float(((net(x_test)[..., 0] > 0) == (y_test > 0.5)).float().mean())
    assert accuracy[True] > 0.9, accuracy
    assert accuracy[False] < 0.8, accuracy


BLOB_CENTRE = (9, 22)


@pytest.fixture(scope="module")
def blob_classifier():
    """A two-stage toy classifier fitted to find bright disks, a noise stack of 6 slices
    with one disk on slice 3, and that disk's mask."""
    x, present, _ = blob_stacks(48, seed=3, slices=6, size=32, radius=3.5)
    torch.manual_seed(0)
    net = ICHSliceClassifier(1, 1, channels=(8, 16), strides=(2, 2), gru_hidden=8, dropout=0.0)
    net = fit(net, x, torch.from_numpy(present.astype(np.float32)), steps=60)
    stack = torch.from_numpy(np.random.default_rng(4).normal(0, 0.3, (6, 1, 32, 32)).astype(np.float32))
    yy, xx = np.mgrid[:32, :32]
    blob = np.hypot(yy - BLOB_CENTRE[0], xx - BLOB_CENTRE[1]) < 3.5
    stack[3, 0][torch.from_numpy(blob)] += 2.0
    return net, stack, blob


def assert_peaks_at_the_blob(raw: torch.Tensor, blob: np.ndarray) -> None:
    peak = np.unravel_index(int(raw[3].argmax()), (32, 32))
    assert np.hypot(peak[0] - BLOB_CENTRE[0], peak[1] - BLOB_CENTRE[1]) <= 4.0, peak
    inside = float(raw[3][torch.from_numpy(blob)].mean())
    assert inside > 3 * float(raw[3][torch.from_numpy(~blob)].mean())


def test_grad_cam_peaks_at_the_blob(blob_classifier):
    net, stack, blob = blob_classifier
    raw, logits = grad_cam(net, stack, 0)
    assert logits.shape == (6, 1) and raw.shape == (6, 32, 32)
    assert_peaks_at_the_blob(raw, blob)
    result = compute_cam(net, stack, CAMConfig(min_probability=0.5, threshold=0.5))
    assert result.probabilities[3, 0] > 0.5
    assert 0.0 <= result.cam.min() and result.cam.max() == pytest.approx(1.0)
    assert result.region[3][blob].mean() > 0.5 and result.region[3][~blob].mean() < 0.1
    negatives = result.probabilities[:, 0] < 0.5
    assert negatives.any() and not result.cam[negatives].any()


def test_layer_cam_is_each_slice_gradient_at_the_earlier_stage(blob_classifier):
    net, stack, blob = blob_classifier
    raw, logits = grad_cam(net, stack, 0, precision="fp32", layer_stage=1)
    _, grad_cam_logits = grad_cam(net, stack, 0, precision="fp32")
    assert torch.allclose(logits, grad_cam_logits)
    # Slice by slice: the gradient of slice s's logit by its own stage 1 maps.
    net.eval()
    early = net.encoder[:1](stack).detach().requires_grad_(True)
    want = []
    for s in range(stack.shape[0]):
        pooled = net.encoder[1:](early).mean(dim=(-2, -1))
        grad, = torch.autograd.grad(net.sequence_logits(pooled[None])[0][s, 0], early)
        want.append(torch.relu((torch.relu(grad[s]) * early[s]).sum(dim=0)).detach())
    want = torch.nn.functional.interpolate(torch.stack(want)[:, None], size=(32, 32),
                                           mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(raw, want, atol=1e-6, rtol=1e-4)
    assert_peaks_at_the_blob(raw, blob)
    with pytest.raises(ValueError, match="not an encoder stage"):
        grad_cam(net, stack, 0, layer_stage=3)
    with pytest.raises(ValueError, match="from 1"):
        CAMConfig(layer_stage=0)
    data = config_to_dict(TOY)
    del data["cam"]["layer_stage"]  # a bundle saved before the option
    assert config_from_dict(data).cam.layer_stage is None
    data["cam"]["layer_stage"] = 2
    assert config_from_dict(json.loads(json.dumps(data))).cam.layer_stage == 2


def test_gmm_separates_brain_and_blood():
    values = np.concatenate([np.random.default_rng(0).normal(32, 4, 800),
                             np.random.default_rng(1).normal(70, 5, 300)])
    gmm = fit_gmm_1d(values, (10.0, 35.0, 70.0), 10.0, 3.0)
    assert np.abs(np.sort(gmm.means)[-1] - 70) < 3
    assert gmm.posteriors(np.array([70.0]))[0, int(np.argmax(gmm.means))] > 0.9


def test_refinement_keeps_blood_and_drops_bone():
    rng = np.random.default_rng(0)
    hu = np.full((6, 48, 48), 32.0, np.float32)
    blood = np.zeros(hu.shape, bool)
    blood[2:4, 16:32, 12:25] = True
    bone = np.zeros(hu.shape, bool)
    bone[:, 10:40, 25:31] = True
    hu[blood], hu[bone] = 70.0, 1000.0
    hu = ndimage.gaussian_filter(hu, (0, 0.7, 0.7)) + rng.normal(0, 3, hu.shape).astype(np.float32)
    yy, xx = np.mgrid[:48, :48]
    cam = np.zeros(hu.shape, np.float32)
    cam[2:4] = np.exp(-((yy - 24) ** 2 + (xx - 25) ** 2) / (2 * 8.0 ** 2))  # over blood and bone
    out = refine(hu, cam, (5.0, 1.0, 1.0), RefineConfig(), cam_threshold=0.4)
    mask = out.mask
    assert not (mask & bone).any() and not (mask & (hu > 120)).any()
    near_bone = ndimage.distance_transform_edt(~bone, sampling=(5, 1, 1)) <= 3.0
    core = blood & ~near_bone & (cam >= 0.4)
    assert mask[core].mean() > 0.9
    assert not (mask & ~ndimage.binary_dilation(blood, np.ones((1, 3, 3), bool))).any()
    assert any(60 < out.mixture.means[k] < 80 for k in out.blood_components)
    # Activation over brain alone gives nothing: no component is blood.
    calm = refine(np.full((6, 48, 48), 32.0, np.float32) + rng.normal(0, 3, hu.shape), cam,
                  (5.0, 1.0, 1.0), RefineConfig(), cam_threshold=0.4)
    assert not calm.mask.any()


def test_growth_fills_the_haematoma_from_its_core_and_nothing_else():
    # Axial slices along axis 2 (5 mm), 1 mm pixels; a skull plate on one side.
    rng = np.random.default_rng(3)
    shape, spacing = (48, 48, 8), (1.0, 1.0, 5.0)
    hu = np.full(shape, 32.0, np.float32)
    ii, jj = np.mgrid[:48, :48]
    disc = ((ii - 24) ** 2 + (jj - 20) ** 2 <= 9 ** 2)[:, :, None]
    haematoma = disc & (np.arange(8) >= 2)[None, None, :] & (np.arange(8) <= 5)[None, None, :]
    far_blood = np.zeros(shape, bool)
    far_blood[5:10, 40:45, 2:6] = True                # blood-like, not connected to the core
    bone = np.zeros(shape, bool)
    bone[:, 33:, :] = True
    hu[haematoma], hu[far_blood], hu[bone] = 70.0, 70.0, 1000.0
    hu += rng.normal(0, 5, shape).astype(np.float32)
    intracranial = ~bone
    core = haematoma & ((ii - 24) ** 2 + (jj - 20) ** 2 <= 3 ** 2)[:, :, None]
    grown = grow_into_blood(core, hu, spacing, intracranial, axial_axis=2)
    near_bone = ndimage.distance_transform_edt(~bone, sampling=spacing) <= GrowConfig().dense_margin_mm
    assert grown[core].all()
    assert grown[haematoma & ~near_bone].mean() > 0.9
    assert not (grown & far_blood).any() and not (grown & near_bone).any()
    # Beyond the haematoma at most the one-pixel edge the in-plane smoothing blurs.
    assert not (grown & ~ndimage.binary_dilation(haematoma, np.ones((3, 3, 1), bool))).any()
    # Off, or with nothing to grow from: the input comes back.
    assert np.array_equal(grow_into_blood(core, hu, spacing, intracranial, 2,
                                          GrowConfig(enabled=False)), core)
    assert not grow_into_blood(np.zeros(shape, bool), hu, spacing, intracranial, 2).any()


def test_inner_table_seeds_lie_on_blood_against_bone_under_a_hot_map():
    # Axial slices along axis 2 (5 mm), 1 mm pixels; the inner table at j = 33.
    rng = np.random.default_rng(4)
    shape, spacing = (48, 48, 8), (1.0, 1.0, 5.0)
    hu = np.full(shape, 32.0, np.float32)
    bone = np.zeros(shape, bool)
    bone[:, 33:, :] = True
    subdural = np.zeros(shape, bool)
    subdural[8:30, 30:33, 2:6] = True                 # a 3 mm crescent against the bone
    deep = np.zeros(shape, bool)
    deep[20:26, 10:16, 2:6] = True                    # blood far from bone
    speck = np.zeros(shape, bool)
    speck[40, 31, 3] = True                           # one blood-like voxel: noise
    hu[subdural], hu[deep], hu[speck], hu[bone] = 65.0, 65.0, 65.0, 1000.0
    hu += rng.normal(0, 3, shape).astype(np.float32)
    cam = np.ones(shape, np.float32)                  # hot everywhere
    config = GrowConfig(inner_table_cam=0.5, inner_table_mm=5.0, inner_table_min_ml=0.02)
    seeds = inner_table_seeds(cam, hu, bone, ~bone, spacing, 2, config)
    inner = subdural & (np.arange(48) <= 31)[None, :, None]   # clear of the 1 mm bone margin
    assert seeds[inner].mean() > 0.8
    assert not (seeds & (deep | speck | bone)).any()
    assert not (seeds & ~ndimage.binary_dilation(subdural, np.ones((3, 3, 1), bool))).any()
    # A cold map, or the rule off: no seeds.
    cold = np.zeros(shape, np.float32)
    assert not inner_table_seeds(cold, hu, bone, ~bone, spacing, 2, config).any()
    assert not inner_table_seeds(cam, hu, bone, ~bone, spacing, 2, GrowConfig()).any()


def test_only_components_with_a_confident_voxel_are_kept():
    mask = np.zeros((20, 20, 4), bool)
    mask[2:6, 2:6, 1:3] = True                        # a component with one confident voxel
    mask[12:16, 12:16, 1:3] = True                    # one without
    confident = np.zeros_like(mask)
    confident[3, 3, 1] = True
    confident[18, 18, 0] = True                       # outside the mask: holds nothing
    kept = confident_components(mask, confident)
    assert kept[2:6, 2:6, 1:3].all() and kept.sum() == 32
    assert not confident_components(np.zeros_like(mask), confident).any()


def test_mil_pooling_trains_from_scan_labels():
    logits = torch.tensor([[[0.0], [2.0], [-9.0]]])
    assert float(mil_pool(logits, torch.tensor([2]), "max")) == pytest.approx(2.0)
    lse = float(mil_pool(logits, torch.tensor([2]), "lse", 5.0))
    assert 1.0 < lse < 2.0  # between the mean and the max of the two real slices
    gen = np.random.default_rng(5)
    samples = []
    for n in range(16):
        x = gen.normal(0, 0.3, (8, 1, 16, 16)).astype(np.float32)
        positive = n % 2 == 0
        if positive:  # one or two disks somewhere in the scan
            for s in gen.choice(8, gen.integers(1, 3), replace=False):
                cy, cx = gen.integers(4, 12, 2)
                x[s, 0, cy - 2:cy + 2, cx - 2:cx + 2] += 2.0
        scan = np.full(len(CLASSES), np.nan, np.float32)
        scan[0] = float(positive)
        samples.append(toy_sample(x[:, 0], np.full((8, len(CLASSES)), np.nan), scan))
    config = ICHConfig(windows=(TOY_WINDOW,), grid=TOY.grid, segmenter=TOY.segmenter,
                       classifier=ClassifierConfig(channels=(8, 16), strides=(2, 2), gru_hidden=8,
                                                   dropout=0.0))
    net, result = train_classifier(samples, config, ClassifierTrainConfig(
        labels="scan", flip_probability=0.0, augment=None,
        optim=OptimConfig(steps=40, batch_size=4, lr=5e-3, device="cpu", precision="fp32")))
    assert np.all(np.isnan(result.history["slice_loss"]))
    loss = np.asarray(result.history["scan_loss"])
    assert loss[-10:].mean() < 0.5 * loss[:10].mean()
    with torch.no_grad():
        scores = [float(mil_pool(net(s.stack.image[None]))[0, 0]) for s in samples]
    assert min(scores[0::2]) > max(scores[1::2])


def test_sensitivity_threshold_keeps_the_asked_share_of_positives():
    from lesion_core.ich.fit import sensitivity_threshold

    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(40, bool), np.zeros(30, bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 40), rng.uniform(0.0, 0.6, 30)]
    for sensitivity in (0.8, 0.9, 0.95, 1.0):
        cut = sensitivity_threshold(labels, scores, sensitivity)
        assert (scores[labels] >= cut).mean() >= sensitivity
        # The highest such cut: one positive more would fall below a cut past the next score.
        higher = np.sort(scores[scores >= cut])[0]
        assert (scores[labels] > higher).mean() < sensitivity
    assert sensitivity_threshold(labels[:42], scores[:42], 0.95) == 0.5  # 2 negatives


def test_segmenter_components_are_judged_by_the_slice_labels():
    from lesion_core.ich.fit import component_peaks

    probability = np.zeros((6, 10, 10), np.float32)
    probability[0:2, 1:4, 1:4] = 0.9
    probability[1, 2, 2] = 0.99           # on slices labelled blood: peak 0.99
    probability[3, 6:8, 6:8] = 0.7        # on a slice labelled clear: a mimic
    probability[4, 1:3, 6:8] = 0.95       # on a slice the classifier gates off: not counted
    probability[5, 6:8, 1:3] = 0.8        # on an unlabelled slice: left out
    labels = np.array([1, 1, 0, 0, 0, np.nan])
    gate = np.array([True, True, True, True, False, True])
    on_blood, peaks = component_peaks(probability, labels, gate, 0.5)
    assert on_blood.tolist() == [True, False]
    assert peaks == pytest.approx([0.99, 0.7])


def test_the_seed_level_separates_blood_components_from_mimics(monkeypatch):
    from types import SimpleNamespace

    from ich_toys import toy_sample
    from lesion_core.ich import fit
    from lesion_core.ich.model import ICHThresholds

    # The fake segmenter's probability is the toy stack's window, (value + 2) / 6.
    monkeypatch.setattr(fit, "segment_stack", lambda net, image, config, precision: image[:, 0].numpy())
    monkeypatch.setattr(fit, "classify", lambda model, stack, precision="auto": (
        SimpleNamespace(probabilities=np.ones((stack.n_slices, len(CLASSES)), np.float32)),
        np.full(len(CLASSES), 0.5, np.float32)))

    def sample(blood_peak, mimic_peak):
        p = np.zeros((4, 12, 12), np.float32)
        p[0, 1:4, 1:4], p[2, 6:9, 6:9] = blood_peak, mimic_peak
        targets = np.full((4, len(CLASSES)), np.nan)
        targets[:, 0] = [1, 0, 0, 0]
        return toy_sample(6 * p - 2, targets, np.full(len(CLASSES), np.nan))

    model = SimpleNamespace(config=TOY, thresholds=ICHThresholds(), segmenter=None)
    samples = [sample(b, m) for b, m in ((0.97, 0.6), (0.9, 0.7), (0.85, 0.8), (0.99, 0.55))]
    every_slice = np.ones(4 * len(samples))  # the classifier keeps every slice
    level, report = fit.calibrate_seed_probability(model, samples, every_slice)
    assert 0.8 < level < 0.85           # keeps every bleed, drops every mimic
    assert report["components_on_blood"] == 4 and report["components_off_blood"] == 4
    # Too few mimics to judge by: every component of the segmenter's mask counts.
    level, _ = fit.calibrate_seed_probability(model, samples[:2], every_slice[:8])
    assert level == TOY.segmenter.threshold
    # Training's calibration sets the level in the model's config, which its bundle saves.
    assert "seed_probability" not in fit.calibrate(model, samples)  # the config's level stays
    assert model.config.grow.seed_probability == TOY.grow.seed_probability
    report = fit.calibrate(model, samples, seed_level=True)
    assert model.config.grow.seed_probability == report["seed_probability"]
    assert 0.8 < report["seed_probability"] < 0.85


"""The faster ICH prediction steps give what the straightforward versions gave: Grad-CAM
weights from batched backward passes, the axis-aligned resampling in slabs and on the
non-zero box, slice-wise hole filling by labelling, thresholded maps mapped to the CT
grid, growth and component labelling in bounding boxes, the head's centre of mass from
marginal counts. Each reference below is the
earlier code (or scipy), run on small seeded volumes (<= 48 voxels a side).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lesion_core.baselines.masks import dilate_mm, fill_holes_slicewise, remove_small_components, sigma_voxels
from lesion_core.ich.cam import slice_weights
from lesion_core.ich.classifier import ICHSliceClassifier
from lesion_core.ich.config import SUBTYPES, GrowConfig
from lesion_core.ich.grow import grow_into_blood
from lesion_core.ich.model import ICHThresholds
from lesion_core.ich.predict import _near_threshold, label_components
from lesion_core.ich.preprocess import _centre_of_mass, intracranial_mask
from lesion_core.volume import Volume, _resample_axis_aligned, _source_axes


# ------------------------------------------------------------------------- Grad-CAM
def _per_slice_weights(model, pooled, c):
    """One backward pass per slice (the earlier Grad-CAM weights)."""
    with torch.enable_grad():
        x = pooled[None].detach().requires_grad_(True)
        logits = model.sequence_logits(x)[0]
        return torch.stack([torch.autograd.grad(logits[s, c], x, retain_graph=True)[0][0, s]
                            for s in range(logits.shape[0])])


@pytest.mark.parametrize("context", [True, False])
def test_batched_slice_weights_are_the_per_slice_gradients(context):
    torch.manual_seed(0)
    model = ICHSliceClassifier(1, 3, channels=(8, 16), strides=(2, 2), gru_hidden=8,
                               context=context).eval()
    pooled = torch.randn(11, 16)
    want = _per_slice_weights(model, pooled, 2)
    assert float(want.abs().max()) > 1e-3
    for copies in (4, 11, 64):  # chunks that split the slices, one chunk, more than enough
        with torch.enable_grad():
            got = slice_weights(model, pooled, 2, copies)
        assert got.shape == (11, 16)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------ resampling
def _unoptimised(monkeypatch, src, target_to_source, axes, shape, order, cval):
    """The same resampling in one slab and without skipping zeros (a fill of -0.0 turns
    the skipping off; it equals +0.0 as a value)."""
    import lesion_core.volume as volume_module

    with monkeypatch.context() as patch:
        patch.setattr(volume_module, "_SLAB_SAMPLES", 1 << 40)
        return _resample_axis_aligned(src, target_to_source, axes, shape, order,
                                      -0.0 if cval == 0 else cval)


def _random_grids(rng):
    """(source shape, source affine, target affine, target shape): permuted, flipped and
    scaled axis-aligned grids, shifted by fractions of a voxel, partly outside."""
    shape = tuple(int(n) for n in rng.integers(1, 20, 3))
    source = np.eye(4)
    source[:3, :3] = 0
    for axis, target in enumerate(rng.permutation(3)):
        source[target, axis] = rng.choice([-1, 1]) * rng.choice([0.5, 0.995394, 1.0, 2.0, 3.0])
    source[:3, 3] = rng.choice([0.0, 0.25, 0.5, 7.3], 3)
    target = np.diag([*rng.choice([0.4, 0.5, 1.0, 1.5], 3), 1.0])
    target[:3, 3] = source[:3, 3] + rng.choice([0.0, 0.5, -0.75, 1.0, -2.2], 3)
    out_shape = tuple(int(n) for n in rng.integers(1, 40, 3))
    return shape, source, target, out_shape


def test_slab_and_nonzero_box_resampling_give_the_same_values(monkeypatch):
    import lesion_core.volume as volume_module

    monkeypatch.setattr(volume_module, "_SLAB_SAMPLES", 64)  # many slabs on small grids
    rng = np.random.default_rng(11)
    for trial in range(150):
        shape, source, target, out_shape = _random_grids(rng)
        values = rng.normal(0.3, 1.0, shape).astype(np.float32)
        if trial % 2:  # sparse: zero outside a random box, a -0.0 and a NaN inside it
            keep = np.zeros(shape, bool)
            keep[tuple(slice(int(a), int(a) + int(b) + 1) for a, b in
                       zip(rng.integers(0, shape), rng.integers(0, 4, 3)))] = True
            values = np.where(keep, values, np.float32(0))
            if trial % 4 == 1:
                values[np.unravel_index(int(np.flatnonzero(keep)[-1]), shape)] = -0.0
            if trial % 8 == 3:
                values[np.unravel_index(int(np.flatnonzero(keep)[0]), shape)] = np.nan
        t = np.linalg.inv(source) @ target
        snapped = np.round(t)  # as resample_to_grid does
        t[np.abs(t - snapped) < 1e-9] = snapped[np.abs(t - snapped) < 1e-9]
        axes = _source_axes(t)
        for order in (0, 1):
            src = values if order == 1 else (np.nan_to_num(values) * 3).astype(np.int16)
            for cval in (0.0, -1.5):
                got = _resample_axis_aligned(src, t, axes, out_shape, order, cval)
                want = _unoptimised(monkeypatch, src, t, axes, out_shape, order, cval)
                assert got.dtype == want.dtype
                assert np.array_equal(got, want, equal_nan=order == 1), (trial, order, cval)
        # Through the Volume: a strided array, as the ICH stack passes it.
        volume = Volume(np.moveaxis(np.ascontiguousarray(np.moveaxis(values, 2, 0)), 0, 2), source)
        got = volume.resample_to_grid(target, out_shape, order=1, fill=0).array
        want = _unoptimised(monkeypatch, values, t, axes, out_shape, 1, 0.0)
        assert np.array_equal(got, want, equal_nan=True)


def test_near_threshold_keeps_the_thresholded_interpolation():
    rng = np.random.default_rng(5)
    zeroed = 0
    for trial in range(60):
        shape, source, target, out_shape = _random_grids(rng)
        smooth = ndimage.gaussian_filter(rng.random(shape), 1.0)
        values = (smooth / smooth.max()).astype(np.float32)
        for threshold in (0.5, 0.8, float(np.float32(values.max()))):
            kept = _near_threshold(values, threshold)
            zeroed += bool((kept == 0).any())
            want = Volume(values, source).resample_to_grid(target, out_shape, 1, fill=0).array
            got = Volume(kept, source).resample_to_grid(target, out_shape, 1, fill=0).array
            assert np.array_equal(got >= threshold, want >= threshold), (trial, threshold)
    assert zeroed > 60


# ---------------------------------------------------------------------- hole filling
def _skulls(seed: int, shape=(40, 44, 36)) -> np.ndarray:
    """Bone-like masks: nested shells with gaps (open at one end), specks and a bridge."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float64)
    centre = np.asarray(shape)[:, None, None, None] / 2 + rng.normal(0, 2, (3, 1, 1, 1))
    r = np.sqrt((((grid - centre) / np.array([1.0, 1.1, 0.9])[:, None, None, None]) ** 2).sum(0))
    mask = (np.abs(r - 15) < 1.5) | (np.abs(r - 7) < 1.0) | (rng.random(shape) < 0.01)
    mask[:, :, : int(rng.integers(3, 10))] &= rng.random() < 0.5  # a foramen: open or shut
    mask[rng.integers(0, shape[0]), :, :] = False  # a cut through the shells
    return mask


def test_intracranial_mask_is_slice_and_3d_filling_minus_bone():
    found = np.zeros(3, int)
    for seed in range(4):
        skull = _skulls(seed)
        hu = np.where(skull, 800.0, 30.0).astype(np.float32)
        for axis in range(3):
            per_slice = np.moveaxis(np.stack([ndimage.binary_fill_holes(s) for s in
                                              np.moveaxis(skull, axis, 0)]), 0, axis)
            want = (per_slice | ndimage.binary_fill_holes(skull)) & ~skull
            got = intracranial_mask(hu, 300.0, axis)
            assert np.array_equal(got, want), (seed, axis)
            assert np.array_equal(fill_holes_slicewise(skull, axis), per_slice)
            found[axis] += int(want.any())
    assert found.min() >= 2  # holes along every axis, in several skulls
    assert not fill_holes_slicewise(np.zeros((5, 6, 7), bool), 1).any()


# ---------------------------------------------------------------- growth, components
def _grow_whole(seeds, hu, spacing, intracranial, axial_axis, config):
    """Growth computed on the whole grid (as it was)."""
    sigma = sigma_voxels(config.smooth_sigma_mm, spacing)
    sigma[axial_axis] = 0.0
    smooth = ndimage.gaussian_filter(np.asarray(hu, np.float32), sigma)
    near_dense = dilate_mm(hu > config.dense_hu, config.dense_margin_mm, spacing)
    near_seed = dilate_mm(seeds, config.max_distance_mm, spacing)
    low, high = config.window_hu
    allowed = intracranial & ~near_dense & near_seed & (smooth >= low) & (smooth <= high)
    return ndimage.binary_propagation(seeds & allowed, mask=allowed) | seeds


def _bleed_ct(seed: int, shape=(48, 44, 40)):
    rng = np.random.default_rng(seed)
    hu = ndimage.gaussian_filter(rng.normal(35, 25, shape), 1.5).astype(np.float32)
    blood = ndimage.gaussian_filter(rng.random(shape), 2.0) > 0.54
    hu[blood] = 70.0  # blood-like patches
    hu[rng.random(shape) < 0.002] = 900.0  # calcifications
    seeds = np.zeros(shape, bool)
    inner = np.argwhere(blood[4:-4, 4:-4, 4:-4]) + 4
    for centre in inner[rng.integers(0, len(inner), int(rng.integers(1, 4)))]:
        seeds[tuple(slice(c - 1, c + 2) for c in centre)] = True
    return hu, seeds, ndimage.gaussian_filter(rng.random(shape), 3.0) > 0.45


@pytest.mark.parametrize("spacing, axis", [((0.7, 0.7, 1.0), 2), ((1.0, 0.5, 0.6), 0),
                                           ((5.0, 0.45, 0.45), 0), ((1.0, 1.0, 1.0), 1)])
def test_growth_in_the_seeds_box_is_growth_on_the_whole_grid(spacing, axis):
    configs = (GrowConfig(), GrowConfig(max_distance_mm=3.0, dense_margin_mm=4.0),
               GrowConfig(smooth_sigma_mm=2.5, window_hu=(40.0, 120.0)))
    grew = 0
    for seed in range(3):
        hu, seeds, intracranial = _bleed_ct(seed)
        for config in configs:
            want = _grow_whole(seeds, hu, spacing, intracranial, axis, config)
            got = grow_into_blood(seeds, hu, spacing, intracranial, axis, config)
            assert np.array_equal(got, want), (seed, config)
            grew += int(want.sum() > seeds.sum())
    assert grew >= 3  # most configurations grow something


def _label_whole(mask, slice_subtypes, slice_axis, thresholds, voxel_ml, spacing, min_ml):
    """Component labelling on the whole grid (as it was): label map and component rows."""
    mask = remove_small_components(mask, min_ml * 1000.0, spacing, 26)
    ids, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    out, rows = np.zeros(mask.shape, np.uint8), []
    for index, box in enumerate(ndimage.find_objects(ids), start=1):
        inside = ids[box] == index
        slices = box[slice_axis].start + np.flatnonzero(
            inside.any(axis=tuple(a for a in range(3) if a != slice_axis)))
        peak = slice_subtypes[slices].max(axis=0)
        allowed = peak >= np.asarray(thresholds.subtypes)
        k = int(np.argmax(np.where(allowed, peak, -1.0))) if allowed.any() else -1
        out[box][inside] = k + 1 if k >= 0 else 1
        rows.append((k + 1 if k >= 0 else 1, SUBTYPES[k] if k >= 0 else "unknown",
                     round(float(inside.sum()) * voxel_ml, 3), int(slices.min()), int(slices.max())))
    return out, rows


def test_components_labelled_in_the_mask_box_are_those_of_the_whole_grid():
    thresholds = ICHThresholds(slice=0.5, scan=0.5, subtypes=(0.3, 0.4, 0.5, 0.6, 0.7))
    for seed in range(6):
        rng = np.random.default_rng(seed)
        shape = (36, 40, 30)
        mask = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.56
        mask[:, :, : int(rng.integers(0, 12))] = False  # a box away from the edge
        axis = seed % 3
        subtypes = rng.random((shape[axis], 5)).astype(np.float32)
        for min_ml in (0.0, 0.004):
            want = _label_whole(mask, subtypes, axis, thresholds, 0.001, (1.0, 1.0, 1.0), min_ml)
            labels, components = label_components(mask, subtypes, axis, thresholds, 0.001,
                                                  (1.0, 1.0, 1.0), min_ml)
            assert len(want[1]) > 1 and np.array_equal(labels, want[0]), seed
            assert [(c.value, c.subtype, c.volume_ml, c.first_slice, c.last_slice)
                    for c in components] == want[1]
    empty, none = label_components(np.zeros((4, 5, 6), bool), np.zeros((6, 5)), 2, thresholds,
                                   0.001, (1.0, 1.0, 1.0), 0.01)
    assert not empty.any() and none == []


def test_centre_of_mass_from_marginals_is_scipys():
    rng = np.random.default_rng(3)
    for _ in range(10):
        shape = tuple(int(n) for n in rng.integers(2, 40, size=3))
        mask = rng.random(shape) < rng.uniform(0.01, 0.9)
        mask.flat[0] = True
        np.testing.assert_array_equal(_centre_of_mass(mask), ndimage.center_of_mass(mask))

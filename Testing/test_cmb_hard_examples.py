"""Hard-example sampling of the CMB stage 1 U-Net (lesion_core.cmb.hard_examples)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_cmb_pipeline import TINY, TINY_TRAIN, DarkSpotNet, _optim

from lesion_core.cmb.stage1 import (PatchSampler, TrainingVolume, hard_example_pools_of,
                                    train_stage1)
from lesion_core.training.augment import AcquisitionAugment

DARK, FAINT, FOOLING_MIMIC = (12, 12, 12), (28, 28, 28), (12, 28, 20)


def _volume() -> TrainingVolume:
    """A dark bleed the stand-in U-Net finds, a faint one it misses (0.05 darker than the
    tissue, under its 0.12 contrast), a dark mimic it fires on and a pale one it ignores."""
    rng = np.random.default_rng(0)
    image = rng.normal(1.0, 0.01, (40, 40, 40)).astype(np.float32)
    grid = np.indices(image.shape).transpose(1, 2, 3, 0)
    ball = lambda centre, r: np.linalg.norm(grid - centre, axis=-1) <= r  # noqa: E731
    cmb, mimics = ball(DARK, 2.0) | ball(FAINT, 1.0), ball(FOOLING_MIMIC, 2.0) | ball((28, 10, 30), 2.0)
    image[ball(DARK, 2.0)] = 0.15
    image[ball(FAINT, 1.0)] = 0.95
    image[ball(FOOLING_MIMIC, 2.0)] = 0.2
    return TrainingVolume(image, cmb, mimics, np.ones_like(cmb), np.eye(4))


def _drawn(pool, rng, n=2000) -> np.ndarray:
    return np.array([pool.draw(rng)[1] for _ in range(n)])


def _share_near(points: np.ndarray, centre, radius=2.5) -> float:
    return float((np.linalg.norm(points - np.asarray(centre), axis=1) <= radius).mean())


def test_pools_favour_the_missed_bleed_and_the_fooling_mimic():
    pools = hard_example_pools_of(DarkSpotNet(), [_volume()], TINY, floor=0.2, precision="fp32")
    peaks = pools.bleed_peaks[0]
    assert len(peaks) == 2 and max(peaks) > 0.9 and min(peaks) < 0.1
    rng = np.random.default_rng(0)
    # The faint bleed: 0.2/2 + 0.8 of the weight although it has 7 voxels to the dark
    # one's 33 (uniform voxel sampling would give it 0.17).
    assert _share_near(_drawn(pools.bleeds, rng), FAINT) == pytest.approx(0.9, abs=0.04)
    negatives = _drawn(pools.negatives, rng)
    assert _share_near(negatives, FOOLING_MIMIC) > 0.8
    # No negative lies on or next to a bleed.
    assert min(np.linalg.norm(negatives - np.asarray(c), axis=1).min() for c in (DARK, FAINT)) > 2.0


def test_sampler_with_pools_centres_on_hard_examples_and_is_reproducible():
    volume = _volume()
    pools = hard_example_pools_of(DarkSpotNet(), [volume], TINY, precision="fp32")
    config = replace(TINY_TRAIN, near_cmb_fraction=1.0, near_mimic_fraction=0.0, jitter_mm=0.0,
                     augment=AcquisitionAugment.none(), hard_examples=True)
    sampler = PatchSampler([volume], 24, config, pools=pools)
    image, target = sampler.draw(np.random.default_rng(3), 40)
    # Centred on a bleed voxel (voxel 12, or 11 after a flip), mostly the faint one's.
    core = (slice(None), 0) + (slice(11, 13),) * 3
    assert bool((target[core].flatten(1).amax(1) > 0).all())
    faint = (image[core].flatten(1).amin(1) > 0.5).float().mean()
    assert float(faint) > 0.7
    again = sampler.draw(np.random.default_rng(3), 40)
    assert bool((again[0] == image).all())


def test_hard_example_training_needs_a_starting_network_and_trains_from_one():
    volume = _volume()
    hard = replace(TINY_TRAIN, hard_examples=True, optim=_optim(3, 2, lr=1e-3))
    with pytest.raises(ValueError, match="starting U-Net"):
        train_stage1([volume], TINY, hard)
    from lesion_core.cmb.stage1 import build_stage1

    start = build_stage1(TINY)
    net, run = train_stage1([volume], TINY, hard, init=start)
    assert net is start and run.steps == 3 and np.isfinite(run.history["loss"]).all()


def test_patch_past_the_edge_is_zero_not_wrapped():
    from lesion_core.cmb.stage1 import _patch

    array = np.ones((40, 40, 40), np.float32)
    assert not _patch(array, np.array([10, -13, -3]), 24).any()
    assert not _patch(array, np.array([10, 60, 20]), 24).any()
    part = _patch(array, np.array([20, -5, 20]), 24)
    assert part.sum() == 24 * 7 * 24  # voxels 0-6 of the second axis lie inside

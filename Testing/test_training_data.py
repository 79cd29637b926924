"""Training data plumbing: the acquisition augmenter and the on-disk array cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesion_core.training.augment import AcquisitionAugment, Augmenter, thick_slices
from lesion_core.training.cache import cache_key, cached_arrays, parallel_map


def _phantom() -> torch.Tensor:
    image = torch.ones(1, 24, 24, 24)
    image[:, 4:20, 4:20, 4:20] = 2.0          # "white matter"
    image[:, 10:14, 10:14, 10:14] = 3.0       # a "lesion" brighter than it
    return image


def test_augmenter_is_deterministic_and_keeps_lesions_brighter():
    augmenter = Augmenter(AcquisitionAugment(bias_p=1, gamma_p=1, histogram_p=1, gibbs_p=1,
                                             lowres_p=1, thick_p=1, noise_p=1), spacing_mm=1.0)
    image = _phantom()
    for seed in range(8):
        a = augmenter(image, np.random.default_rng(seed))
        b = augmenter(image, np.random.default_rng(seed))
        assert type(a) is torch.Tensor and a.shape == image.shape
        assert torch.equal(a, b)
        lesion = a[0, 11:13, 11:13, 11:13].mean()
        white = a[0, 11:13, 11:13, 15:18].mean()  # white matter beside it
        assert lesion > white
    assert not torch.equal(augmenter(image, np.random.default_rng(0)),
                           augmenter(image, np.random.default_rng(1)))


def test_no_augmentation_is_the_identity_and_2d_works():
    image = _phantom()
    assert torch.equal(Augmenter(AcquisitionAugment.none())(image, np.random.default_rng(0)), image)
    flat = Augmenter(AcquisitionAugment(noise_p=1, bias_p=1, lowres_p=1))(
        image[:, 0], np.random.default_rng(0))
    assert flat.shape == (1, 24, 24)


def test_thick_slices_blur_one_axis_only():
    image = _phantom()
    thick = thick_slices(image, axis=2, thickness_vox=5.0)
    assert torch.allclose(thick[0, :, :, 12], thick[0, :, :, 12])
    # A constant stays constant; along the slice axis the lesion edge is smeared...
    assert torch.allclose(thick_slices(torch.ones(1, 8, 8, 8), 0, 3.0), torch.ones(1, 8, 8, 8))
    assert 2.0 < float(thick[0, 12, 12, 9]) < 3.0
    # ...while in-plane, within a slice, the edge stays sharp.
    assert float(thick[0, 12, 9, 12]) == pytest.approx(float(thick[0, 12, 9, 12]))
    assert float(thick[0, 12, 8, 12]) < float(thick[0, 12, 12, 12])


def test_cache_computes_once_and_keys_on_file_and_settings(tmp_path):
    source = tmp_path / "image.nii.gz"
    source.write_bytes(b"v1")
    calls = []

    def compute():
        calls.append(1)
        return {"image": np.arange(6, dtype=np.float32).reshape(2, 3), "spacing": 3.0}

    first = cached_arrays(tmp_path / "cache", [source, {"spacing": 3.0}], compute)
    second = cached_arrays(tmp_path / "cache", [source, {"spacing": 3.0}], compute)
    assert len(calls) == 1 and np.array_equal(first["image"], second["image"])
    assert float(second["spacing"]) == 3.0
    cached_arrays(tmp_path / "cache", [source, {"spacing": 2.0}], compute)  # other settings
    assert len(calls) == 2
    source.write_bytes(b"version 2")  # another file: another key
    assert cache_key(source, {"spacing": 3.0}) != cache_key(tmp_path / "other", {"spacing": 3.0})
    cached_arrays(tmp_path / "cache", [source, {"spacing": 3.0}], compute)
    assert len(calls) == 3
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_parallel_map_keeps_order():
    assert parallel_map(abs, [-3, 2, -1], workers=2) == [3, 2, 1]

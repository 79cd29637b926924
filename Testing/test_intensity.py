"""Intensity helpers shared by the baselines and the models (lesion_core.intensity)."""

from __future__ import annotations

import numpy as np

from lesion_core.intensity import finite_float32


def test_finite_float32_is_nan_to_num_in_float32():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 7, 5))
    finite = finite_float32(values)
    assert finite.dtype == np.float32
    np.testing.assert_array_equal(finite, values.astype(np.float32))
    values[1, 2, 3], values[0, 0, 0], values[5, 6, 4] = np.nan, np.inf, -np.inf
    np.testing.assert_array_equal(finite_float32(values),
                                  np.nan_to_num(values.astype(np.float32)))
    assert np.isnan(values[1, 2, 3])  # the input is left as it was

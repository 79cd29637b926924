"""The bleed-visibility measure of bench/cmb_bleed_visibility.py: a dark bleed stands out
from the bleed-free places around it, a faint one does not, and the summary's recall
counts only the bleeds that stand out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def visibility(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import cmb_bleed_visibility
    return cmb_bleed_visibility


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def test_a_dark_bleed_stands_out_and_a_faint_one_does_not(visibility):
    rng = np.random.default_rng(0)
    shape = (48, 48, 48)
    image = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    dark, faint = _ball(shape, (14, 24, 24), 1.5), _ball(shape, (34, 24, 24), 1.5)
    image[dark] *= 0.3          # 14 noise standard deviations under the tissue
    image[faint] *= 0.97        # well inside the noise
    labels[dark], labels[faint] = 1, 2
    rows = visibility.bleed_rows(image, labels, np.zeros(shape, np.uint8))
    assert rows[1]["darkness"] > 10
    assert rows[2]["darkness"] < 4
    free = [v for r in rows.values() for v in r["bleed_free"]]
    assert len(free) >= 6 and max(free) < 5   # noise alone: a few standard deviations at most
    assert rows[2]["darkness"] <= max(free) + 1.5


def test_summary_counts_recall_over_the_bleeds_that_stand_out(visibility):
    def bleed(darkness, found, at_threshold):
        return {"subject": "s", "id": 1, "diameter_mm": 2.0, "core_signal": 0.2, "slice_mm": 4.0,
                "darkness": darkness, "bleed_free": [0.0, 0.5, 1.0, 1.5, 2.0],
                "found_lowest": found, "found_at_threshold": at_threshold}
    bleeds = [bleed(8.0, True, True), bleed(6.0, True, False), bleed(1.0, False, False),
              bleed(0.5, True, False)]
    report = visibility.summary(bleeds, 0.5)
    assert report["all"] == {"bleeds": 4, "recall_lowest": 0.75, "recall_at_threshold": 0.25}
    assert report["darker_than_p99"] == {"bleeds": 2, "recall_lowest": 1.0, "recall_at_threshold": 0.5}
    assert [m["darkness"] for m in report["missed_lowest"]] == [1.0]

"""Realism of the synthetic cohort, measured (lesion_core.synth.realism).

Fast versions of the measurements in docs/synthetic_cohort.md: coarse subject grids, few
subjects. The real T1's brain mask and peak ratios come from Testing/Data/real (made by
scripts/measure_real_t1.py, whose template registration takes ~30 s); the histogram
peaks of the real T1 are recomputed here from that mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesion_core.synth import SubjectConfig, make_subject
from lesion_core.synth.acquisition import AcquisitionConfig
from lesion_core.synth.anatomy import AnatomyConfig
from lesion_core.synth.realism import (fit_gaussian_mixture, histogram_peaks, synthetic_brain_mask,
                                       tissue_contrast_table)

REAL = Path(__file__).parent / "Data" / "real"
PEAKS_JSON = REAL / "t1_deep-T1-WMH_example_peaks.json"
COARSE = AnatomyConfig(spacing_mm=3.0)


def test_histogram_peaks_recover_a_three_gaussian_mixture():
    rng = np.random.default_rng(0)
    means, sds, counts = (40.0, 120.0, 180.0), (12.0, 15.0, 11.0), (15000, 50000, 35000)
    values = np.concatenate([rng.normal(m, s, n) for m, s, n in zip(means, sds, counts)])
    rng.shuffle(values)
    volume = values.reshape(100, 100, 10)
    peaks = histogram_peaks(volume, np.ones(volume.shape, bool))
    for name, truth in zip(("csf", "gm", "wm"), means):
        assert peaks["peaks"][name] == pytest.approx(truth, rel=0.03)
    assert peaks["gm_wm"] == pytest.approx(120 / 180, rel=0.03)
    assert peaks["normalised"]["wm"] == 1.0


def test_gaussian_mixture_rejects_constant_values():
    with pytest.raises(ValueError):
        fit_gaussian_mixture(np.full(1000, 3.0))


def test_ct_tissue_densities_lie_in_literature_ranges():
    acq = {"CT": AcquisitionConfig(in_plane_mm=2.0, slice_thickness_mm=5.0)}
    subject = make_subject(11, SubjectConfig(kind="ich", anatomy=COARSE, acquisition=acq,
                                             ich_probability=1.0))
    ratios = tissue_contrast_table(subject)["CT"]["ratios"]
    assert 30 <= ratios["gm_hu"] <= 48
    assert 18 <= ratios["wm_hu"] <= 33
    assert -5 <= ratios["csf_hu"] <= 18
    assert ratios["skull_hu"] > 600
    assert ratios["gm_hu"] > ratios["wm_hu"] > ratios["csf_hu"]
    if ratios.get("blood_hu") is not None:
        assert 45 <= ratios["blood_hu"] <= 95


def test_flair_wmh_are_brighter_than_normal_white_matter():
    pytest.importorskip("lesion_core.synth.wmh")
    acq = {"FLAIR": AcquisitionConfig(in_plane_mm=1.5, slice_thickness_mm=1.5),
           "T1": AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=3.0)}
    subject = make_subject(7, SubjectConfig(kind="wmh", severity=0.7, acquisition=acq,
                                            anatomy=AnatomyConfig(spacing_mm=1.5)))
    table = tissue_contrast_table(subject)
    assert table["FLAIR"]["ratios"]["wmh/nawm"] > 1.3
    assert table["FLAIR"]["ratios"]["gm/wm"] > 1.0       # FLAIR: grey brighter than white
    assert table["T1"]["ratios"]["wm/gm"] > 1.2           # T1: white brighter than grey
    assert table["T1"]["ratios"]["wmh/nawm"] < 0.95       # WMH mildly hypointense on T1


@pytest.fixture(scope="module")
def real_t1_peaks() -> dict:
    if not PEAKS_JSON.exists():
        pytest.skip("real T1 peaks missing: run scripts/measure_real_t1.py")
    return json.loads(PEAKS_JSON.read_text())


def test_real_t1_peaks_match_the_recorded_measurement(real_t1_path, real_t1_peaks):
    from lesion_core.io import read_volume

    image = read_volume(real_t1_path)
    mask = read_volume(REAL / real_t1_peaks["brain_mask"]["file"]).array > 0
    assert 1000 < mask.sum() * image.voxel_volume_ml < 1800      # mL: a plausible brain
    peaks = histogram_peaks(image, mask)
    assert peaks["gm_wm"] == pytest.approx(real_t1_peaks["gm_wm"], rel=0.01)
    assert peaks["csf_wm"] == pytest.approx(real_t1_peaks["csf_wm"], rel=0.01)


def test_synthetic_t1_histogram_matches_the_real_t1(real_t1_peaks):
    """GM/WM and CSF/WM peak ratios within 10 % of the real T1's (mean of 3 subjects).

    The synthetic T1 is acquired at the real image's 1.75 mm, so that partial volume is
    alike; the subject grid is 2 mm (at 3 mm the template's partial volume is coarser than
    any real scan's)."""
    acq = {"T1": AcquisitionConfig(in_plane_mm=1.75, slice_thickness_mm=1.75),
           "FLAIR": AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=3.0)}
    ratios = []
    for seed in range(3):
        subject = make_subject(seed, SubjectConfig(kind="wmh", severity=0.0, acquisition=acq,
                                                   anatomy=AnatomyConfig(spacing_mm=2.0)))
        peaks = histogram_peaks(subject.images["T1"], synthetic_brain_mask(subject, "T1"))
        ratios.append((peaks["gm_wm"], peaks["csf_wm"]))
    gm_wm, csf_wm = np.mean(ratios, axis=0)
    assert gm_wm == pytest.approx(real_t1_peaks["gm_wm"], rel=0.10)
    assert csf_wm == pytest.approx(real_t1_peaks["csf_wm"], rel=0.10)

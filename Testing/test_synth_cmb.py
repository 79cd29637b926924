"""Synthetic microbleeds (CMBs), their mimics and the MARS location rules.

Subjects use a 2 mm anatomy grid so the whole file runs in well under a minute (the MNI
template is built once per process).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lesion_core.atlas.mars import cmb_location
from lesion_core.synth.anatomy import AnatomyConfig, make_anatomy
from lesion_core.synth.cmb import (DIAMETER_RANGE_MM, MIMIC_CODES, MIN_GAP_MM, draw_cmb_count,
                                   insert_cmbs)

SPACING = AnatomyConfig(spacing_mm=2.0)


@pytest.fixture(scope="module")
def anatomy():
    return make_anatomy(11, SPACING)


@pytest.fixture(scope="module")
def twelve(anatomy):
    return insert_cmbs(anatomy, np.random.default_rng(4), 12)


@pytest.mark.parametrize("mni, category, region", [
    ((0, -30, -40), "infratentorial", "brainstem"),
    ((20, -65, -30), "infratentorial", "cerebellum"),
    ((20, 5, 5), "deep", "basal_ganglia"),
    ((-12, -18, 8), "deep", "thalamus"),
    ((0, 10, 20), "deep", "corpus_callosum"),
    ((40, -60, 40), "lobar", "parietal"),
    ((40, 30, 30), "lobar", "frontal"),
    ((-50, -20, -20), "lobar", "temporal"),
    ((10, -90, 10), "lobar", "occipital"),
    ((200, 0, 0), "outside", "outside"),
])
def test_location_rules(mni, category, region):
    assert cmb_location(mni) == (category, region)


def test_no_cmbs_gives_empty_map(anatomy):
    insertion = insert_cmbs(anatomy, np.random.default_rng(0), 0)
    assert not insertion.labels["cmb"].any()
    assert insertion.targets["cmb_count"] == 0 and insertion.targets["cmbs"] == []
    assert insertion.labels["mimics"].any()  # mimics are there without any CMB


def test_twelve_cmbs_one_component_each(anatomy, twelve):
    label = twelve.labels["cmb"]
    assert label.dtype == np.int16 and label.shape == anatomy.grid.shape
    assert sorted(np.unique(label[label > 0])) == list(range(1, 13))
    assert anatomy.brain[label > 0].all()
    cmbs = twelve.targets["cmbs"]
    assert twelve.targets["cmb_count"] == len(cmbs) == 12
    centres = np.array([c["centre_subject_ras"] for c in cmbs])
    radii = np.array([c["diameter_mm"] for c in cmbs]) / 2
    assert np.all((2 * radii >= DIAMETER_RANGE_MM[0]) & (2 * radii <= DIAMETER_RANGE_MM[1]))
    for a in range(12):
        for b in range(a + 1, 12):
            assert np.linalg.norm(centres[a] - centres[b]) >= radii[a] + radii[b] + MIN_GAP_MM - 0.02
    for c in cmbs:  # the label holds the centre, and the location is the classifier's
        ijk = np.round(anatomy.grid.ras_to_voxel(c["centre_subject_ras"])).astype(int)
        assert label[tuple(ijk)] == c["id"]
        assert cmb_location(c["centre_mni"]) == (c["location"], c["region"])
    json.dumps(twelve.targets)  # plain JSON


def test_mimics_present_and_disjoint(twelve):
    mimics, cmb = twelve.labels["mimics"], twelve.labels["cmb"]
    assert mimics.dtype == np.uint8
    assert set(np.unique(mimics)) <= {0, *MIMIC_CODES.values()}
    assert (mimics == MIMIC_CODES["vessel"]).any() and (mimics == MIMIC_CODES["air_bone"]).any()
    assert not np.any((mimics > 0) & (cmb > 0))
    kinds = {m["type"] for m in twelve.targets["mimics"]}
    assert {"vessel", "air_bone"} <= kinds
    subtypes = {m.get("subtype") for m in twelve.targets["mimics"]}
    assert {"medullary_vein", "cortical_vein", "internal_cerebral_vein"} <= subtypes
    vessels = [m for m in twelve.targets["mimics"] if m["type"] == "vessel"]
    assert all(0.5 <= v["radius_mm"] <= 1.5 for v in vessels)
    layers = {layer.name: layer for layer in twelve.layers}
    assert set(layers) == {"cmb", "vessel", "calcification", "air_bone"}
    assert 200 <= layers["calcification"].values["CT"] <= 400
    assert all(layer.relative["SWI"] for layer in layers.values())


def test_calcifications_are_flagged(anatomy):
    for seed in range(6):
        insertion = insert_cmbs(anatomy, np.random.default_rng(seed), 2)
        calcs = [m for m in insertion.targets["mimics"] if m["type"] == "calcification"]
        if calcs:
            assert all(m["calcification"] for m in calcs)
            assert (insertion.labels["mimics"] == MIMIC_CODES["calcification"]).any()
            return
    pytest.fail("no calcification in six subjects")


def test_reproducible(anatomy, twelve):
    again = insert_cmbs(anatomy, np.random.default_rng(4), 12)
    assert again.targets == twelve.targets
    assert np.array_equal(again.labels["cmb"], twelve.labels["cmb"])
    assert np.array_equal(again.layers[-1].fraction, twelve.layers[-1].fraction)


def test_random_counts_are_zero_inflated():
    rng = np.random.default_rng(0)
    counts = np.array([draw_cmb_count(rng) for _ in range(2000)])
    assert counts.min() == 0 and counts.max() <= 30
    assert 0.15 < np.mean(counts == 0) < 0.35
    assert np.median(counts) <= 3 and np.mean(counts >= 10) > 0.05


def test_cmbs_are_dark_on_the_acquired_swi():
    from lesion_core.synth.acquisition import AcquisitionConfig
    from lesion_core.synth.cohort import SubjectConfig, make_subject

    subject = make_subject(3, SubjectConfig(kind="cmb", lesion_count=8, anatomy=SPACING, swi_variant="SWI",
                                            acquisition={"SWI": AcquisitionConfig(in_plane_mm=1.5,
                                                                                  slice_thickness_mm=1.5)}))
    image = subject.images["SWI"].array
    label = subject.labels["SWI"]["cmb"].array
    ids = np.unique(label[label > 0])
    assert len(ids) >= 7 and subject.targets["cmb_count"] == 8
    bright = image > 0.3 * np.percentile(image, 99)
    ratios = []
    for ident in ids:
        voxels = np.argwhere(label == ident)
        centre = np.round(voxels.mean(0)).astype(int)
        box = tuple(slice(max(c - 7, 0), c + 8) for c in centre)  # ~21 mm cube
        local = image[box][bright[box] & (label[box] == 0)]
        ratios.append(image[label == ident].mean() / np.median(local))
    assert np.median(ratios) < 0.7, ratios
    assert max(ratios) < 0.85, ratios  # even 2 mm CMBs on this coarse grid

"""The ARWMC atlas, the ARWMC / Fazekas rating rules and the synthetic WMH insertion.

Rating rules are checked on hand-made masks on small 1 mm and 3 mm grids; the insertion on
coarse (2-3 mm) synthetic subjects so that the whole file runs in well under a minute.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lesion_core.atlas.arwmc import LABELS, REGIONS, arwmc_atlas_mni
from lesion_core.atlas.template import load_template
from lesion_core.synth.anatomy import AnatomyConfig, make_anatomy
from lesion_core.synth.ratings import InsertedLesions, rate_arwmc, rate_fazekas
from lesion_core.synth.wmh import insert_wmh


@pytest.fixture(scope="module")
def anatomy3():
    return make_anatomy(11, AnatomyConfig(spacing_mm=3.0))


@pytest.fixture(scope="module")
def anatomy2():
    return make_anatomy(5, AnatomyConfig(spacing_mm=2.0))


def _ball(shape, centre, radius_mm, spacing=1.0):
    """Binary ball (voxel centres within ``radius_mm`` of ``centre``, voxel indices)."""
    grid = np.indices(shape).astype(float)
    r2 = sum(((g - c) * spacing) ** 2 for g, c in zip(grid, centre))
    return r2 <= radius_mm ** 2 + 1e-9


# ------------------------------------------------------------------------------- atlas
def test_atlas_covers_brain_white_matter_and_is_symmetric():
    labels, affine, names = arwmc_atlas_mni()
    template = load_template()
    assert names == REGIONS and len(REGIONS) == 10
    assert labels.shape == template.shape and labels.dtype == np.uint8
    np.testing.assert_array_equal(affine, template.affine)
    wm = (template.maps["wm"] > 0.5) & template.brain
    assert np.all(labels[wm] > 0)
    assert np.all(labels[~template.brain] == 0)
    assert set(np.unique(labels)) == set(range(11))
    for region in ("frontal", "parieto_occipital", "temporal", "infratentorial", "basal_ganglia"):
        left = np.count_nonzero(labels == LABELS[f"{region}_left"])
        right = np.count_nonzero(labels == LABELS[f"{region}_right"])
        assert abs(left - right) <= 0.05 * max(left, right), region
    # Sides follow MNI x: every left label lies at x <= 0.
    x = affine[0, 0] * np.arange(labels.shape[0]) + affine[0, 3]
    left_labels = np.isin(labels, [LABELS[n] for n in REGIONS if n.endswith("_left")])
    assert x[np.nonzero(left_labels.any(axis=(1, 2)))[0]].max() <= 0
    # Plausible anatomy: a frontal pole point is frontal, the pons infratentorial, the
    # left putamen basal ganglia, the left superior temporal gyrus temporal.
    inverse = np.linalg.inv(affine)
    for point, name in [((-20, 50, 10), "frontal_left"), ((4, -28, -32), "infratentorial_right"),
                        ((-24, 2, 2), "basal_ganglia_left"), ((-55, -20, -5), "temporal_left"),
                        ((30, -70, 25), "parieto_occipital_right")]:
        ijk = np.round(inverse[:3, :3] @ point + inverse[:3, 3]).astype(int)
        assert labels[tuple(ijk)] == LABELS[name], (point, name)


def test_atlas_reaches_every_subject_white_matter_voxel(anatomy3):
    labels, affine, _ = arwmc_atlas_mni()
    regions = anatomy3.sample_mni_map(labels, affine, order=0)
    wm = (anatomy3.tissues["wm"] > 0.5) & anatomy3.brain
    assert np.mean(regions[wm] > 0) > 0.99


# ------------------------------------------------------------------------ rating rules
SHAPE = (60, 40, 40)


def _regions():
    """Frontal-left on i < 30, basal-ganglia-left on i >= 30 (1 mm grid)."""
    regions = np.full(SHAPE, LABELS["frontal_left"], np.uint8)
    regions[30:] = LABELS["basal_ganglia_left"]
    return regions


def test_rating_no_lesion_is_zero():
    result = rate_arwmc(np.zeros(SHAPE, bool), _regions(), 1.0)
    assert result["arwmc_total"] == 0 and set(result["arwmc"]) == set(REGIONS)
    assert rate_fazekas(np.zeros(SHAPE, bool), np.zeros(SHAPE, bool), 1.0) == \
        {"fazekas_periventricular": 0, "fazekas_deep": 0}


def test_rating_focal_lesion_size_threshold():
    six = _ball(SHAPE, (15, 20, 20), 3.0)
    three = _ball(SHAPE, (15, 20, 20), 1.5)
    assert rate_arwmc(six, _regions(), 1.0)["arwmc"]["frontal_left"] == 1
    assert rate_arwmc(three, _regions(), 1.0)["arwmc"]["frontal_left"] == 0
    # Two separate focal lesions are still "focal" (1) in a white-matter region.
    two = six | _ball(SHAPE, (15, 8, 8), 3.0)
    assert rate_arwmc(two, _regions(), 1.0)["arwmc"]["frontal_left"] == 1


def test_rating_uses_the_inserted_size_on_a_coarse_grid():
    # A 4 mm lesion that fills 2 voxels on a 3 mm grid measures 6 mm; the inserted size
    # (< 5 mm) decides. A 6 mm lesion that survives as 1 voxel still counts.
    regions = np.full((20, 20, 20), LABELS["frontal_left"], np.uint8)
    mask = np.zeros(regions.shape, bool)
    mask[5, 5, 5] = mask[6, 5, 5] = True
    ids = mask.astype(np.int32)
    info = InsertedLesions(ids, [{"id": 1, "n_parts": 1, "diameter_mm": 4.0, "region": 1}])
    assert rate_arwmc(mask, regions, 3.0)["arwmc"]["frontal_left"] == 1
    assert rate_arwmc(mask, regions, 3.0, info)["arwmc"]["frontal_left"] == 0
    single = np.zeros(regions.shape, bool)
    single[10, 10, 10] = True
    info = InsertedLesions(single.astype(np.int32),
                           [{"id": 1, "n_parts": 1, "diameter_mm": 6.0, "region": 1}])
    assert rate_arwmc(single, regions, 3.0)["arwmc"]["frontal_left"] == 0
    assert rate_arwmc(single, regions, 3.0, info)["arwmc"]["frontal_left"] == 1


def test_rating_merged_lesions_are_beginning_confluence():
    a, b = _ball(SHAPE, (15, 17, 20), 3.0), _ball(SHAPE, (15, 23, 20), 3.0)
    mask = a | b
    assert ndimage.label(mask, np.ones((3, 3, 3)))[1] == 1
    ids = np.where(a, 1, np.where(b, 2, 0)).astype(np.int32)
    info = InsertedLesions(ids, [{"id": 1, "n_parts": 1, "diameter_mm": 6.0, "region": 1},
                                 {"id": 2, "n_parts": 1, "diameter_mm": 6.0, "region": 1}])
    assert rate_arwmc(mask, _regions(), 1.0, info)["arwmc"]["frontal_left"] == 2
    # Without merge information a small component stays focal, a large one is confluent.
    assert rate_arwmc(mask, _regions(), 1.0)["arwmc"]["frontal_left"] == 1
    big = _ball(SHAPE, (15, 20, 20), 7.0)  # 1.4 mL > 1.0 mL, 1.3 % of the region
    assert rate_arwmc(big, _regions(), 1.0)["arwmc"]["frontal_left"] == 2


def test_rating_filled_region_is_diffuse():
    regions = _regions()
    mask = regions == LABELS["frontal_left"]
    result = rate_arwmc(mask, regions, 1.0, wm_mask=np.ones(SHAPE, bool))
    assert result["arwmc"]["frontal_left"] == 3
    # 13 % of the region's white matter is diffuse as well; a slab of 7 % (3.2 mL) is not.
    slab = np.zeros(SHAPE, bool)
    slab[:4] = True
    assert rate_arwmc(slab, regions, 1.0)["arwmc"]["frontal_left"] == 3
    slab[:] = False
    slab[:2] = True
    assert rate_arwmc(slab, regions, 1.0)["arwmc"]["frontal_left"] == 2


def test_rating_basal_ganglia_rules():
    regions = _regions()
    one = _ball(SHAPE, (45, 20, 20), 3.0)
    two = one | _ball(SHAPE, (45, 8, 8), 3.0)
    assert rate_arwmc(one, regions, 1.0)["arwmc"]["basal_ganglia_left"] == 1
    assert rate_arwmc(two, regions, 1.0)["arwmc"]["basal_ganglia_left"] == 2
    assert rate_arwmc(_ball(SHAPE, (45, 20, 20), 1.5), regions, 1.0)["arwmc"]["basal_ganglia_left"] == 0
    a, b = _ball(SHAPE, (45, 17, 20), 3.0), _ball(SHAPE, (45, 23, 20), 3.0)
    ids = np.where(a, 1, np.where(b, 2, 0)).astype(np.int32)
    info = InsertedLesions(ids, [{"id": i, "n_parts": 1, "diameter_mm": 6.0,
                                  "region": LABELS["basal_ganglia_left"]} for i in (1, 2)])
    result = rate_arwmc(a | b, regions, 1.0, info)
    assert result["arwmc"]["basal_ganglia_left"] == 3
    assert result["arwmc_total"] == sum(result["arwmc"].values()) == 3


def test_fazekas_rules():
    ventricles = np.zeros(SHAPE, bool)
    ventricles[20:40, 15:25, 15:25] = True
    distance = ndimage.distance_transform_edt(~ventricles)
    deep_zero = {"fazekas_deep": 0}
    for thickness, score in ((2, 1), (8, 2), (14, 3)):
        lining = (distance > 0) & (distance <= thickness)
        assert rate_fazekas(lining, ventricles, 1.0) == {"fazekas_periventricular": score, **deep_zero}
    punctate = _ball(SHAPE, (5, 5, 5), 2.0)
    assert rate_fazekas(punctate, ventricles, 1.0)["fazekas_deep"] == 1
    large = np.zeros(SHAPE, bool)
    large[2:26, 2:8, 30:36] = True  # 24 mm long, far from the ventricles
    assert rate_fazekas(large, ventricles, 1.0) == {"fazekas_periventricular": 0, "fazekas_deep": 3}


# --------------------------------------------------------------------------- insertion
def test_severity_zero_inserts_nothing(anatomy3):
    insertion = insert_wmh(anatomy3, np.random.default_rng(0), 0.0)
    t = insertion.targets
    assert t["arwmc_total"] == 0 and t["wmh_volume_ml"] == 0 and t["lesions"] == []
    assert t["fazekas_periventricular"] == 0 and t["fazekas_deep"] == 0
    assert insertion.labels["wmh"].sum() == 0 and insertion.layers[0].fraction.max() == 0


def test_high_severity_lesions_in_white_matter(anatomy2):
    insertion = insert_wmh(anatomy2, np.random.default_rng(3), 1.0)
    t = insertion.targets
    json.dumps(t)  # plain Python types only
    assert t["arwmc_total"] >= 10
    assert t["arwmc_total"] == sum(t["arwmc"].values()) and set(t["arwmc"]) == set(REGIONS)
    assert all(0 <= v <= 3 for v in t["arwmc"].values())
    assert t["fazekas_periventricular"] >= 2 and t["fazekas_deep"] >= 2
    layer = insertion.layers[0]
    assert layer.name == "wmh" and 1.6 <= layer.values["FLAIR"] <= 2.0 and 0.7 <= layer.values["T1"] <= 0.8
    mask = insertion.labels["wmh"]
    assert mask.dtype == np.uint8 and insertion.labels["arwmc_regions"].dtype == np.uint8
    np.testing.assert_array_equal(mask, layer.fraction > 0.5)
    assert np.all(anatomy2.tissues["wm"][mask > 0] > 0.3)
    assert t["wmh_volume_ml"] == pytest.approx(mask.sum() * 8 / 1000, abs=1e-3)
    kinds = {lesion["type"] for lesion in t["lesions"]}
    assert {"cap_frontal", "cap_occipital", "band", "punctate", "focal", "confluent"} <= kinds
    for lesion in t["lesions"]:
        assert len(lesion["centre_mni"]) == 3 and lesion["region"] in REGIONS + ("none",)


def test_insertion_is_reproducible(anatomy3):
    a = insert_wmh(anatomy3, np.random.default_rng(42), None)
    b = insert_wmh(anatomy3, np.random.default_rng(42), None)
    assert a.targets == b.targets
    np.testing.assert_array_equal(a.layers[0].fraction, b.layers[0].fraction)
    np.testing.assert_array_equal(a.labels["wmh"], b.labels["wmh"])


def test_cohort_spans_low_and_high_totals(anatomy3, anatomy2):
    totals = []
    for seed in range(12):
        anatomy = anatomy3 if seed % 2 else anatomy2
        t = insert_wmh(anatomy, np.random.default_rng(100 + seed), None).targets
        assert t["arwmc_total"] == sum(t["arwmc"].values())
        totals.append(t["arwmc_total"])
    assert min(totals) <= 2 and max(totals) >= 10 and len(set(totals)) >= 5, totals


def test_subject_images_show_the_lesions():
    from lesion_core.synth.cohort import SubjectConfig, make_subject

    subject = make_subject(2, SubjectConfig(kind="wmh", anatomy=AnatomyConfig(spacing_mm=3.0),
                                            severity=0.8))
    anatomy = subject.anatomy
    wm = anatomy.grid.with_array(anatomy.tissues["wm"])
    ratios = {}
    for name in ("FLAIR", "T1"):
        image = subject.images[name]
        lesion = subject.labels[name]["wmh"].array > 0
        normal = wm.resample_to_grid(image.affine, image.shape, order=1).array > 0.9
        normal &= ~ndimage.binary_dilation(lesion, iterations=2)
        assert lesion.sum() > 20 and normal.sum() > 1000
        ratios[name] = float(image.array[lesion].mean() / image.array[normal].mean())
    assert ratios["FLAIR"] > 1.3, ratios
    assert ratios["T1"] < 0.95, ratios
    assert subject.targets["arwmc_total"] > 0 and "arwmc_regions" in subject.labels["FLAIR"]

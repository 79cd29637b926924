"""Lesion mimics of the synthetic cohort (synth/confounders.py) and the subacute / small
bleeds of synth/ich.py.

Coarse subjects (2.5 mm grids, 2.5 mm acquisitions) keep the file well under a minute.
Distances are in mm, CT values in HU, MR values relative to normal white matter.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lesion_core.synth import confounders, ich
from lesion_core.synth.acquisition import AcquisitionConfig
from lesion_core.synth.anatomy import AnatomyConfig, make_anatomy
from lesion_core.synth.cohort import SubjectConfig, make_subject
from lesion_core.synth.contrast import LesionLayer, render
from lesion_core.synth.lesions import ball

SPACING = 2.5
ANATOMY = AnatomyConfig(spacing_mm=SPACING, age_years=85.0)
ACQ = AcquisitionConfig(in_plane_mm=2.5, slice_thickness_mm=2.5, orientation="RAS",
                        bias_strength=0.05, noise_fraction=0.01, ct_noise_hu=2.0,
                        intensity_scale=1.0)


@pytest.fixture(scope="module")
def anatomy():
    return make_anatomy(11, ANATOMY)


@pytest.fixture(scope="module")
def layers(anatomy):
    return {kind: {layer.name: layer for layer in
                   confounders.confounder_layers(kind, anatomy, np.random.default_rng(5))}
            for kind in ("wmh", "ich")}


def _wall_mm(anatomy) -> np.ndarray:
    """Distance (mm) of each voxel centre from the ventricle wall (outside the ventricles)."""
    inside = anatomy.tissues["ventricles"] > 0.5
    return ndimage.distance_transform_edt(~inside, sampling=SPACING) - SPACING / 2


def _table_mm(anatomy) -> np.ndarray:
    """Distance (mm) of each voxel centre from the inner table (the skull's surface)."""
    return ndimage.distance_transform_edt(anatomy.tissues["skull"] <= 0.5, sampling=SPACING) - SPACING / 2


def _capture(patch) -> list:
    """Record the confounder layers that make_subject paints."""
    seen, original = [], confounders.confounder_layers

    def recording(kind, anatomy, rng):
        out = original(kind, anatomy, rng)
        seen.append(out)
        return out
    patch.setattr(confounders, "confounder_layers", recording)
    return seen


def test_layers_per_kind(anatomy, layers):
    assert {"confounder_ependymal_rim", "confounder_septum_pellucidum", "confounder_choroid_plexus",
            "confounder_csf_flow"} <= set(layers["wmh"])
    assert {"confounder_inner_table", "confounder_cupping", "confounder_beam_hardening",
            "confounder_falx", "confounder_septum_pellucidum"} <= set(layers["ich"])
    for kind, named in layers.items():
        modality = "FLAIR" if kind == "wmh" else "CT"
        assert any(modality in layer.values for layer in named.values())
        for layer in named.values():
            assert isinstance(layer, LesionLayer) and layer.name.startswith("confounder_")
            assert layer.fraction.shape == anatomy.grid.shape
            assert layer.fraction.min() >= 0 and layer.fraction.max() <= 1
            assert layer.fraction.max() > 0, layer.name
    assert confounders.confounder_layers("cmb", anatomy, np.random.default_rng(0)) == []
    with pytest.raises(ValueError):
        confounders.confounder_layers("tumour", anatomy, np.random.default_rng(0))


def test_reproducible(anatomy, layers):
    again = confounders.confounder_layers("ich", anatomy, np.random.default_rng(5))
    for layer in again:
        assert np.array_equal(layer.fraction, layers["ich"][layer.name].fraction)
        assert layer.values == layers["ich"][layer.name].values


def test_rim_lines_the_ventricles_and_is_brighter_than_white_matter(anatomy, layers):
    rim = layers["wmh"]["confounder_ependymal_rim"].fraction
    wall = _wall_mm(anatomy)
    assert np.percentile(wall[rim > 0.02], 95) <= 6.0
    # It lines (nearly) all of the wall: most tissue voxels touching a ventricle carry it.
    tissue = (anatomy.tissues["gm"] + anatomy.tissues["wm"]) > 0.5
    touching = tissue & (wall > 0) & (wall <= SPACING)
    assert (rim[touching] > 0).mean() > 0.6
    flair = render(anatomy, "FLAIR", list(layers["wmh"].values()), np.random.default_rng(1))
    nawm = (anatomy.tissues["wm"] > 0.95) & (wall > 12)
    assert np.median(flair[rim > 0.1]) > 1.1 * np.median(flair[nawm])


def test_rim_keeps_a_wmh_underneath(anatomy, layers):
    """A WMH at the ventricle wall is neither erased nor made brighter by the lining."""
    rim = layers["wmh"]["confounder_ependymal_rim"]
    centre = np.argwhere(rim.fraction == rim.fraction.max())[0]
    lesion = LesionLayer("wmh", ball(anatomy.grid.shape, centre, 2.0), {"FLAIR": 1.8})
    without = render(anatomy, "FLAIR", [lesion], np.random.default_rng(2))
    with_rim = render(anatomy, "FLAIR", [lesion, rim], np.random.default_rng(2))
    core = lesion.fraction > 0.99
    assert np.allclose(with_rim[core], without[core], rtol=0.1)


def test_septum_choroid_and_flow_sit_in_place(anatomy, layers):
    mni = anatomy.mni_coordinates
    septum = layers["wmh"]["confounder_septum_pellucidum"].fraction > 0.3
    assert septum.any() and np.abs(mni[septum][:, 0]).max() <= 3.0
    choroid = layers["wmh"]["confounder_choroid_plexus"].fraction > 0.3
    assert choroid.any() and np.all(anatomy.tissues["ventricles"][choroid] > 0.3)
    assert np.all(mni[choroid][:, 1] < -10)
    flow = layers["wmh"]["confounder_csf_flow"]
    assert 0.4 <= flow.values["FLAIR"] <= 0.9
    assert np.all(anatomy.tissues["csf"][flow.fraction > 0.3] > 0.2)


def test_falx_is_a_thin_midline_sheet(anatomy, layers):
    falx = layers["ich"]["confounder_falx"]
    assert 50 <= falx.values["CT"] <= 85
    mni = anatomy.mni_coordinates[falx.fraction > 0.3]
    assert len(mni) > 50
    assert np.median(np.abs(mni[:, 0])) <= 1.5 and np.abs(mni[:, 0]).max() <= 3.0
    assert mni[:, 2].max() > 50 and np.percentile(mni[:, 2], 5) > -20


def test_inner_table_band_hugs_the_skull(anatomy, layers):
    band = layers["ich"]["confounder_inner_table"].fraction
    table = _table_mm(anatomy)
    assert np.average(table[band > 0.005], weights=band[band > 0.005]) <= 3.0
    assert np.percentile(table[band > 0.01], 99) <= 6.0
    assert np.all(anatomy.tissues["skull"][band > 0] < 0.5)
    cupping = layers["ich"]["confounder_cupping"].fraction
    assert 5 <= 1000 * cupping.max() <= 16 and cupping[table > 20].max() < 1e-3
    streak = layers["ich"]["confounder_beam_hardening"]
    assert streak.values["CT"] < 0 and 15 <= 1000 * streak.fraction.max() <= 45


def test_calcifications_are_dense_and_intracranial():
    found = 0
    for seed in range(6):
        anatomy = make_anatomy(seed, ANATOMY)
        named = {layer.name: layer for layer in
                 confounders.confounder_layers("ich", anatomy, np.random.default_rng(seed))}
        if "confounder_calcification" not in named:
            continue
        found += 1
        calc = named["confounder_calcification"]
        intracranial = anatomy.brain | (anatomy.tissues["csf"] > 0.5)
        assert np.all(intracranial[calc.fraction > 0.05])
        ct = render(anatomy, "CT", [calc], np.random.default_rng(0))
        assert ct[calc.fraction > 0].max() > 100
    assert found >= 2


def test_acquired_ct_band_and_labels_unchanged(monkeypatch):
    """Inner-table band median 50-150 HU on an acquired CT; same labels with and without
    confounders; confounders add no label."""
    config = SubjectConfig(kind="ich", anatomy=ANATOMY, ich_probability=1.0, severity=0.6,
                           acquisition={"CT": ACQ})
    seen = _capture(monkeypatch)
    subject = make_subject(21, config)
    named = {layer.name: layer for layer in seen[-1]}
    ct = subject.images["CT"]
    band = subject.anatomy.grid.with_array(
        (1000 * named["confounder_inner_table"].fraction > 40).astype(np.uint8))
    on_ct = band.resample_to_grid(ct.affine, ct.shape, order=0, fill=0).array > 0
    assert on_ct.sum() > 100
    assert 50 <= np.median(ct.array[on_ct]) <= 150
    monkeypatch.setattr(confounders, "confounder_layers", lambda kind, anatomy, rng: [])
    bare = make_subject(21, config)
    assert np.array_equal(bare.labels["CT"]["ich"].array, subject.labels["CT"]["ich"].array)
    assert bare.targets == subject.targets
    assert not np.array_equal(bare.images["CT"].array, ct.array)


def test_no_label_without_lesions(monkeypatch):
    seen = _capture(monkeypatch)
    flair = make_subject(3, SubjectConfig(kind="wmh", anatomy=ANATOMY, severity=0.0,
                                          acquisition={"FLAIR": ACQ, "T1": ACQ}))
    ct = make_subject(3, SubjectConfig(kind="ich", anatomy=ANATOMY, ich_probability=0.0,
                                       acquisition={"CT": ACQ}))
    assert len(seen) == 2 and all(len(layers) >= 4 for layers in seen)
    for subject, name in ((flair, "wmh"), (ct, "ich")):
        for maps in subject.labels.values():
            assert not np.any(maps[name].array)  # the region atlas is not a lesion label


def test_subacute_and_small_bleeds(anatomy):
    sub = ich.insert_ich(anatomy, np.random.default_rng(3), 0.5, 1.0, subtypes=["subdural"],
                         subacute_fraction=1.0)
    (bleed,) = sub.targets["haemorrhages"]
    assert bleed["stage"] == "subacute" and 40 <= bleed["mean_hu"] <= 60
    forced = ich.insert_ich(anatomy, np.random.default_rng(3), 0.5, 1.0, subtypes=["subdural"])
    assert forced.targets["haemorrhages"][0]["stage"] == "acute"
    stages = [h["stage"] for seed in range(30)
              for h in ich.insert_ich(anatomy, np.random.default_rng([seed, 9]), None, 1.0)
              .targets["haemorrhages"]]
    assert 0.05 < stages.count("subacute") / len(stages) < 0.5
    small = [ich.insert_ich(anatomy, np.random.default_rng(seed), 0.0, 1.0,
                            subtypes=["intraparenchymal"]).targets["total_volume_ml"]
             for seed in range(4)]
    assert 0 < min(small) and max(small) < 1.0

"""Synthetic intracranial haemorrhage (``lesion_core.synth.ich``): places, densities, labels.

Coarse 2 mm subject grids keep the file fast; the MNI template is built once per process.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from scipy import ndimage

from lesion_core.labels import ICH_SUBTYPES
from lesion_core.synth import ich
from lesion_core.synth.anatomy import AnatomyConfig, make_anatomy
from lesion_core.synth.cohort import SubjectConfig, make_subject
from lesion_core.volume import Volume

ANATOMY = AnatomyConfig(spacing_mm=2.0)
KEYS = ["intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural"]


@pytest.fixture(scope="module")
def anatomy():
    return make_anatomy(7, ANATOMY)


@pytest.fixture(scope="module")
def forced(anatomy):
    """One insertion per subtype, forced, on the same anatomy."""
    return {key: ich.insert_ich(anatomy, np.random.default_rng(10 + n), 0.7, 1.0, subtypes=[key])
            for n, key in enumerate(KEYS)}


def _subject(seed: int, subtypes: list[str] | None, probability: float = 1.0,
             severity: float | None = None):
    config = SubjectConfig(kind="ich", ich_probability=probability, anatomy=ANATOMY, severity=severity)
    if subtypes is None:
        return make_subject(seed, config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ich, "insert_ich", functools.partial(ich.insert_ich, subtypes=subtypes))
        return make_subject(seed, config)


@pytest.fixture(scope="module")
def acquired():
    """Acquired CT subjects (0.9 mm x 5 mm axial slices) that hold all five subtypes."""
    return [_subject(3, ["intraparenchymal", "subdural"], severity=1.0),
            _subject(4, ["intraventricular", "subarachnoid", "epidural"], severity=0.7),
            _subject(5, None)]


def _skull_distance_mm(anatomy) -> np.ndarray:
    return ndimage.distance_transform_edt(anatomy.tissues["skull"] <= 0.5,
                                          sampling=anatomy.grid.spacing)


def test_subtype_keys_follow_the_label_catalogue():
    assert ich.SUBTYPE_KEYS == dict(enumerate(KEYS, start=1))
    names = {label.value: label.name for label in ICH_SUBTYPES}
    for value, key in ich.SUBTYPE_KEYS.items():
        assert names[value].lower().startswith(key)
    assert names[ich.OEDEMA_VALUE].lower().startswith("perihaematomal")


def test_probability_zero_gives_no_haemorrhage(anatomy):
    insertion = ich.insert_ich(anatomy, np.random.default_rng(0), None, 0.0)
    assert insertion.layers == []
    assert not insertion.labels["ich"].any()
    t = insertion.targets
    assert t["ich_present"] is False and t["subtypes"] == [] and t["total_volume_ml"] == 0
    assert t["haemorrhages"] == [] and t["volume_ml"] == {}
    subject = _subject(1, None, probability=0.0)
    assert not subject.labels["CT"]["ich"].array.any()
    assert subject.targets["ich_present"] is False
    assert len(subject.targets["slices"]) == subject.images["CT"].shape[2]
    assert not any(s["ich"] or s["subtypes"] for s in subject.targets["slices"])


def test_unknown_subtype_is_refused(anatomy):
    with pytest.raises(ValueError, match="unknown ICH subtype"):
        ich.insert_ich(anatomy, np.random.default_rng(0), None, 1.0, subtypes=["chronic"])


@pytest.mark.parametrize("key", KEYS)
def test_forced_subtype_lands_where_it_belongs(anatomy, forced, key):
    t = anatomy.tissues
    insertion = forced[key]
    label = insertion.labels["ich"]
    voxels = label == ich.SUBTYPE_VALUES[key]
    assert voxels.sum() >= 3, f"{key}: too small to test"
    assert insertion.targets["subtypes"] == [key]
    assert set(np.unique(label)) <= {0, ich.SUBTYPE_VALUES[key], ich.OEDEMA_VALUE}
    outside_ventricles = (t["ventricles"][voxels] < 0.5).mean()
    if key == "intraparenchymal":
        assert (t["gm"][voxels] + t["wm"][voxels] > 0.25).mean() >= 0.95
        assert outside_ventricles >= 0.95
        oedema = label == ich.OEDEMA_VALUE
        assert oedema.any(), "no perihaematomal oedema"
        gap = ndimage.distance_transform_edt(~voxels, sampling=anatomy.grid.spacing)[oedema]
        assert gap.max() <= 12.0  # a rim of a few mm around the haematoma
    elif key == "intraventricular":
        assert (t["ventricles"][voxels] > 0.5).mean() >= 0.8
    elif key == "subarachnoid":
        assert (t["csf"][voxels] - t["ventricles"][voxels] > 0.25).mean() >= 0.8
        assert outside_ventricles >= 0.95
    else:
        distance = _skull_distance_mm(anatomy)[voxels]
        assert (distance <= 15.0).mean() >= 0.8
        assert outside_ventricles >= 0.95
        assert not (t["skull"][voxels] > 0.5).any()
        thickness = distance.max()
        if key == "epidural":
            assert 6.0 <= thickness <= 27.0
        else:
            assert thickness <= 17.0
    assert ich.OEDEMA_VALUE not in np.unique(label) or key == "intraparenchymal"


def test_extra_axial_shapes(anatomy, forced):
    """Subdural: wide and thin (crescent); epidural: compact and thick (lens)."""
    spacing = anatomy.grid.spacing
    shape = {}
    for key in ("subdural", "epidural"):
        voxels = np.argwhere(forced[key].labels["ich"] == ich.SUBTYPE_VALUES[key]) * spacing
        extent = np.linalg.norm(voxels - voxels.mean(0), axis=1).max()
        thickness = _skull_distance_mm(anatomy)[forced[key].labels["ich"] == ich.SUBTYPE_VALUES[key]].max()
        shape[key] = extent / thickness
    assert shape["subdural"] > shape["epidural"]
    assert shape["subdural"] > 3.0


def test_targets_match_the_label_map(anatomy, forced):
    voxel_ml = float(np.prod(anatomy.grid.spacing)) / 1000
    for insertion in forced.values():
        t, label = insertion.targets, insertion.labels["ich"]
        json.dumps(t)  # plain JSON types only
        assert label.dtype == np.uint8 and label.shape == anatomy.grid.shape
        assert t["ich_present"] is True
        for key, ml in t["volume_ml"].items():
            assert ml == pytest.approx((label == ich.SUBTYPE_VALUES[key]).sum() * voxel_ml, abs=1e-3)
        assert t["total_volume_ml"] == pytest.approx(((label >= 1) & (label <= 5)).sum() * voxel_ml, abs=1e-3)
        assert t["oedema_volume_ml"] == pytest.approx((label == 6).sum() * voxel_ml, abs=1e-3)
        for h in t["haemorrhages"]:
            assert 50 <= h["mean_hu"] <= 90
            assert h["volume_ml"] == t["volume_ml"][h["subtype"]]
            ijk = anatomy.grid.ras_to_voxel(h["centre_subject_ras"])
            assert np.all(ijk >= 0) and np.all(ijk < np.array(anatomy.grid.shape))
        names = [layer.name for layer in insertion.layers]
        assert all(n.startswith("ich_") for n in names)


def test_intraparenchymal_volume_grows_with_severity(anatomy):
    def volume(severity, seed):
        insertion = ich.insert_ich(anatomy, np.random.default_rng(seed), severity, 1.0,
                                   subtypes=["intraparenchymal"])
        return insertion.targets["total_volume_ml"]
    small = [volume(0.05, s) for s in range(3)]
    large = [volume(1.0, s) for s in range(3)]
    assert max(small) < 8.0
    assert np.mean(large) > np.mean(small)
    assert max(large) <= 70.0


def _tissue_on(subject, name):
    grid = subject.anatomy.grid.with_array(subject.anatomy.tissues[name])
    image = subject.images["CT"]
    return grid.resample_to_grid(image.affine, image.shape, order=0, fill=0).array


def test_acquired_ct_densities(acquired):
    seen = set()
    for subject in acquired:
        ct = subject.images["CT"].array.astype(np.float32)
        label = subject.labels["CT"]["ich"].array
        assert subject.images["CT"].array.dtype == np.int16
        blood = (label >= 1) & (label <= 5)
        assert blood.any()
        assert 45 <= np.median(ct[blood]) <= 95
        for value, key in ich.SUBTYPE_KEYS.items():
            if (label == value).sum() >= 20:
                seen.add(key)
                # Thin extra-axial blood lies against the inner table: 5 mm slices average
                # bone into many of its voxels (tangential skull at the vertex), as on
                # real CT. The density of blood is checked where no bone is averaged in.
                near_bone = ndimage.binary_dilation(_tissue_on(subject, "skull") > 0.5,
                                                    np.ones((5, 5, 3), bool))  # +-1 slice
                clear = (label == value) & ~near_bone
                assert clear.sum() >= 20, key
                assert 45 <= np.median(ct[clear]) <= 95, key
        if (label == ich.OEDEMA_VALUE).sum() >= 20:
            assert 10 <= np.median(ct[label == ich.OEDEMA_VALUE]) <= 25
        normal = label == 0
        gm, wm = _tissue_on(subject, "gm"), _tissue_on(subject, "wm")
        skull, scalp = _tissue_on(subject, "skull"), _tissue_on(subject, "scalp")
        assert 30 <= np.median(ct[normal & (gm > 0.9)]) <= 48
        assert 18 <= np.median(ct[normal & (wm > 0.9)]) <= 32
        assert np.median(ct[skull > 0.9]) > 600
        head = ndimage.binary_dilation((scalp + skull + gm + wm) > 0, iterations=3)
        assert np.median(ct[~head]) <= -950
    assert seen >= set(KEYS)


def test_slice_labels_match_the_label_map(acquired):
    for subject in acquired:
        volume = subject.labels["CT"]["ich"]
        axis = subject.acquisition["CT"]["slice_axis"]
        slices = subject.targets["slices"]
        assert slices == ich.slice_labels(volume, axis)
        assert [s["index"] for s in slices] == list(range(volume.shape[axis]))
        for s in slices:
            values = set(np.unique(np.take(volume.array, s["index"], axis=axis)).tolist())
            expected = [ich.SUBTYPE_KEYS[v] for v in sorted(values) if 1 <= v <= 5]
            assert s["subtypes"] == expected and s["ich"] == bool(expected)
        positive = {k for s in slices for k in s["subtypes"]}
        assert positive == set(subject.targets["subtypes"]) or positive <= set(subject.targets["subtypes"])


def test_slice_labels_by_hand():
    array = np.zeros((3, 2, 4), np.uint8)
    array[0, 0, 1] = 1          # IPH in k=1 (and i=0)
    array[2, 1, 1] = 4          # SDH in k=1 (and i=2)
    array[1, 0, 3] = 6          # oedema alone is not ICH
    volume = Volume(array, np.eye(4))
    along_k = ich.slice_labels(volume, 2)
    assert along_k == [
        {"index": 0, "ich": False, "subtypes": []},
        {"index": 1, "ich": True, "subtypes": ["intraparenchymal", "subdural"]},
        {"index": 2, "ich": False, "subtypes": []},
        {"index": 3, "ich": False, "subtypes": []}]
    along_i = ich.slice_labels(volume, 0)
    assert [s["subtypes"] for s in along_i] == [["intraparenchymal"], [], ["subdural"]]
    with pytest.raises(ValueError):
        ich.slice_labels(volume, 3)


def test_reproducible(anatomy, acquired):
    a = ich.insert_ich(anatomy, np.random.default_rng(42), None, 1.0)
    b = ich.insert_ich(anatomy, np.random.default_rng(42), None, 1.0)
    assert np.array_equal(a.labels["ich"], b.labels["ich"]) and a.targets == b.targets
    again = _subject(5, None)
    assert np.array_equal(again.images["CT"].array, acquired[2].images["CT"].array)
    assert again.targets == acquired[2].targets


def test_cohort_has_every_subtype_and_negatives(anatomy):
    targets = [ich.insert_ich(anatomy, np.random.default_rng([seed, 2]), None, 0.8).targets
               for seed in range(15)]
    negatives = sum(not t["ich_present"] for t in targets)
    assert 1 <= negatives <= 8
    assert {k for t in targets for k in t["subtypes"]} == set(KEYS)
    assert all(1 <= len(t["subtypes"]) <= 3 for t in targets if t["ich_present"])


def test_ct_labels_follow_the_lesion_share_of_each_thick_slice():
    """CT labels are carried by majority under the image's slice profile: a layer thinner
    than half a 5 mm slice, lying across slice boundaries, is in no acquired voxel's
    majority (nearest neighbour would label a whole slice of it); a thick block keeps its
    extent, and of two values the larger share wins."""
    from lesion_core.synth.acquisition import _majority_labels, _resample_labels

    grid = np.eye(4)
    label = np.zeros((20, 20, 40), np.uint8)
    label[5:15, 5:15, 10] = 1                     # 1 mm thick
    label[5:15, 5:15, 20:31] = 2                  # 11 mm thick
    label[5:15, 5:15, 31:33] = 1                  # 2 mm of 1 on top of it
    acquired = np.diag([1.0, 1.0, 5.0, 1.0])      # 5 mm slices, centres at z = 0, 5, ...
    sigma = np.array([0.0, 0.0, np.sqrt(5.0 ** 2 - 1.0) / 2.3548])
    shape = (20, 20, 8)
    majority = _majority_labels(Volume(label, grid), sigma, acquired, shape).array
    nearest = _resample_labels(Volume(label, grid), acquired, shape).array
    assert nearest[10, 10, 2] == 1 and majority[10, 10, 2] == 0   # z = 10: the thin layer
    assert np.all(majority[5:15, 5:15, 4:7] == 2)                  # z = 20, 25, 30
    assert not np.any(majority == 1) and majority[4, 10, 5] == 0

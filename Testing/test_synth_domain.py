"""Domain randomization of the synthetic cohort (lesion_core.synth.domain), the acquisition
features it uses, and parallel cohort generation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from lesion_core.jsonable import json_safe
from lesion_core.synth import SubjectConfig, make_subject
from lesion_core.synth.acquisition import AcquisitionConfig, acquire
from lesion_core.synth.anatomy import AnatomyConfig, make_anatomy
from lesion_core.synth.domain import MAX_VOXELS, RANDOMIZED, SHIFTED, draw_acquisition

SMALL_MM = 3.5
#: Noise- and bias-free acquisition on the anatomy's own voxel size: the image is the
#: rendered contrast (resampled onto a possibly tilted grid).
CLEAN = AcquisitionConfig(in_plane_mm=SMALL_MM, slice_thickness_mm=SMALL_MM, bias_strength=0.0,
                          noise_fraction=0.0, ct_noise_hu=0.0)


def _clean(kind: str, domain: str = "randomized", **options) -> SubjectConfig:
    names = {"wmh": ("FLAIR", "T1"), "cmb": ("SWI", "T2star"), "ich": ("CT",)}[kind]
    return SubjectConfig(kind=kind, domain=domain, anatomy=AnatomyConfig(spacing_mm=SMALL_MM),
                         acquisition={name: CLEAN for name in names}, **options)


def _on_image(subject, mask: np.ndarray, image) -> np.ndarray:
    """A subject-grid mask carried onto an acquired image's grid."""
    volume = subject.anatomy.grid.with_array(mask.astype(np.uint8))
    return volume.resample_to_grid(image.affine, image.shape, order=0).array > 0


def _subject_hash(subject) -> str:
    digest = hashlib.sha256()
    for name, image in subject.images.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(image.array).tobytes())
        digest.update(np.asarray(image.affine).tobytes())
        for label, volume in subject.labels[name].items():
            digest.update(label.encode())
            digest.update(np.ascontiguousarray(volume.array).tobytes())
    digest.update(json.dumps(json_safe({"t": subject.targets, "a": subject.acquisition}),
                             sort_keys=True).encode())
    return digest.hexdigest()[:16]


# Hashes of standard subjects computed before domain randomization existed; the ICH one
# with thick slices since CT labels are carried by majority (its images are unchanged).
@pytest.mark.parametrize("kind, seed, size, expected", [
    ("wmh", 3, "small", "5e7c9cb81ae7da99"),
    ("cmb", 4, "small", "51c1ef77e1ca9bc8"),
    ("ich", 5, "small", "b4a23c7991ddc481"),
    ("cmb", 4, "usual acquisition", "146c00280b7fc65c"),
    ("ich", 5, "usual acquisition", "fc9dde9a8839e34c"),
])
def test_standard_subjects_are_unchanged(kind, seed, size, expected):
    from lesion_core.cli.synth import small_config
    config = (replace(small_config(kind), kind=kind) if size == "small"
              else SubjectConfig(kind=kind, anatomy=AnatomyConfig(spacing_mm=4.0)))
    assert _subject_hash(make_subject(seed, config)) == expected


def test_randomized_wmh_keep_flair_and_t1_contrast():
    for seed in range(10):
        subject = make_subject(seed, _clean("wmh", severity=0.6))
        flair, t1 = (subject.acquisition[name]["domain"] for name in ("FLAIR", "T1"))
        assert RANDOMIZED.wmh_flair[0] <= flair["lesion_values"]["wmh"] <= RANDOMIZED.wmh_flair[1]
        assert RANDOMIZED.wmh_t1[0] <= t1["lesion_values"]["wmh"] <= RANDOMIZED.wmh_t1[1]
        assert flair["tissue_means"]["csf"] < 0.35 and flair["tissue_means"]["ventricles"] < 0.3
        assert t1["tissue_means"]["cortex"] < t1["tissue_means"]["wm"]  # WM brighter than GM
        for name, brighter in (("FLAIR", True), ("T1", False)):
            image = subject.images[name]
            lesion = subject.labels[name]["wmh"].array > 0
            wm = _on_image(subject, subject.anatomy.tissues["wm"] > 0.9, image)
            wm &= ~ndimage.binary_dilation(lesion)
            ratio = image.array[lesion].mean() / image.array[wm].mean()
            assert lesion.sum() > 50
            assert (ratio > 1.05) if brighter else (ratio < 0.97), (seed, name, ratio)


def test_randomized_microbleeds_and_veins_are_darker_than_their_surroundings():
    blooming = []
    for seed in range(10):
        subject = make_subject(seed, _clean("cmb", lesion_count=4))
        name = subject.primary_modality
        image, labels = subject.images[name].array, subject.labels[name]
        cmb, mimics = labels["cmb"].array, labels["mimics"].array
        brain = _on_image(subject, subject.anatomy.brain, subject.images[name])
        for ident in np.unique(cmb[cmb > 0]):
            bleed = cmb == ident
            shell = ndimage.binary_dilation(bleed, iterations=2) & ~ndimage.binary_dilation(bleed)
            shell &= brain & (mimics == 0) & (cmb == 0)
            assert image[bleed].mean() < 0.95 * image[shell].mean(), (seed, ident)
        veins = mimics == 1
        assert image[veins].mean() < image[brain & ~veins & (cmb == 0)].mean()
        low, high = RANDOMIZED.cmb_blooming[name]
        assert low <= subject.targets["blooming"] <= high
        blooming.append(subject.targets["blooming"])
    assert len(set(blooming)) == 10


def test_randomized_ct_blood_stays_40_to_90_hu():
    hu, offsets, wm = [], [], []
    for seed in range(10):
        subject = make_subject(seed, _clean("ich", ich_probability=1.0))
        drawn = subject.acquisition["CT"]["domain"]
        hu += [h["mean_hu"] for h in subject.targets["haemorrhages"]]
        offsets.append(drawn["acquisition"]["ct_offset_hu"])
        wm.append(drawn["tissue_means"]["wm"])
        assert drawn["tissue_means"]["wm"] < drawn["tissue_means"]["cortex"]
    assert len(hu) >= 10 and min(hu) >= 40 and max(hu) <= 90
    assert max(abs(o) for o in offsets) <= RANDOMIZED.ct_offset_hu[1]
    assert len(set(wm)) == 10  # contrasts differ between seeds


def test_randomized_acquisitions_differ_between_seeds_and_stay_in_range():
    drawn = [draw_acquisition("FLAIR", RANDOMIZED, np.random.default_rng(seed)) for seed in range(40)]
    for field, (low, high) in (("slice_thickness_mm", RANDOMIZED.slice_thickness_mm["FLAIR"]),
                               ("in_plane_mm", RANDOMIZED.in_plane_mm),
                               ("noise_fraction", RANDOMIZED.noise_fraction),
                               ("bias_strength", RANDOMIZED.bias_strength)):
        values = [getattr(a, field) for a in drawn]
        assert len(set(values)) == len(drawn) and low <= min(values) and max(values) <= high
    assert {a.slice_axis for a in drawn} == {0, 1, 2}
    assert len({a.orientation for a in drawn}) == 3
    assert {a.noise_type for a in drawn} == {"rician", "gaussian"}
    assert 0 < sum(any(a.fov_cut_mm) for a in drawn) < len(drawn)
    assert all(np.linalg.norm(a.tilt_deg) <= RANDOMIZED.tilt_deg[1] + 1e-9 for a in drawn)
    assert all(a.max_voxels == MAX_VOXELS for a in drawn)


def test_shifted_ranges_lie_outside_the_randomized_ones_where_marked():
    r, s = RANDOMIZED, SHIFTED
    # WMH contrast is the one lesion field kept inside (faint end): see SHIFTED's comment
    assert r.wmh_flair[0] <= s.wmh_flair[0] and s.wmh_flair[1] <= 1.5
    assert s.wmh_t1[1] > r.wmh_t1[1]
    assert s.cmb_blooming["T2star"][1] > r.cmb_blooming["T2star"][1]
    for name in ("FLAIR", "SWI", "T2star", "CT", "T1"):
        assert s.slice_thickness_mm[name][1] > r.slice_thickness_mm[name][1]
    assert s.noise_fraction[0] > r.noise_fraction[1] and s.ct_noise_hu[0] > r.ct_noise_hu[1]
    assert s.bias_strength[0] > r.bias_strength[1] and s.ct_offset_hu[0] > r.ct_offset_hu[1]
    mr = [draw_acquisition("FLAIR", s, np.random.default_rng(seed)) for seed in range(10)]
    ct = [draw_acquisition("CT", s, np.random.default_rng(seed)) for seed in range(10)]
    assert min(a.noise_fraction for a in mr) > r.noise_fraction[1]
    assert min(abs(a.ct_offset_hu) for a in ct) >= s.ct_offset_hu[0]
    assert {np.sign(a.ct_offset_hu) for a in ct} == {-1.0, 1.0}
    assert all(a.slice_axis == 2 for a in mr + ct)


def test_a_shifted_subject_records_what_it_drew():
    subject = make_subject(2, _clean("wmh", domain="shifted", severity=0.5))
    drawn = subject.acquisition["FLAIR"]["domain"]
    assert drawn["name"] == "shifted"
    assert SHIFTED.wmh_flair[0] <= drawn["lesion_values"]["wmh"] <= SHIFTED.wmh_flair[1]
    # The clean override wins where it sets a field, the domain draws the rest.
    assert drawn["acquisition"]["noise_fraction"] == 0.0
    assert drawn["acquisition"]["intensity_scale"] is not None
    # The anatomy does not depend on the domain.
    standard = make_subject(2, _clean("wmh", domain="standard", severity=0.5))
    assert np.array_equal(subject.anatomy.tissues["wm"], standard.anatomy.tissues["wm"])
    with pytest.raises(ValueError, match="unknown domain"):
        make_subject(2, _clean("wmh", domain="vendor"))


@pytest.fixture(scope="module")
def anatomy():
    return make_anatomy(7, AnatomyConfig(spacing_mm=3.0))


def test_acquisition_tilt_field_of_view_cut_and_voxel_cap(anatomy):
    image = anatomy.grid.with_array(anatomy.tissues["wm"] * 100)
    base = AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=3.0, orientation="RAS")
    plain, _, _ = acquire(image, {}, "FLAIR", base, np.random.default_rng(0))
    tilted, _, _ = acquire(image, {}, "FLAIR", replace(base, tilt_deg=(0.0, 0.0, 12.0)),
                           np.random.default_rng(0))
    assert not plain.is_oblique and tilted.is_oblique
    cut, _, _ = acquire(image, {}, "FLAIR", replace(base, fov_cut_mm=(0.0, 30.0)), np.random.default_rng(0))
    assert plain.shape[2] - cut.shape[2] == 10  # 30 mm of 3 mm slices
    assert cut.world_bounds()[2, 1] == pytest.approx(plain.world_bounds()[2, 1] - 30, abs=1.6)
    capped, _, facts = acquire(image, {}, "FLAIR", replace(base, in_plane_mm=0.5, max_voxels=200_000),
                               np.random.default_rng(0))
    assert np.prod(capped.shape) <= 1.1 * 200_000 and facts["in_plane_mm"] > 0.5
    gaussian, _, _ = acquire(image, {}, "FLAIR", replace(base, noise_type="gaussian"), np.random.default_rng(0))
    assert gaussian.array.min() >= 0
    with pytest.raises(ValueError, match="noise type"):
        acquire(image, {}, "FLAIR", replace(base, noise_type="speckle"), np.random.default_rng(0))


def test_ct_calibration_offset_shifts_every_voxel(anatomy):
    from lesion_core.synth.contrast import render
    ct = anatomy.grid.with_array(render(anatomy, "CT", [], np.random.default_rng(1)))
    config = AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=3.0, orientation="RAS", ct_noise_hu=0.0)
    plain, _, _ = acquire(ct, {}, "CT", config, np.random.default_rng(2))
    shifted, _, _ = acquire(ct, {}, "CT", replace(config, ct_offset_hu=8.0), np.random.default_rng(2))
    difference = shifted.array.astype(int) - plain.array.astype(int)
    assert np.abs(difference - 8).max() <= 1  # rounding to integer HU


def test_workers_give_identical_files(tmp_path):
    from lesion_core.cli import main
    for workers in (1, 2):
        assert main(["synth", "cmb", "--n", "2", "--seed", "21", "--size", "small", "--domain",
                     "randomized", "--workers", str(workers), "--out", str(tmp_path / f"w{workers}")]) == 0
    one, two = tmp_path / "w1", tmp_path / "w2"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert len(files) > 4
    for name in files:
        a, b = (one / name).read_bytes(), (two / name).read_bytes()
        if name.suffix == ".csv" or name.parent.name == ".subjects":  # absolute paths differ
            a, b = a.replace(str(one).encode(), b""), b.replace(str(two).encode(), b"")
        assert a == b, name
    targets = json.loads(next(one.rglob("targets.json")).read_text())
    assert next(iter(targets["acquisition"].values()))["domain"]["name"] == "randomized"


def test_a_stopped_cohort_continues_without_making_saved_subjects_again(tmp_path, monkeypatch):
    from lesion_core.synth import cohort

    config = cohort.SubjectConfig(anatomy=cohort.AnatomyConfig(spacing_mm=3.5))
    first = cohort.make_cohort("cmb", [31, 32], tmp_path, config)
    before = first.read_text()
    (tmp_path / ".subjects" / "32.json").unlink()  # stopped before subject 32 was recorded
    made = []
    real = cohort.make_subject
    monkeypatch.setattr(cohort, "make_subject", lambda seed, cfg: made.append(seed) or real(seed, cfg))
    assert cohort.make_cohort("cmb", [31, 32], tmp_path, config).read_text() == before
    assert made == [32]
    # Another config is another subject: made anew.
    cohort.make_cohort("cmb", [31], tmp_path, cohort.replace(config, domain="randomized"))
    assert made == [32, 31]

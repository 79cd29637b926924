"""Registration to MNI (SimpleITK affine, mutual information) and the template brain mask.

Synthetic ``wmh`` subjects (2 mm anatomy) keep the true MNI position of every subject
voxel (``anatomy.mni_coordinates``), so the registration is scored against the truth:
landmark error (mm), the carried ARWMC atlas against the atlas carried by the known map
(Dice per region) and the brain mask against the true brain (Dice). The subject's elastic
deformation (~3 mm RMS) and atrophy cannot be captured by an affine: the best affine fitted
to the truth itself leaves a mean error of ~3.7 mm, so the bound is 5 mm.
"""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from lesion_core.registration import (  # noqa: E402
    MNIRegistration, RegistrationError, _check_plausible, _from_sitk, _ras_matrix, _to_sitk,
    brain_mask, register_to_mni, template_image)
from lesion_core.synth.anatomy import AnatomyConfig  # noqa: E402
from lesion_core.atlas.arwmc import arwmc_atlas_mni  # noqa: E402
from lesion_core.synth.cohort import SubjectConfig, make_subject  # noqa: E402
from lesion_core.volume import Volume  # noqa: E402

SEEDS = (0, 2)
MODALITIES = ("FLAIR", "T1")
LANDMARK_BOUND_MM = 5.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1))


# ----------------------------------------------------------------- sitk conversions
def _oblique_lps_volume() -> Volume:
    rng = np.random.default_rng(3)
    angle = np.deg2rad(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ tilt @ np.diag([0.9, 1.1, 4.0])
    affine[:3, 3] = [31.5, -12.25, -40.0]
    return Volume(rng.normal(size=(7, 9, 5)).astype(np.float32), affine, "oblique.nii.gz")


def test_sitk_round_trip_is_exact_on_oblique_anisotropic_lps():
    volume = _oblique_lps_volume()
    image = _to_sitk(volume)
    assert image.GetSize() == volume.shape  # SimpleITK [x, y, z] = our [i, j, k]
    back = _from_sitk(image)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-12)
    # Same physical point for the same voxel: SimpleITK's LPS is our RAS with x, y negated.
    ijk = (4, 2, 3)
    lps = np.asarray(image.TransformIndexToPhysicalPoint(ijk))
    np.testing.assert_allclose(lps * [-1, -1, 1], volume.voxel_to_ras(ijk), atol=1e-9)
    # A left-handed (LAS) grid survives too.
    las = Volume(volume.array, np.diag([-2.0, 1.5, 3.0, 1.0]))
    np.testing.assert_allclose(_from_sitk(_to_sitk(las)).affine, las.affine, atol=1e-12)


def test_sitk_transform_matrix_is_converted_to_ras():
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([1.1, 0.1, 0.0, -0.05, 0.9, 0.2, 0.0, 0.1, 1.0])
    transform.SetCenter((5.0, -3.0, 8.0))
    transform.SetTranslation((2.0, 4.0, -6.0))
    ras = _ras_matrix(transform)
    point_ras = np.array([12.0, -7.0, 30.0])
    mapped_lps = np.asarray(transform.TransformPoint((point_ras * [-1, -1, 1]).tolist()))
    np.testing.assert_allclose(ras[:3, :3] @ point_ras + ras[:3, 3], mapped_lps * [-1, -1, 1], atol=1e-9)


# ------------------------------------------------------------------- synthetic subjects
@pytest.fixture(scope="module")
def subjects():
    config = SubjectConfig(kind="wmh", anatomy=AnatomyConfig(spacing_mm=2.0))
    return {seed: make_subject(seed, config) for seed in SEEDS}


@pytest.fixture(scope="module")
def registrations(subjects):
    return {(seed, m): register_to_mni(subjects[seed].images[m], m) for seed in SEEDS for m in MODALITIES}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("modality", MODALITIES)
def test_landmark_error_against_known_mni_positions(subjects, registrations, seed, modality):
    anatomy = subjects[seed].anatomy
    registration = registrations[seed, modality]
    voxels = np.argwhere(anatomy.brain)
    voxels = voxels[np.random.default_rng(seed).choice(len(voxels), 200, replace=False)]
    truth = anatomy.mni_coordinates[tuple(voxels.T)]
    ras = anatomy.grid.voxel_to_ras(voxels)
    error = np.linalg.norm(registration.to_mni(ras) - truth, axis=1)
    assert error.mean() < LANDMARK_BOUND_MM, f"mean landmark error {error.mean():.2f} mm"
    assert np.median(error) < LANDMARK_BOUND_MM
    np.testing.assert_allclose(registration.from_mni(registration.to_mni(ras)), ras, atol=1e-6)
    assert -1.0 < registration.metric < 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("modality", MODALITIES)
def test_carried_arwmc_atlas_matches_the_truth(subjects, registrations, seed, modality):
    atlas, atlas_affine, names = arwmc_atlas_mni()
    anatomy = subjects[seed].anatomy
    truth = anatomy.sample_mni_map(atlas, atlas_affine, order=0)
    carried = registrations[seed, modality].carry_mni_map(atlas, atlas_affine, order=0, grid=anatomy.grid)
    assert carried.array.dtype == atlas.dtype
    np.testing.assert_array_equal(carried.affine, anatomy.grid.affine)
    dice = [_dice(carried.array == label, truth == label) for label in range(1, len(names) + 1)]
    assert np.mean(dice) > 0.7, dict(zip(names, np.round(dice, 3)))
    assert min(dice) > 0.6, dict(zip(names, np.round(dice, 3)))


@pytest.mark.parametrize("seed, modality", [(0, "FLAIR"), (2, "FLAIR"), (2, "T1")])
def test_brain_mask_matches_the_true_brain(subjects, registrations, seed, modality):
    subject = subjects[seed]
    image = subject.images[modality]
    anatomy = subject.anatomy
    truth = anatomy.grid.with_array(anatomy.brain.astype(np.float32)).resample_to_grid(
        image.affine, image.shape, order=1, fill=0).array > 0.5
    mask = brain_mask(image, registrations[seed, modality], modality)
    assert mask.array.dtype == np.uint8 and mask.shape == image.shape
    np.testing.assert_array_equal(mask.affine, image.affine)
    assert _dice(mask.array > 0, truth) > 0.85


# ----------------------------------------------------------------------------- failures
def test_implausible_transform_is_refused_with_a_clear_error():
    template, _, brain = template_image("T1", 3.0)
    image = Volume(template.array, template.affine, "head.nii.gz")
    squashed = np.diag([3.0, 3.0, 3.0, 1.0])
    result = MNIRegistration(squashed, -0.5, image.affine, image.shape, "head.nii.gz")
    with pytest.raises(RegistrationError, match="head.nii.gz: .*implausible.*whole-head scan"):
        _check_plausible(result, image, brain)
    nan = MNIRegistration(np.eye(4), float("nan"), image.affine, image.shape, "head.nii.gz")
    with pytest.raises(RegistrationError, match="no finite result"):
        _check_plausible(nan, image, brain)


def test_empty_image_fails_with_a_lesion_suite_error():
    blank = Volume(np.zeros((40, 40, 30), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]), "blank.nii.gz")
    blank.affine[:3, 3] = [-80.0, -80.0, -60.0]
    with pytest.raises(RegistrationError, match="blank.nii.gz"):
        register_to_mni(blank, "T1")


# ---------------------------------------------------------------------------- real T1
def test_real_t1_registers_and_its_brain_mask_is_plausible(real_t1_path):
    from lesion_core.io import read_volume

    image = read_volume(real_t1_path)
    registration = register_to_mni(image, "T1")
    scale = abs(np.linalg.det(registration.subject_ras_to_mni[:3, :3]))
    assert 1.0 < scale < 1.8  # MNI152 brains are larger than most
    mask = brain_mask(image, registration, "T1")
    volume_l = mask.array.sum() * image.voxel_volume_ml / 1000.0
    assert 1.0 < volume_l < 1.8, f"brain volume {volume_l:.2f} L"


def test_the_same_image_registers_to_the_same_transform(subjects, registrations):
    """Repeatable to the bit (SimpleITK runs on one thread), and the caller's thread setting
    is left as it was."""
    import SimpleITK as sitk
    seed, modality = SEEDS[0], MODALITIES[0]
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    again = register_to_mni(subjects[seed].images[modality], modality)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before
    first = registrations[(seed, modality)]
    assert again.metric == first.metric
    assert np.array_equal(again.subject_ras_to_mni, first.subject_ras_to_mni)


def test_starts_side_by_side_give_the_transform_of_one_at_a_time(subjects, registrations):
    import SimpleITK as sitk
    from lesion_core.registration import RegistrationConfig, _register

    seed, modality = SEEDS[0], MODALITIES[0]
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        alone = _register(sitk, subjects[seed].images[modality], modality, RegistrationConfig(),
                          workers=1)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    side_by_side = registrations[(seed, modality)]            # as many workers as cores
    assert alone.metric == side_by_side.metric
    assert np.array_equal(alone.subject_ras_to_mni, side_by_side.subject_ras_to_mni)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 0.9, 3.3)])
def test_depth_by_erosion_is_the_distance_map_threshold(spacing):
    from scipy import ndimage
    from lesion_core.registration import _deeper_than

    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((40, 44, 30)) < 0.8, iterations=2)
    mask[:, :, -1] = True                          # cut by the field of view at one face
    distance = ndimage.distance_transform_edt(mask, sampling=spacing)
    for depth, deep in zip((5.0, 8.0), _deeper_than(mask, (5.0, 8.0), spacing)):
        np.testing.assert_array_equal(deep, distance > depth)


def test_the_rendered_template_is_read_from_disk_in_a_new_process(tmp_path, monkeypatch):
    import lesion_core.registration as registration

    monkeypatch.setenv("LESION_SUITE_CACHE", str(tmp_path))
    template_image.cache_clear()
    first = template_image("T1", 6.0)
    assert len(list(tmp_path.glob("mni_rendered_T1_6mm_*.npz"))) == 1

    def no_rendering(*args):
        raise AssertionError("rendered again instead of read from the cache")

    monkeypatch.setattr(registration, "_render_template", no_rendering)
    template_image.cache_clear()                       # what a new process starts with
    again = template_image("T1", 6.0)
    for a, b in zip(first, again):
        assert np.array_equal(a.array, b.array) and np.allclose(a.affine, b.affine)
    template_image.cache_clear()

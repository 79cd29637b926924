"""CMB stage 1 (SWI normalisation, candidate extraction) and stage 2 inputs (patches, labels)."""

from __future__ import annotations

import numpy as np
import pytest
from geometry import oblique_lps_affine

from lesion_core.baselines.masks import mr_brain_mask
from lesion_core.cmb.candidates import Candidate, CandidateConfig, extract_candidates, preprocess_swi
from lesion_core.cmb.patches import extract_patch, label_candidates
from lesion_core.synth.anatomy import AnatomyConfig
from lesion_core.synth.cohort import SubjectConfig, make_subject
from lesion_core.volume import Volume

SPACING = (0.9, 1.1, 1.3)


def _ball(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def _point(centre_ras, id_=1) -> Candidate:
    return Candidate(id_, 1.0, 1.0, tuple(float(c) for c in centre_ras), 1.0, 1.0, 1)


@pytest.fixture(scope="module")
def subject():
    return make_subject(3, SubjectConfig(kind="cmb", anatomy=AnatomyConfig(spacing_mm=3.0)))


def _swi(subject):
    name = "SWI" if "SWI" in subject.images else "T2star"
    return name, subject.images[name]


def test_candidates_counted_sorted_and_placed_in_ras():
    shape = (48, 48, 48)
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.0, 0.1, shape)                     # background noise, sub-threshold
    # Scan order puts the weaker, larger blob first: sorting must put the stronger first.
    weak = _ball(shape, (12, 12, 12), 3.0)
    prob[weak] = 0.4
    prob[12, 12, 12] = 0.7
    strong = _ball(shape, (32, 30, 28), 2.0)
    prob[strong] = 0.5
    prob[32, 30, 28] = 0.9
    prob[_ball(shape, (36, 10, 38), 2.0)] = 0.2              # below the 0.3 threshold
    volume = Volume(prob.astype(np.float32), oblique_lps_affine(spacing=SPACING))
    labels, candidates = extract_candidates(volume, CandidateConfig())

    assert len(candidates) == 2
    assert [c.id for c in candidates] == [1, 2]
    assert [c.probability for c in candidates] == pytest.approx([0.9, 0.7])
    assert labels.array.dtype == np.int32 and labels.shape == shape
    np.testing.assert_array_equal(labels.affine, volume.affine)
    assert labels.array[32, 30, 28] == 1 and labels.array[12, 12, 12] == 2
    assert set(np.unique(labels.array)) == {0, 1, 2}
    assert np.array_equal(labels.array == 1, strong) and np.array_equal(labels.array == 2, weak)
    # Symmetric blobs: the weighted centroid is the centre voxel, mapped through the
    # oblique LPS affine to RAS mm.
    np.testing.assert_allclose(candidates[0].centre_ras, volume.voxel_to_ras([32, 30, 28]), atol=1e-6)
    np.testing.assert_allclose(candidates[1].centre_ras, volume.voxel_to_ras([12, 12, 12]), atol=1e-6)
    voxel_mm3 = float(np.prod(SPACING))
    for candidate, mask in zip(candidates, (strong, weak)):
        assert candidate.voxels == int(mask.sum())
        assert candidate.volume_mm3 == pytest.approx(mask.sum() * voxel_mm3)
        assert candidate.diameter_mm == pytest.approx((6 * candidate.volume_mm3 / np.pi) ** (1 / 3))
    assert candidates[0].mean_probability == pytest.approx((0.9 + 0.5 * (strong.sum() - 1)) / strong.sum())

    # min_voxels drops the smaller (stronger) blob and renumbers the rest from 1.
    labels, candidates = extract_candidates(volume, CandidateConfig(min_voxels=int(strong.sum()) + 1))
    assert [(c.id, round(c.probability, 6)) for c in candidates] == [(1, 0.7)]
    assert labels.array[12, 12, 12] == 1 and labels.array[32, 30, 28] == 0
    empty, none = extract_candidates(volume, CandidateConfig(threshold=0.95))
    assert none == [] and not empty.array.any()


def test_preprocess_is_ras_1mm_with_brain_percentile_one(subject):
    _, image = _swi(subject)
    out = preprocess_swi(image, None)
    assert out.orientation == "RAS" and not out.is_oblique
    np.testing.assert_allclose(out.spacing, 1.0)
    assert out.array.dtype == np.float32
    assert out.array.min() >= 0.0 and out.array.max() <= 1.5
    # The grid spans the image's field of view.
    np.testing.assert_allclose(out.world_bounds(), image.world_bounds(), atol=1.5)
    brain = image.with_array(mr_brain_mask(image.array, image.spacing).astype(np.uint8))
    inside = brain.resample_to_grid(out.affine, out.shape, order=0, fill=0).array > 0
    assert np.percentile(out.array[inside], 99.0) == pytest.approx(1.0, abs=0.01)

    # The same image stored LPS gives the same normalised image on the same grid.
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.asarray(image.shape[:2]) - 1
    lps = Volume(np.ascontiguousarray(image.array[::-1, ::-1, :]), image.affine @ flip)
    assert lps.orientation == "LPS"
    out_lps = preprocess_swi(lps, Volume(brain.array[::-1, ::-1, :], lps.affine))
    np.testing.assert_allclose(out_lps.affine, out.affine, atol=1e-6)
    np.testing.assert_allclose(out_lps.array, out.array, atol=1e-4)


@pytest.mark.parametrize("affine", [
    oblique_lps_affine(spacing=SPACING, degrees=(0.0, 0.0, 0.0)),
    oblique_lps_affine(spacing=SPACING),
], ids=["lps", "oblique"])
def test_patch_centred_on_the_point_whatever_the_grid(affine):
    shape = (48, 48, 48)
    image = Volume(np.zeros(shape, np.float32), affine)
    point = image.voxel_to_ras([23.3, 24.6, 22.2])
    ijk = np.indices(shape).reshape(3, -1).T
    distance = np.linalg.norm(image.voxel_to_ras(ijk) - point, axis=1)
    # A smooth bright blob (sigma 2 mm) so its centroid survives resampling.
    image.array[...] = np.exp(-0.5 * (distance / 2.0) ** 2).reshape(shape)

    def centroid(patch):
        grid = np.indices(patch.shape).reshape(3, -1)
        return grid @ patch.ravel() / patch.sum()

    patch = extract_patch(image, point, size=24)
    assert patch.shape == (24, 24, 24) and patch.dtype == np.float32
    np.testing.assert_allclose(centroid(patch), [11.5, 11.5, 11.5], atol=0.1)
    # Patch axes run along R, A, S: a patch centred 3 mm R, 2 mm P, 4 mm S of the point
    # sees the blob 3 voxels towards low i, 2 towards high j, 4 towards low k.
    shifted = extract_patch(image, point + np.array([3.0, -2.0, 4.0]), size=24)
    np.testing.assert_allclose(centroid(shifted), [8.5, 13.5, 7.5], atol=0.1)
    outside = extract_patch(image, point + 500.0, size=8)
    assert outside.shape == (8, 8, 8) and not outside.any()


def test_label_candidates_true_cmb_and_mimic(subject):
    name, _ = _swi(subject)
    truth = subject.labels[name]["cmb"]
    mimics = subject.labels[name].get("mimics")
    assert truth.array.any() and mimics is not None and mimics.array.any()
    cmb_voxel = np.argwhere(truth.array > 0)[0]
    mimic_voxel = np.argwhere(mimics.array > 0)[0]
    candidates = [_point(truth.voxel_to_ras(cmb_voxel), 1), _point(mimics.voxel_to_ras(mimic_voxel), 2)]
    assert label_candidates(candidates, truth, mimics) == [1, 0]


def test_label_candidates_distance_rule():
    shape = (48, 48, 48)
    affine = oblique_lps_affine(spacing=(1.0, 1.0, 1.0))
    cube = np.zeros(shape, np.int16)
    cube[23:26, 23:26, 23:26] = 1                               # centroid at voxel 24
    truth = Volume(cube, affine)
    centre = truth.voxel_to_ras([24, 24, 24])
    direction = affine[:3, 0] / np.linalg.norm(affine[:3, 0])   # along i, in RAS
    near, far = centre + 4.0 * direction, centre + 6.0 * direction
    assert label_candidates([_point(centre), _point(near), _point(far)], truth, None) == [1, 1, 0]
    # A mimic under the near candidate makes it a hard negative.
    mimic = np.zeros(shape, np.uint8)
    mimic[28, 24, 24] = 1
    assert label_candidates([_point(near)], truth, Volume(mimic, affine)) == [0]
    assert label_candidates([_point(near)], truth, None, max_distance_mm=3.0) == [0]

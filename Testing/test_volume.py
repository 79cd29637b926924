import numpy as np
import pytest

from geometry import oblique_lps_affine, random_volume
from lesion_core.volume import Volume


def test_geometry_properties_of_oblique_lps_grid():
    volume = random_volume()
    assert np.allclose(volume.spacing, [0.7, 1.1, 3.0])
    assert volume.is_oblique
    assert volume.orientation[2] in "SI"
    assert np.allclose(np.linalg.norm(volume.direction, axis=0), 1.0)
    assert volume.voxel_volume_ml == pytest.approx(0.7 * 1.1 * 3.0 / 1000)
    axis_aligned = Volume(np.zeros((4, 4, 4)), np.diag([-1.0, -1.0, 2.0, 1.0]))
    assert axis_aligned.orientation == "LPS" and not axis_aligned.is_oblique


def test_voxel_ras_mapping_is_inverse_and_matches_affine():
    volume = random_volume()
    ijk = np.array([[0, 0, 0], [3, 5, 7], [19, 23, 15]], dtype=float)
    ras = volume.voxel_to_ras(ijk)
    assert np.allclose(ras[0], volume.affine[:3, 3])
    assert np.allclose(ras[1], (volume.affine @ np.r_[ijk[1], 1])[:3])
    assert np.allclose(volume.ras_to_voxel(ras), ijk)


def test_world_bounds_are_voxel_centre_extremes():
    volume = Volume(np.zeros((10, 20, 5)), np.diag([-2.0, 1.0, 3.0, 1.0]))
    assert np.allclose(volume.world_bounds(), [[-18, 0], [0, 19], [0, 12]])


def test_to_ras_keeps_every_voxel_at_its_world_position():
    volume = random_volume()
    ras = volume.to_ras()
    assert ras.orientation == "RAS"
    # Every value must sit at the same RAS point before and after reordering.
    for ijk in ([0, 0, 0], [5, 7, 3], [19, 23, 15]):
        point = volume.voxel_to_ras(ijk)
        new_ijk = np.round(ras.ras_to_voxel(point)).astype(int)
        assert ras.array[tuple(new_ijk)] == volume.array[tuple(ijk)]
    assert np.allclose(ras.world_bounds(), volume.world_bounds())


def test_resample_to_same_grid_is_identity_and_labels_stay_integer():
    volume = random_volume(dtype=np.float32)
    same = volume.resample_to_grid(volume.affine, volume.shape, order=1)
    assert np.allclose(same.array, volume.array, atol=1e-4)
    labels = volume.with_array((volume.array > 100).astype(np.uint8) * 3)
    coarse = labels.resample_to_spacing(2.0, order=0)
    assert coarse.array.dtype == np.uint8
    assert set(np.unique(coarse.array)) <= {0, 3}


def test_resample_to_spacing_keeps_field_of_view_and_linear_ramp():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    i = np.arange(16, dtype=np.float32)
    ramp = Volume(np.broadcast_to(i[:, None, None], (16, 16, 16)).copy(), affine)
    fine = ramp.resample_to_spacing(1.0)
    assert fine.shape == (32, 32, 32)
    assert np.allclose(fine.spacing, 1.0)
    # Outer edges of the field of view (voxel centre +- half a voxel) are unchanged.
    edges = lambda v: v.world_bounds() + np.array([[-0.5, 0.5]]) * v.spacing[:, None]
    assert np.allclose(edges(fine), edges(ramp))
    # Linear interpolation reproduces a linear ramp exactly inside the grid.
    x = fine.voxel_to_ras([[10, 5, 5]])[0]
    assert fine.array[10, 5, 5] == pytest.approx(x[0] / 2.0, abs=1e-5)


def test_crop_and_pad_move_the_origin_consistently():
    volume = random_volume()
    cropped = volume.crop([2, 3, 4], [10, 12, 9])
    assert cropped.shape == (8, 9, 5)
    assert np.allclose(cropped.voxel_to_ras([0, 0, 0]), volume.voxel_to_ras([2, 3, 4]))
    assert np.array_equal(cropped.array, volume.array[2:10, 3:12, 4:9])
    padded = volume.crop([-2, 0, 0], [22, 24, 16], fill=-5)
    assert np.all(padded.array[:2] == -5) and np.array_equal(padded.array[2:22], volume.array)
    centred = volume.crop_or_pad_centered((30, 20, 16))
    assert centred.shape == (30, 20, 16)
    point = volume.voxel_to_ras([10, 12, 8])
    ijk = np.round(centred.ras_to_voxel(point)).astype(int)
    assert centred.array[tuple(ijk)] == volume.array[10, 12, 8]


def test_with_array_refuses_another_grid_and_affine_must_be_4x4():
    volume = random_volume()
    with pytest.raises(ValueError):
        volume.with_array(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3, 3)), np.eye(3))
    assert np.allclose(oblique_lps_affine()[:3, 3], volume.origin)


def _scipy_resample(volume, affine, shape, order, fill):
    """What ``resample_to_grid`` computed for every grid before its axis-aligned path."""
    from scipy import ndimage

    t = np.linalg.inv(volume.affine) @ affine
    snapped = np.round(t)
    near = np.abs(t - snapped) < 1e-9
    t[near] = snapped[near]
    src = volume.array if order == 0 else volume.array.astype(np.float32)
    cval = float(src.min()) if fill is None else float(fill)
    out = ndimage.affine_transform(src, t[:3, :3], offset=t[:3, 3], output_shape=shape,
                                   order=order, mode="constant", cval=cval, prefilter=False)
    return out.astype(volume.array.dtype) if order == 0 else out


def test_axis_aligned_resampling_is_scipy_affine_transform():
    # Permuted, flipped and scaled grids, shifts of half a voxel (nearest-neighbour ties),
    # targets beyond the field of view and single-voxel axes: labels the same voxels,
    # intensities the same values to float32 rounding.
    rng = np.random.default_rng(7)
    for trial in range(120):
        shape = tuple(int(n) for n in rng.integers(1, 12, 3))
        source = np.zeros((4, 4))
        source[3, 3] = 1
        for axis, target in enumerate(rng.permutation(3)):
            source[target, axis] = rng.choice([-1, 1]) * rng.choice([0.5, 0.995394, 1.0, 1.5, 3.0])
        source[:3, 3] = rng.choice([0.0, 0.25, 0.5, 1.0, 7.3], 3)
        target = np.diag([*rng.choice([0.5, 1.0, 1.5, 2.0], 3), 1.0])
        if trial % 3 == 0:
            target[:3, :3] = target[rng.permutation(3)][:, :3][:3]
        target[:3, 3] = source[:3, 3] + rng.choice([0.0, 0.5, -0.75, 1.0, -2.2], 3)
        out_shape = tuple(int(n) for n in rng.integers(1, 15, 3))
        image = Volume(rng.normal(100, 30, shape).astype(np.float32), source)
        labels = Volume(rng.integers(0, 4, shape).astype(np.uint8), source)
        for fill in (None, 0.0):
            got = image.resample_to_grid(target, out_shape, order=1, fill=fill).array
            want = _scipy_resample(image, target, out_shape, 1, fill)
            assert got.dtype == want.dtype == np.float32
            assert np.allclose(got, want, rtol=1e-6, atol=1e-5), trial
        got = labels.resample_to_grid(target, out_shape, order=0, fill=0).array
        assert got.dtype == np.uint8
        assert np.array_equal(got, _scipy_resample(labels, target, out_shape, 0, 0)), trial


def test_oblique_resampling_still_takes_the_general_path():
    volume = random_volume(dtype=np.float32)
    target = np.diag([1.3, 1.3, 1.3, 1.0])
    target[:3, 3] = volume.voxel_to_ras([2, 2, 2])
    got = volume.resample_to_grid(target, (9, 8, 7), order=1, fill=0.0).array
    assert np.array_equal(got, _scipy_resample(volume, target, (9, 8, 7), 1, 0.0))

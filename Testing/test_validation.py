import numpy as np
import pytest

from geometry import random_volume
from lesion_core.errors import InvalidImageError, ModalityError
from lesion_core.validation import Modality, guess_modality, validate_image
from lesion_core.volume import Volume


def head_ct(seed=0, unscaled=False) -> Volume:
    """A crude head CT in HU: air, skull ring, brain, CSF."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, 32)] * 3, indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    hu = np.where(r > 0.9, -1000.0, np.where(r > 0.8, 1000.0, 35.0))
    hu = hu + rng.normal(0, 5, hu.shape)
    return Volume((hu + 1024 if unscaled else hu).astype(np.float32), np.diag([2.0, 2, 2, 1]), "ct.nii.gz")


def brain_mr(seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(rng.uniform(0, 800, (32, 32, 32)).astype(np.float32), np.eye(4), "flair.nii.gz")


def expect(exc_type, volume, fragment, modality=None):
    with pytest.raises(exc_type) as info:
        validate_image(volume, modality)
    message = str(info.value)
    assert volume.source in message and fragment in message
    assert info.value.fix  # every error says what to do
    return message


def test_good_images_pass_and_singleton_4d_is_squeezed():
    assert validate_image(head_ct(), Modality.CT).shape == (32, 32, 32)
    mr = brain_mr()
    squeezed = validate_image(Volume(mr.array[..., None], mr.affine, mr.source), Modality.MR)
    assert squeezed.shape == (32, 32, 32)


def test_dimensionality_errors():
    expect(InvalidImageError, Volume(np.ones((8, 8)), np.eye(4), "slice.nii"), "2D")
    expect(InvalidImageError, Volume(np.ones((8, 8, 8, 3)), np.eye(4), "dwi.nii"), "4D")
    expect(InvalidImageError, Volume(np.arange(64.0).reshape(8, 8, 1), np.eye(4), "one.nii"), "single slice")


def test_non_finite_constant_and_empty():
    array = brain_mr().array.copy()
    array[3, 4, 5] = np.nan
    array[1, 1, 1] = np.inf
    expect(InvalidImageError, Volume(array, np.eye(4), "nan.nii"), "2 voxels are NaN or infinite")
    expect(InvalidImageError, Volume(np.full((8, 8, 8), 7.0), np.eye(4), "flat.nii"), "constant")
    expect(InvalidImageError, Volume(np.zeros((0, 8, 8)), np.eye(4), "empty.nii"), "no voxels")


def test_spacing_and_affine_errors():
    mr = brain_mr()
    expect(InvalidImageError, Volume(mr.array, np.diag([0.001, 0.001, 0.001, 1]), "m.nii"), "outside 0.1-10")
    expect(InvalidImageError, Volume(mr.array, np.diag([20.0, 1, 1, 1]), "big.nii"), "outside 0.1-10")
    singular = np.eye(4)
    singular[2, 2] = 0
    expect(InvalidImageError, Volume(mr.array, singular, "s.nii"), "singular")


def test_oblique_left_handed_affine_is_accepted():
    # LAS storage (one axis flipped, like the real T1) makes the voxel-to-RAS matrix
    # left-handed (negative determinant): that is legal and must pass.
    volume = random_volume(dtype=np.float32)
    las = volume.affine @ np.diag([-1.0, -1.0, -1.0, 1.0])
    assert np.linalg.det(las[:3, :3]) < 0
    validate_image(Volume(np.abs(volume.array), las, "oblique_las.nii"))


def test_modality_guess_and_wrong_modality_errors():
    assert guess_modality(head_ct()) == "CT"
    assert guess_modality(head_ct(unscaled=True)) == "CT-unscaled"
    assert guess_modality(brain_mr()) == "MR"
    expect(ModalityError, head_ct(), "looks like CT", Modality.MR)
    expect(ModalityError, brain_mr(), "does not look like CT in Hounsfield units", Modality.CT)
    message = expect(ModalityError, head_ct(unscaled=True), "not in Hounsfield units", Modality.CT)
    assert "rescale" in message


def test_real_t1_is_mr(real_t1_path):
    from lesion_core.io import read_volume
    volume = validate_image(read_volume(real_t1_path), Modality.MR)
    assert guess_modality(volume) == "MR"
    with pytest.raises(ModalityError):
        validate_image(volume, Modality.CT)


def test_modality_is_judged_on_the_whole_volume_not_one_slice():
    """Sampling every n-th voxel of the flattened array reads one slice when n divides the
    number of slices: here every 10th of 40 slices is all head, the rest mostly air."""
    ct = np.full((200, 250, 40), -1000.0, np.float32)
    ct[60:140, 60:190, :] = 40.0
    ct[:, :, ::10] = 40.0                      # the slices a stride of 10 would read
    volume = Volume(ct, np.diag([0.9, 0.9, 5.0, 1.0]))
    assert guess_modality(volume) == "CT"
    validate_image(volume, Modality.CT)

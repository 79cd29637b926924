"""deep-T1-WMH's resolution-gap loss: the forward model of a thick-slice acquisition."""

import numpy as np
import torch
from scipy import ndimage

from lesion_core.wmh.thick_slice import SliceProfile, thick_slice_average, thick_slice_loss


def _grids():
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    thick_affine = np.diag([1.0, 1.0, 5.0, 1.0])
    thick_affine[2, 3] = 2.0  # slice k covers fine z in [5k - 0.5, 5k + 4.5]
    return fine_affine, thick_affine


def _truth(shape=(24, 24, 40)):
    """Two 1 mm lesions of sizes that fall between thick slices."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")  # k: slice direction
    truth = ((i - 8) ** 2 / 16 + (j - 10) ** 2 / 16 + (k - 13) ** 2 / 9) <= 1
    truth |= ((i - 15) ** 2 / 9 + (j - 16) ** 2 / 9 + (k - 27) ** 2 / 4) <= 1
    return truth.astype(np.float32)


def test_average_of_a_constant_is_the_constant_inside_the_grid():
    fine_affine, thick_affine = _grids()
    ones = torch.ones(1, 1, 24, 24, 40)
    out = thick_slice_average(ones, fine_affine, thick_affine, (24, 24, 7), 2,
                              SliceProfile(5.0, "rect"))
    assert torch.allclose(out[..., 1:7], torch.ones_like(out[..., 1:7]), atol=1e-6)


def test_rect_profile_equals_the_mean_over_the_slab():
    fine_affine, thick_affine = _grids()
    truth = _truth()
    out = thick_slice_average(torch.from_numpy(truth)[None, None], fine_affine, thick_affine,
                              (24, 24, 7), 2, SliceProfile(5.0, "rect", samples=5))[0, 0].numpy()
    # rect samples at offsets -2..2 mm around 5k + 2 hit fine voxels 5k..5k+4 exactly.
    slab_means = truth.reshape(24, 24, 8, 5).mean(-1)[:, :, :7]
    assert np.allclose(out, slab_means, atol=1e-6)


def test_one_mm_truth_scores_better_than_the_upsampled_thick_label():
    fine_affine, thick_affine = _grids()
    profile = SliceProfile(5.0, "gaussian")
    truth = torch.from_numpy(_truth())[None, None]
    # The thick label is what the thick acquisition shows of the truth (partial volume).
    label = thick_slice_average(truth, fine_affine, thick_affine, (24, 24, 8), 2, profile)
    binary_thick = (label[0, 0].numpy() >= 0.5).astype(np.float32)
    upsampled = ndimage.zoom(binary_thick, (1, 1, 5), order=0)[:, :, :40]
    blocky = torch.from_numpy(np.ascontiguousarray(upsampled))[None, None]
    loss_truth = thick_slice_loss(truth, label, fine_affine, thick_affine, 2, profile)
    loss_blocky = thick_slice_loss(blocky, label, fine_affine, thick_affine, 2, profile)
    assert loss_truth < loss_blocky


def test_loss_is_differentiable_and_gradient_reaches_only_the_footprint():
    fine_affine, thick_affine = _grids()
    prediction = torch.full((1, 1, 24, 24, 40), 0.3, requires_grad=True)
    label = torch.zeros(1, 1, 24, 24, 3)
    label[0, 0, 10, 10, 1] = 1
    loss = thick_slice_loss(prediction, label, fine_affine, thick_affine, 2, SliceProfile(5.0, "rect"))
    loss.backward()
    grad = prediction.grad[0, 0]
    assert grad.abs().sum() > 0
    assert torch.all(grad[:, :, 16:] == 0)  # beyond the three thick slices: no influence

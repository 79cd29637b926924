"""The resolution-gap loss of deep-T1-WMH: compare a 1 mm prediction with thick-slice labels.

A label drawn on a thick-slice 2D FLAIR (e.g. 5 mm slices) says what the rater saw in each
thick voxel, i.e. in the prediction averaged over that voxel's footprint. So the loss
does not upsample the label to the T1 grid (which would teach blocky, slice-shaped
lesions); it applies the acquisition's forward model to the prediction instead: for every
thick voxel, the prediction is sampled along the slice normal across the slice profile
(Gaussian with FWHM = slice thickness, or rectangular) and averaged, and that average is
compared with the label (soft Dice + binary cross-entropy). Labels may be binary (a
rater's mask) or fractional (a mask resampled with the slice profile).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SliceProfile:
    """Slice sensitivity profile along the slice normal. Lengths in mm."""

    thickness_mm: float
    shape: str = "gaussian"      # "gaussian" (FWHM = thickness) or "rect" (width = thickness)
    samples: int = 11            # points per thick voxel along the normal

    def offsets_and_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample offsets (mm, along the normal) and normalised weights."""
        if self.shape == "rect":
            offsets = (np.arange(self.samples) + 0.5) / self.samples - 0.5
            offsets = offsets * self.thickness_mm
            weights = np.ones(self.samples)
        elif self.shape == "gaussian":
            sigma = self.thickness_mm / 2.3548
            offsets = np.linspace(-2.0 * sigma * 1.5, 2.0 * sigma * 1.5, self.samples)
            weights = np.exp(-0.5 * (offsets / sigma) ** 2)
        else:
            raise ValueError(f"unknown slice profile {self.shape!r}")
        return offsets, weights / weights.sum()


def thick_slice_grid(fine_shape: tuple[int, int, int], fine_affine: np.ndarray,
                     thick_affine: np.ndarray, thick_shape: tuple[int, int, int],
                     slice_axis: int, profile: SliceProfile) -> torch.Tensor:
    """Where :func:`thick_slice_average` samples a prediction on a fine grid of
    ``fine_shape``: ``grid_sample`` coordinates ``[1, S, N, 1, 3]`` (float32,
    ``align_corners``) of the S profile points of each of the N thick voxels. Depends on
    the geometry only, so a training sampler can compute it ahead of the network."""
    offsets, _ = profile.offsets_and_weights()
    normal = thick_affine[:3, slice_axis] / np.linalg.norm(thick_affine[:3, slice_axis])
    to_fine = np.linalg.inv(fine_affine)
    # thick voxel (i, j, k) + offset along the normal -> fine voxel, as one affine map
    matrix = to_fine[:3, :3] @ thick_affine[:3, :3]
    shift = to_fine[:3, :3] @ thick_affine[:3, 3] + to_fine[:3, 3]
    step = to_fine[:3, :3] @ normal
    # ... then onto grid_sample's [-1, 1] (align_corners), axes reversed to (k, j, i)
    scale = 2.0 / np.maximum(np.asarray(fine_shape, dtype=np.float64) - 1, 1)
    matrix, shift, step = (scale[:, None] * matrix)[::-1], (scale * shift - 1.0)[::-1], \
        (scale * step)[::-1]
    axes = [torch.arange(n, dtype=torch.float64) for n in thick_shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres = ijk @ torch.from_numpy(matrix.T.copy()) + torch.from_numpy(shift.copy())
    along = torch.from_numpy(offsets)[:, None, None] * torch.from_numpy(step.copy())
    return (centres[None] + along).float().reshape(1, len(offsets), -1, 1, 3)


def thick_slice_average(prediction: torch.Tensor, fine_affine: np.ndarray, thick_affine: np.ndarray,
                        thick_shape: tuple[int, int, int], slice_axis: int,
                        profile: SliceProfile, grid: torch.Tensor | None = None) -> torch.Tensor:
    """Prediction ``[B, C, I, J, K]`` on the fine grid, seen through the thick acquisition.

    ``fine_affine``/``thick_affine`` map voxels to RAS mm; ``slice_axis`` is the thick
    grid's axis (0, 1, 2) across slices; ``grid``: :func:`thick_slice_grid` of this
    geometry when already computed. Returns ``[B, C, *thick_shape]``, differentiable in
    ``prediction``. Points outside the fine grid count as 0 (no lesion).
    """
    _, weights = profile.offsets_and_weights()
    if grid is None:
        grid = thick_slice_grid(tuple(prediction.shape[2:]), fine_affine, thick_affine,
                                thick_shape, slice_axis, profile)
    grid = grid.to(prediction.device, prediction.dtype)
    sampled = F.grid_sample(prediction, grid.expand(prediction.shape[0], -1, -1, -1, -1),
                            mode="bilinear", padding_mode="zeros",
                            align_corners=True)                                      # [B, C, S, N, 1]
    w = torch.as_tensor(weights, dtype=prediction.dtype, device=prediction.device)
    averaged = (sampled[..., 0] * w[None, None, :, None]).sum(dim=2)
    return averaged.reshape(prediction.shape[:2] + tuple(thick_shape))


def thick_slice_loss(prediction: torch.Tensor, thick_label: torch.Tensor, fine_affine: np.ndarray,
                     thick_affine: np.ndarray, slice_axis: int, profile: SliceProfile,
                     dice_weight: float = 1.0, eps: float = 1e-6,
                     grid: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Dice + BCE between the profile-averaged prediction (probabilities in [0, 1],
    ``[B, 1, I, J, K]`` on the fine grid) and the thick label ``[B, 1, *thick_shape]``
    (``grid``: see :func:`thick_slice_average`)."""
    averaged = thick_slice_average(prediction, fine_affine, thick_affine,
                                   tuple(thick_label.shape[2:]), slice_axis, profile, grid)
    averaged = averaged.clamp(eps, 1 - eps)
    target = thick_label.to(averaged.dtype)
    bce = F.binary_cross_entropy(averaged, target)
    dims = tuple(range(1, averaged.ndim))
    dice = 1 - (2 * (averaged * target).sum(dims) + eps) / (averaged.sum(dims) + target.sum(dims) + eps)
    return bce + dice_weight * dice.mean()

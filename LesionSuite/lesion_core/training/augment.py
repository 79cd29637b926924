"""Training-time acquisition randomization: what another scanner would do to the same head.

:class:`AcquisitionAugment` says how often and how strongly; :class:`Augmenter` applies it
to one image ``[C, *spatial]`` (2 or 3 spatial axes, a torch tensor) with MONAI's
transforms where MONAI has one (bias field, Gaussian/Rician noise, gamma contrast,
histogram shift, Gibbs ringing, low resolution) and a slice-profile thick-slice simulation
of our own (MONAI's low-resolution transform is isotropic; a 2D FLAIR is not). Every
transform here keeps the voxel labels valid (no spatial change) and keeps intensity order
(the contrast curves are monotonic), so "lesion brighter than white matter" survives;
spatial augmentation stays with each task, which must move its labels too.

Randomness comes only from the ``rng`` passed per call (the training engine's), so a
resumed run draws the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AcquisitionAugment:
    """Probabilities (per image) and ranges of each randomization.

    Intensities are in the units of the normalised network input (e.g. brain median = 1),
    except ``offset`` which is in the input's units too (a HU offset for CT before
    windowing). Ranges are ``(low, high)`` drawn uniformly.
    """

    bias_p: float = 0.5
    # MONAI RandBiasField, degree 3, coefficients in (0, this): 0.04 gives a max/min field
    # ratio of 1.6-2.2 over the head, the strong end of an uncorrected 3 T scan.
    bias_coefficient: float = 0.04
    noise_p: float = 0.6
    noise_sd: float = 0.08              # noise SD drawn from (0, this)
    rician_p: float = 0.5               # of the noisy images, the share with Rician noise
    gamma_p: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)
    histogram_p: float = 0.3
    histogram_points: tuple[int, int] = (5, 10)
    gibbs_p: float = 0.2
    gibbs_alpha: tuple[float, float] = (0.0, 0.5)
    lowres_p: float = 0.25
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    thick_p: float = 0.3
    thick_mm: tuple[float, float] = (2.0, 6.0)
    scale: tuple[float, float] = (0.85, 1.15)
    offset: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def none(cls) -> "AcquisitionAugment":
        """No randomization at all (every probability 0, unit scale)."""
        return cls(bias_p=0.0, noise_p=0.0, gamma_p=0.0, histogram_p=0.0, gibbs_p=0.0,
                   lowres_p=0.0, thick_p=0.0, scale=(1.0, 1.0))


def thick_slices(image: torch.Tensor, axis: int, thickness_vox: float) -> torch.Tensor:
    """Simulate slices ``thickness_vox`` voxels thick along spatial ``axis`` of
    ``[C, *spatial]``: a Gaussian slice profile (FWHM = thickness), sampling every
    ``thickness`` voxels, linear interpolation back to the grid."""
    if thickness_vox <= 1.0:
        return image
    dim = axis + 1
    sigma = thickness_vox / 2.3548
    radius = max(int(math.ceil(3 * sigma)), 1)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(image.dtype)
    moved = image.movedim(dim, -1)
    flat = moved.reshape(-1, 1, moved.shape[-1])
    blurred = F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel.view(1, 1, -1))
    n = moved.shape[-1]
    positions = torch.arange(0.0, n, thickness_vox)
    sampled = blurred[..., positions.round().long().clamp(max=n - 1)]
    back = F.interpolate(sampled, size=n, mode="linear", align_corners=False)
    return back.reshape(moved.shape).movedim(-1, dim)


class Augmenter:
    """Applies :class:`AcquisitionAugment` to ``[C, *spatial]`` images on a grid of
    ``spacing_mm`` (one value or one per spatial axis)."""

    def __init__(self, config: AcquisitionAugment, spacing_mm: float | tuple[float, ...] = 1.0):
        from monai.transforms import (RandAdjustContrast, RandBiasField, RandGaussianNoise,
                                      RandGibbsNoise, RandHistogramShift, RandRicianNoise,
                                      RandSimulateLowResolution)

        self.config = config
        self.spacing = spacing_mm
        self._bias = RandBiasField(degree=3, coeff_range=(0.0, config.bias_coefficient),
                                   prob=1.0)
        self._histogram = RandHistogramShift(num_control_points=config.histogram_points,
                                             prob=1.0)
        self._gibbs = RandGibbsNoise(alpha=config.gibbs_alpha, prob=1.0)
        # MONAI upsamples with one interpolation mode; 2D images need the bilinear one.
        self._lowres = {n: RandSimulateLowResolution(zoom_range=config.lowres_zoom, prob=1.0,
                                                     upsample_mode=mode)
                        for n, mode in ((2, "bilinear"), (3, "trilinear"))}
        self._gamma = RandAdjustContrast(gamma=config.gamma, prob=1.0)
        # The standard deviation is drawn per image from (0, sd) by MONAI (sample_std).
        self._gaussian = RandGaussianNoise(std=config.noise_sd, prob=1.0)
        self._rician = RandRicianNoise(std=config.noise_sd, prob=1.0)

    def _monai(self, transform, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        transform.set_random_state(seed=int(rng.integers(2**31 - 1)))
        out = transform(image)
        out = out.as_tensor() if hasattr(out, "as_tensor") else out  # MONAI MetaTensor
        return torch.as_tensor(out, dtype=image.dtype)

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """A randomized copy of ``image`` (float tensor ``[C, *spatial]``)."""
        c = self.config
        out = image.float().clone()
        spatial = out.ndim - 1
        if c.thick_p and spatial == 3 and rng.uniform() < c.thick_p:
            axis = int(rng.integers(3))
            spacing = np.broadcast_to(np.asarray(self.spacing, float), (3,))[axis]
            out = thick_slices(out, axis, float(rng.uniform(*c.thick_mm)) / spacing)
        if c.lowres_p and rng.uniform() < c.lowres_p:
            out = self._monai(self._lowres[spatial], out, rng)
        if c.bias_p and rng.uniform() < c.bias_p:
            out = self._monai(self._bias, out, rng)
        if c.gamma_p and rng.uniform() < c.gamma_p:
            out = self._monai(self._gamma, out, rng)
        if c.histogram_p and rng.uniform() < c.histogram_p:
            out = self._monai(self._histogram, out, rng)
        if c.gibbs_p and rng.uniform() < c.gibbs_p:
            out = self._monai(self._gibbs, out, rng)
        out = out * float(rng.uniform(*c.scale)) + float(rng.uniform(*c.offset))
        if c.noise_p and rng.uniform() < c.noise_p:
            noise = self._rician if rng.uniform() < c.rician_p else self._gaussian
            out = self._monai(noise, out, rng)
        return out


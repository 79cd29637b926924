"""Transformation-invariant consistency: the map of a transformed image must equal the
transformed map of the image.

A :class:`Transform` has a spatial part and an intensity part. Tensors are
``[B, C, I, J, K]`` (images, maps) or ``[B, I, J, K]`` (region labels) on the working grid.

Spatial part, applied in this order (its inverse runs backwards):

1. **flips** along any of the axes i, j, k, then an optional **swap** of two axes of equal
   size, then **quarter turns** in the axial (i, j) plane when ``I == J``. These only move
   voxels, so their inverses are exact: ``inverse_map(map(x)) == x`` bit for bit;
2. an optional small **affine** (rotation about the grid centre, per-axis scale; voxel
   units, the grid is isotropic) resampled trilinearly with ``torch.grid_sample``. Its
   inverse is only approximate: resampling twice smooths, and what left the field of view
   is lost (:meth:`Transform.valid` marks the voxels whose source lies inside it).

Intensity part (spatial maps must be *invariant* to it): ``scale * x**gamma * bias + noise``
with a smooth multiplicative bias field and Gaussian noise, inside the brain (``x > 0``).

Region labels follow the voxels (nearest neighbour for the affine). A transform whose
voxel permutation is a mirror (determinant -1: an odd number of flips and swaps) turns a
left hemisphere into what any reader sees as a right one, so left and right labels (and
per-region ratings) are exchanged; proper motions (rotations) keep them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .config import IntensityAugment, TrainConfig


@dataclass(frozen=True, eq=False)
class Intensity:
    """Intensity transform ``scale * x**gamma * bias + noise`` (on voxels with ``x > 0``).

    ``bias_coarse``: log bias on a coarse ``[1, 1, n, n, n]`` grid (upsampled trilinearly).
    ``noise_sd`` and ``noise_seed`` make the noise reproducible.
    """

    gamma: float = 1.0
    scale: float = 1.0
    bias_coarse: torch.Tensor | None = None
    noise_sd: float = 0.0
    noise_seed: int = 0

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        inside = image > 0
        out = image.clamp_min(0.0).pow(self.gamma) * self.scale
        if self.bias_coarse is not None:
            field = F.interpolate(self.bias_coarse.to(image), size=image.shape[2:],
                                  mode="trilinear", align_corners=True)
            out = out * torch.exp(field)
        if self.noise_sd > 0:
            gen = torch.Generator(device="cpu").manual_seed(int(self.noise_seed))
            noise = torch.randn(image.shape, generator=gen).to(image) * self.noise_sd
            out = out + noise
        return torch.where(inside, out, image)


def _spatial_dims(x: torch.Tensor) -> tuple[int, int, int]:
    offset = x.ndim - 3
    return offset, offset + 1, offset + 2


def _affine_theta(matrix: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """``grid_sample`` theta ``[1, 3, 4]`` for ``src = matrix @ out`` in voxel units about the
    grid centre (``align_corners=True``; theta acts on (x, y, z) = (k, j, i))."""
    half = torch.tensor([(n - 1) / 2.0 for n in shape], dtype=torch.float64)
    normalised = torch.diag(1.0 / half) @ matrix.to(torch.float64) @ torch.diag(half)
    reverse = torch.flip(torch.eye(3, dtype=torch.float64), dims=[0])
    theta = reverse @ normalised @ reverse
    return torch.cat([theta, torch.zeros(3, 1, dtype=torch.float64)], 1)[None].float()


@dataclass(frozen=True, eq=False)
class Transform:
    """One transform T (see the module notes). ``affine``: 3x3 map from output voxel offsets
    (about the grid centre) to source offsets, or ``None``."""

    flips: tuple[int, ...] = ()
    swap: tuple[int, int] | None = None
    quarter_turns: int = 0
    affine: torch.Tensor | None = None
    intensity: Intensity | None = None

    # ------------------------------------------------------------------ facts
    @property
    def exact(self) -> bool:
        """True when the spatial part has an exact inverse (no affine resampling)."""
        return self.affine is None

    @property
    def swaps_sides(self) -> bool:
        """True for a mirror image: left and right region labels are exchanged."""
        return (len(self.flips) + (self.swap is not None)) % 2 == 1

    # --------------------------------------------------------- exact voxel moves
    def _check(self, x: torch.Tensor, dims: tuple[int, int, int]) -> None:
        if self.swap is not None and x.shape[dims[self.swap[0]]] != x.shape[dims[self.swap[1]]]:
            raise ValueError(f"cannot swap axes {self.swap} of unequal size in {tuple(x.shape)}")
        if self.quarter_turns % 4 and x.shape[dims[0]] != x.shape[dims[1]]:
            raise ValueError(f"quarter turns need I == J, got {tuple(x.shape)}")

    def _exact(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x)
        self._check(x, dims)
        if self.flips:
            x = torch.flip(x, dims=[dims[a] for a in self.flips])
        if self.swap is not None:
            x = x.transpose(dims[self.swap[0]], dims[self.swap[1]])
        if self.quarter_turns % 4:
            x = torch.rot90(x, self.quarter_turns, dims=(dims[0], dims[1]))
        return x.contiguous()

    def _exact_inverse(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x)
        if self.quarter_turns % 4:
            x = torch.rot90(x, -self.quarter_turns, dims=(dims[0], dims[1]))
        if self.swap is not None:
            x = x.transpose(dims[self.swap[0]], dims[self.swap[1]])
        if self.flips:
            x = torch.flip(x, dims=[dims[a] for a in self.flips])
        return x.contiguous()

    def _resample(self, x: torch.Tensor, matrix: torch.Tensor, mode: str) -> torch.Tensor:
        theta = _affine_theta(matrix, tuple(x.shape[2:])).to(x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 3, 4), list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)

    # ------------------------------------------------------------------ public
    def map(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial part on a map ``[B, C, I, J, K]`` (trilinear for the affine)."""
        x = self._exact(x)
        return x if self.affine is None else self._resample(x, self.affine, "bilinear")

    def inverse_map(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`map`: exact without the affine, approximate with it."""
        if self.affine is not None:
            x = self._resample(x, torch.linalg.inv(self.affine.double()).float(), "bilinear")
        return self._exact_inverse(x)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial then intensity part on an image ``[B, 1, I, J, K]``."""
        x = self.map(x)
        return x if self.intensity is None else self.intensity(x)

    def regions(self, labels: torch.Tensor) -> torch.Tensor:
        """Region labels ``[B, I, J, K]`` moved with the voxels (nearest neighbour), left and
        right exchanged for a mirror image."""
        out = self._exact(labels)
        if self.affine is not None:
            moved = self._resample(out[:, None].float(), self.affine, "nearest")
            out = moved[:, 0].round().to(labels.dtype)
        if self.swaps_sides:
            out = torch.where(out > 0, ((out - 1) ^ 1) + 1, out)
        return out

    def ratings(self, region_ratings: torch.Tensor) -> torch.Tensor:
        """Per-region ratings ``[B, R]`` (R even, pairs left/right) for the transformed image."""
        if not self.swaps_sides:
            return region_ratings
        order = torch.arange(region_ratings.shape[1]) ^ 1
        return region_ratings[:, order]

    def valid(self, shape: tuple[int, ...], device=None) -> torch.Tensor:
        """``[1, 1, I', J', K']`` float mask (T-space) of voxels whose source lies inside the
        field of view; all ones for exact transforms. ``shape``: ``[B, C, I, J, K]``."""
        ones = torch.ones((1, 1) + tuple(shape[2:]), device=device)
        moved = self.map(ones)
        return (moved > 1.0 - 1e-4).float()


def _rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    axis = axis / axis.norm()
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                      [-axis[1], axis[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=gen, dtype=torch.float64))


def random_intensity(gen: torch.Generator, augment: IntensityAugment) -> Intensity:
    """Draw an :class:`Intensity` from the ranges in ``augment``."""
    bias = torch.randn((1, 1, 4, 4, 4), generator=gen) * augment.bias_log_rms
    return Intensity(gamma=_uniform(gen, *augment.gamma), scale=_uniform(gen, *augment.scale),
                     bias_coarse=bias, noise_sd=augment.noise_sd,
                     noise_seed=int(torch.randint(0, 2 ** 31 - 1, (), generator=gen)))


def random_transform(shape: tuple[int, int, int], config: TrainConfig, gen: torch.Generator,
                     spatial: bool = True, intensity: bool = True) -> Transform:
    """Draw a transform for a working grid of ``shape`` ``(I, J, K)``: flips per axis with
    ``config.flip_probability``, quarter turns in the axial plane when ``I == J``, a small
    affine with ``config.affine_probability`` and the intensity transforms."""
    flips: tuple[int, ...] = ()
    turns, affine = 0, None
    if spatial:
        flips = tuple(a for a in range(3)
                      if torch.rand((), generator=gen) < config.flip_probability)
        if shape[0] == shape[1]:
            turns = int(torch.randint(0, 4, (), generator=gen))
        if torch.rand((), generator=gen) < config.affine_probability:
            axis = torch.randn(3, generator=gen, dtype=torch.float64)
            angle = math.radians(_uniform(gen, 0.0, config.max_rotation_deg))
            scales = torch.tensor([_uniform(gen, *config.scale_range) for _ in range(3)],
                                  dtype=torch.float64)
            affine = (_rotation(axis, angle) @ torch.diag(1.0 / scales)).float()
    return Transform(flips=flips, quarter_turns=turns, affine=affine,
                     intensity=random_intensity(gen, config.intensity) if intensity else None)


def consistency_pair(net, image: torch.Tensor, regions: torch.Tensor, transform: Transform):
    """``(loss, outputs, transformed_outputs)``: the network on the image and on ``T(image)``
    (with ``T(regions)``), and the mean squared difference between ``act(T(x))`` and
    ``T(act(x))`` over the valid voxels of T-space."""
    outputs = net(image, regions)
    moved_inputs = (transform.image(image), transform.regions(regions))
    if hasattr(net, "gate"):   # the gate follows the voxels, not the intensity changes
        moved = net(*moved_inputs, gate=transform.map(net.gate(image)))
    else:
        moved = net(*moved_inputs)
    target = transform.map(outputs["activation"])
    diff = (moved["activation"] - target) ** 2
    valid = transform.valid(tuple(image.shape), image.device).expand_as(diff)
    loss = (diff * valid).sum() / valid.sum().clamp_min(1.0)
    return loss, outputs, moved


def consistency_loss(net, image: torch.Tensor, regions: torch.Tensor,
                     transform: Transform) -> torch.Tensor:
    """Scalar consistency loss of ``net`` (returns a dict with ``"activation"``
    ``[B, 1, I, J, K]``) on ``image`` ``[B, 1, I, J, K]`` under ``transform``."""
    return consistency_pair(net, image, regions, transform)[0]

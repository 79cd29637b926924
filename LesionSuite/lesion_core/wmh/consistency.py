"""Transformation-invariant consistency: the map of a transformed image must equal the
transformed map of the image.

A :class:`Transform` is spatial. Tensors are ``[B, C, I, J, K]`` (images, maps) or
``[B, I, J, K]`` (region labels) on the working grid. Its parts, applied in this order (the
inverse runs backwards):

1. **flips** along any of the axes i, j, k, then an optional **swap** of two axes of equal
   size, then **quarter turns** in the axial (i, j) plane when ``I == J``. These only move
   voxels, so their inverses are exact: ``inverse_map(map(x)) == x`` bit for bit;
2. an optional small **affine** (rotation about the grid centre, per-axis scale; voxel
   units, the grid is isotropic) resampled trilinearly with ``torch.grid_sample``. Its
   inverse is only approximate: resampling twice smooths, and what left the field of view
   is lost (:meth:`Transform.valid` marks the voxels whose source lies inside it).

The acquisition part of the pair (what another scanner does to the same head, to which the
map must be invariant) is drawn by the training sampler with
:class:`lesion_core.training.augment.Augmenter` (:func:`~.preprocess.randomize_acquisition`)
and handed to :func:`consistency_pair` as the transformed image.

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

from .config import TrainConfig


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
    """One spatial transform T (see the module notes). ``affine``: 3x3 map from output voxel
    offsets (about the grid centre) to source offsets, or ``None``."""

    flips: tuple[int, ...] = ()
    swap: tuple[int, int] | None = None
    quarter_turns: int = 0
    affine: torch.Tensor | None = None

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


def random_transform(shape: tuple[int, int, int], config: TrainConfig,
                     gen: torch.Generator) -> Transform:
    """Draw a transform for a working grid of ``shape`` ``(I, J, K)``: flips per axis with
    ``config.flip_probability``, quarter turns in the axial plane when ``I == J`` and a
    small affine with ``config.affine_probability``."""
    flips = tuple(a for a in range(3) if torch.rand((), generator=gen) < config.flip_probability)
    turns, affine = 0, None
    if shape[0] == shape[1]:
        turns = int(torch.randint(0, 4, (), generator=gen))
    if torch.rand((), generator=gen) < config.affine_probability:
        axis = torch.randn(3, generator=gen, dtype=torch.float64)
        angle = math.radians(_uniform(gen, 0.0, config.max_rotation_deg))
        scales = torch.tensor([_uniform(gen, *config.scale_range) for _ in range(3)],
                              dtype=torch.float64)
        affine = (_rotation(axis, angle) @ torch.diag(1.0 / scales)).float()
    return Transform(flips=flips, quarter_turns=turns, affine=affine)


def consistency_pair(net, image: torch.Tensor, regions: torch.Tensor, transform: Transform,
                     moved_image: torch.Tensor | None = None):
    """``(loss, outputs, transformed_outputs)``: the network on ``image`` and on the
    transformed image ``moved_image`` (default ``T.map(image)``; in training, ``T(image)``
    with a random acquisition) with ``T(regions)``, and the mean squared difference
    between ``act(T(x))`` and ``T(act(x))`` over the valid voxels of T-space.

    A network with a hyperintensity gate computes, in the transformed branch, the gate of
    the transformed image itself, as prediction does on a new scan: noise, bias or thick
    slices then open the gate in normal tissue, and the rating of that branch can only
    stay right if the activation there stays low. (Our first runs moved the clean image's
    gate instead; their ratings never saw such a gate and rated scans without WMH 6-19.)"""
    if moved_image is None:
        moved_image = transform.map(image)
    outputs = net(image, regions)
    moved = net(moved_image, transform.regions(regions))
    target = transform.map(outputs["activation"])
    diff = (moved["activation"] - target) ** 2
    valid = transform.valid(tuple(image.shape), image.device).expand_as(diff)
    loss = (diff * valid).sum() / valid.sum().clamp_min(1.0)
    return loss, outputs, moved


def consistency_loss(net, image: torch.Tensor, regions: torch.Tensor, transform: Transform,
                     moved_image: torch.Tensor | None = None) -> torch.Tensor:
    """Scalar consistency loss of ``net`` (returns a dict with ``"activation"``
    ``[B, 1, I, J, K]``) on ``image`` ``[B, 1, I, J, K]`` under ``transform`` (see
    :func:`consistency_pair`)."""
    return consistency_pair(net, image, regions, transform, moved_image)[0]

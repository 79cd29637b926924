"""The rating loss: the only supervision of WMH-DualTasker.

Per subject, whatever ratings exist are used:

- **per-region ratings** (0-3, ``NaN`` where a region was not rated): binary cross-entropy
  on the cumulative probabilities ``P(rating_r > k)``, k = 0, 1, 2, against the targets
  ``[rating_r > k]``, averaged over the known (subject, region, k) entries;
- **total score** (0-30, ``NaN`` when unknown): smooth-L1 (beta 1 point) between the
  predicted total ``sum_r E_r`` and the rated total, for subjects whose per-region
  ratings are not all known (when they are, the total adds nothing).

A subject with no rating at all contributes nothing (and no gradient).

:func:`localization_loss` adds what the ratings say about single voxels, so that the map
localizes instead of painting a spatial prior that the hyperintensity gate then cuts:

- a region-side rated 0 holds no lesion, so every voxel of it is a **negative**, and so is
  every voxel outside the brain: binary cross-entropy of the activation against 0 there
  (gate-free: bright normal tissue such as ependyma or a bias-field hot spot in a region
  rated 0 must get a low activation, not only a closed gate);
- **sparsity**: the mean activation over the brain, so that a region's rated load is
  reached with as few voxels as possible (the gated, hyperintense ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .config import N_LEVELS


@dataclass
class RatingLoss:
    """The loss and its parts (tensors; ``n_*`` count the entries that contributed)."""

    loss: torch.Tensor
    ordinal: torch.Tensor
    total: torch.Tensor
    n_region_ratings: int
    n_totals: int


def rating_loss(outputs: dict[str, torch.Tensor], region_ratings: torch.Tensor,
                total: torch.Tensor, total_weight: float = 0.5) -> RatingLoss:
    """Rating loss of network ``outputs`` (``"cumulative_logits"`` ``[B, R, 3]``,
    ``"total"`` ``[B]``) against ``region_ratings`` ``[B, R]`` and ``total`` ``[B]``
    (floats, ``NaN`` = missing). ``loss = ordinal + total_weight * total``."""
    logits = outputs["cumulative_logits"]
    region_ratings = region_ratings.to(logits)
    total = total.to(logits)
    known = torch.isfinite(region_ratings)                                   # [B, R]
    levels = torch.arange(N_LEVELS, device=logits.device, dtype=logits.dtype)
    targets = (torch.nan_to_num(region_ratings)[:, :, None] > levels).to(logits)
    mask = known[:, :, None].expand_as(logits).to(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    n_entries = mask.sum()
    ordinal = (bce * mask).sum() / n_entries.clamp_min(1.0)
    use_total = torch.isfinite(total) & ~known.all(dim=1)
    error = F.smooth_l1_loss(outputs["total"], torch.nan_to_num(total), beta=1.0,
                             reduction="none")
    n_totals = use_total.sum()
    total_term = (error * use_total.to(logits)).sum() / n_totals.clamp_min(1).to(logits)
    return RatingLoss(ordinal + total_weight * total_term, ordinal, total_term,
                      int(known.sum()), int(n_totals))


@dataclass
class LocalizationLoss:
    """Negatives (mean BCE towards 0 over known-negative voxels) and sparsity (mean
    activation over the brain), tensors."""

    negative: torch.Tensor
    sparsity: torch.Tensor


def localization_loss(activation: torch.Tensor, regions: torch.Tensor, brain: torch.Tensor,
                      region_ratings: torch.Tensor) -> LocalizationLoss:
    """Voxel terms of an ``activation`` ``[B, 1, I, J, K]`` given the region labels
    ``[B, I, J, K]`` (1..R, 0 = none), the brain mask ``[B, I, J, K]`` and the per-region
    ratings ``[B, R]`` (``NaN`` = unknown; see the module notes)."""
    act = activation[:, 0].float()
    brain = brain > 0
    rated_zero = torch.nan_to_num(region_ratings, nan=-1.0) == 0                 # [B, R]
    padded = torch.cat([torch.zeros_like(rated_zero[:, :1]), rated_zero], dim=1)  # label 0
    in_zero_region = torch.gather(padded, 1, regions.long().flatten(1)).view_as(act)
    negative = (in_zero_region & brain) | ~brain
    bce = -torch.log1p(-act.clamp(max=1.0 - 1e-6))
    n_negative = negative.sum().clamp_min(1)
    sparsity = (act * brain).sum() / brain.sum().clamp_min(1)
    return LocalizationLoss((bce * negative).sum() / n_negative, sparsity)

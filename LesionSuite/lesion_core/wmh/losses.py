"""The rating loss: the only supervision of WMH-DualTasker.

Per subject, whatever ratings exist are used:

- **per-region ratings** (0-3, ``NaN`` where a region was not rated): binary cross-entropy
  on the cumulative probabilities ``P(rating_r > k)``, k = 0, 1, 2, against the targets
  ``[rating_r > k]``, averaged over the known (subject, region, k) entries;
- **total score** (0-30, ``NaN`` when unknown): smooth-L1 (beta 1 point) between the
  predicted total ``sum_r E_r`` and the rated total, for subjects whose per-region
  ratings are not all known (when they are, the total adds nothing).

A subject with no rating at all contributes nothing (and no gradient).
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

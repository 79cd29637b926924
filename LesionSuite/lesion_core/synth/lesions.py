"""What every lesion generator returns, so that the cohort code treats them alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .contrast import LesionLayer


@dataclass
class LesionInsertion:
    """Lesions (and mimics) inserted into one subject.

    ``layers``: painted over the tissues by :func:`~lesion_core.synth.contrast.render`.
    ``labels``: ground-truth label maps on the subject grid (integer, indexed ``[i, j, k]``),
    carried to every acquired grid with nearest-neighbour sampling.
    ``targets``: JSON-able weak labels and facts (ratings, counts, subtypes, positions).
    """

    layers: list[LesionLayer] = field(default_factory=list)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict = field(default_factory=dict)


def ball(shape, centre_ijk, radius_vox, spacing: float = 1.0, soft: float = 0.5) -> np.ndarray:
    """Soft-edged ellipsoid fraction map (0-1) in voxel units; ``radius_vox`` scalar or (3,).

    Computed only in the bounding box of the ball, so it is cheap for small lesions.
    """
    radius = np.broadcast_to(np.asarray(radius_vox, float), (3,))
    out = np.zeros(shape, np.float32)
    lo = np.maximum(np.floor(np.asarray(centre_ijk) - radius - 2).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(centre_ijk) + radius + 3).astype(int), shape)
    if np.any(hi <= lo):
        return out
    axes = [np.arange(a, b) - c for a, b, c in zip(lo, hi, centre_ijk)]
    r = np.sqrt((axes[0][:, None, None] / radius[0]) ** 2 + (axes[1][None, :, None] / radius[1]) ** 2
                + (axes[2][None, None, :] / radius[2]) ** 2) * radius.mean()
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = np.clip(radius.mean() + soft - r, 0, 2 * soft) / (2 * soft)
    return out

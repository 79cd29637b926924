"""Hard-example sampling for stage 1: patch centres drawn where a trained U-Net fails.

A stage 1 trained with patches centred on random bleed voxels sees large, dark bleeds
most (they have the most voxels) and misses small, faint ones; and it sees each mimic in
proportion to its size, not to how often it fools the network. Here a trained U-Net's
probability map of each training volume turns into two sampling pools:

* **bleeds**: each bleed (connected component of the truth) gets weight
  ``floor / n + (1 - floor) * (1 - peak) / sum(1 - peak)`` where ``peak`` is the U-Net's
  highest probability on it and ``n`` the number of bleeds: a missed bleed is drawn
  often, a found one still now and then (so it is not forgotten); the voxel within the
  bleed is uniform, so its size no longer matters;
* **negatives**: voxels at least 2 voxels from any bleed that are a mimic or where the
  U-Net says >= ``EXAMPLE_THRESHOLD``, weighted ``floor`` uniformly over those voxels
  plus ``1 - floor`` in proportion to the probability there: mimics and other false
  positives in proportion to how much they fool the network.

Pools are global over the volumes (a volume full of easy bleeds is drawn less). Voxel
indices are ``[i, j, k]`` on each :class:`.stage1.TrainingVolume`'s 1 mm grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .candidates import EXAMPLE_THRESHOLD


@dataclass
class WeightedPool:
    """Voxels of several volumes with sampling weights.

    ``volume`` int32 ``[N]`` volume indices, ``ijk`` int32 ``[N, 3]`` voxel indices,
    ``cumulative`` float64 ``[N]`` cumulative normalised weights (last element 1).
    """

    volume: np.ndarray
    ijk: np.ndarray
    cumulative: np.ndarray

    def __len__(self) -> int:
        return len(self.volume)

    def draw(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """One ``(volume index, voxel [i, j, k])`` with probability its weight."""
        n = int(np.searchsorted(self.cumulative, rng.uniform(), side="right"))
        n = min(n, len(self) - 1)
        return int(self.volume[n]), self.ijk[n]


def _pool(parts: list[tuple[int, np.ndarray, np.ndarray]]) -> WeightedPool:
    """``parts``: per volume ``(index, ijk [n, 3], weights [n])``, weights summing to 1
    over all parts."""
    parts = [p for p in parts if len(p[1])]
    if not parts:
        return WeightedPool(np.zeros(0, np.int32), np.zeros((0, 3), np.int32), np.zeros(0))
    volume = np.concatenate([np.full(len(ijk), index, np.int32) for index, ijk, _ in parts])
    ijk = np.concatenate([ijk for _, ijk, _ in parts]).astype(np.int32)
    weights = np.concatenate([w for _, _, w in parts]).astype(np.float64)
    cumulative = np.cumsum(weights)
    return WeightedPool(volume, ijk, cumulative / cumulative[-1])


@dataclass
class HardExamplePools:
    """Where the hard-example patches of stage 1 are centred (module notes)."""

    bleeds: WeightedPool
    negatives: WeightedPool
    #: per volume: the U-Net's peak probability on each bleed (component order)
    bleed_peaks: list[np.ndarray]


def hard_example_pools(volumes: Sequence, probabilities: Iterable[np.ndarray],
                       floor: float = 0.2) -> HardExamplePools:
    """The pools of the module notes from ``volumes`` (:class:`.stage1.TrainingVolume`)
    and a trained U-Net's probability map of each (same grid, taken one at a time so
    that only one map is in memory; :func:`.stage1.hard_example_pools_of` makes them).
    ``floor``: the share of each pool's weight spread uniformly."""
    bleeds, negatives, peaks = [], [], []
    for index, (tv, probability) in enumerate(zip(volumes, probabilities)):
        labels, count = ndimage.label(tv.cmb)
        peak = np.asarray(ndimage.maximum(probability, labels, np.arange(1, count + 1)),
                          np.float64).reshape(-1)
        peaks.append(peak)
        bleeds.append((index, labels, peak))
        near_bleed = ndimage.binary_dilation(tv.cmb, iterations=2)
        fooled = (tv.mimics | (probability >= EXAMPLE_THRESHOLD)) & ~near_bleed
        ijk = np.argwhere(fooled)
        negatives.append((index, ijk, probability[fooled].astype(np.float64)))
    return HardExamplePools(_bleed_pool(bleeds, floor), _negative_pool(negatives, floor), peaks)


def _bleed_pool(per_volume, floor: float) -> WeightedPool:
    n_bleeds = sum(len(peak) for _, _, peak in per_volume)
    missed = sum(float((1.0 - peak).sum()) for _, _, peak in per_volume)
    parts = []
    for index, labels, peak in per_volume:
        if not len(peak):
            continue
        ijk = np.argwhere(labels > 0)
        component = labels[tuple(ijk.T)] - 1
        size = np.bincount(component, minlength=len(peak))[component]
        per_bleed = floor / n_bleeds + (1 - floor) * (1.0 - peak) / max(missed, 1e-9)
        parts.append((index, ijk, per_bleed[component] / size))
    return _pool(parts)


def _negative_pool(per_volume, floor: float) -> WeightedPool:
    n_voxels = sum(len(ijk) for _, ijk, _ in per_volume)
    total = sum(float(p.sum()) for _, _, p in per_volume)
    return _pool([(index, ijk, floor / max(n_voxels, 1) + (1 - floor) * p / max(total, 1e-9))
                  for index, ijk, p in per_volume])

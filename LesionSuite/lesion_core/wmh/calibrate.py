"""Segmentation from the activation map, with thresholds calibrated on *ratings*.

The published inference keeps a voxel when the activation is high **and** the FLAIR is
hyperintense. Both are percentile thresholds (:class:`SegmentThresholds`):

- activation: the ``activation_percentile`` of the activations inside the brains of the
  calibration set, pooled, kept as a fixed level (``activation_level``), so a subject
  with little activation gets few voxels;
- FLAIR: the ``flair_percentile`` of the normalised FLAIR inside the calibration brains,
  pooled, also kept as a fixed level (``flair_level``; the FLAIR is bias-corrected and
  divided by its brain median, so one level means the same contrast in every subject).

:func:`calibrate_thresholds` tries a grid of percentile pairs and keeps the pair whose
segmented volumes best explain the ratings (:func:`ratings_explained`): the mean of a rank
score (the Spearman correlations of (a) segmented total volume vs rated total over
subjects and (b) segmented regional volume vs regional rating over the rated (subject,
region) pairs, whichever are available) and of the level agreement (the fraction of rated
region-sides whose segmented volume lies in the Wahlund volume range of the rated level,
:mod:`.agreement`). Only ratings enter; voxel truth is neither an argument nor read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from ..atlas.arwmc import REGIONS
from .agreement import agrees, rating_consistent_mask
from .config import SegmentThresholds

ACTIVATION_PERCENTILES = (90.0, 93.0, 95.0, 97.0, 98.0, 99.0, 99.5)
FLAIR_PERCENTILES = (80.0, 90.0, 95.0, 97.0, 98.0, 99.0, 99.5)
#: Growth levels tried, as fractions of the strict levels: of the activation level, and of
#: the FLAIR level's excess over the brain median (the FLAIR is normalised to median 1).
#: On 24 rated validation scans the ratings picked growth to 0.1 x the activation and
#: 0.6 x the FLAIR excess; the grid brackets that.
GROW_ACTIVATION_FRACTIONS = (0.1, 0.25, 0.5)
GROW_FLAIR_FRACTIONS = (0.5, 0.6, 0.7)
#: A grown candidate scoring within this much of the best pair without growth counts as a
#: tie and is preferred (see :func:`calibrate_thresholds`); on 24 rated scans one
#: region-side moving in or out of its level's range changes the score by ~0.002.
GROW_TIE_TOLERANCE = 0.005


@dataclass
class CalibrationCase:
    """One calibration subject on one grid (arrays ``[I, J, K]``): the working grid of the
    training subjects, or a scan's own grid (:mod:`.scan_calibration`).

    ``activation`` in [0, 1], ``flair`` normalised, ``brain`` bool, ``regions`` labels
    (0 = none), ``total`` rated total (``NaN`` unknown), ``region_ratings`` ``[R]``
    (``NaN`` unknown). ``voxel_ml``: this grid's voxel volume (default: the one given to
    the calibration). ``levels``: the model's predicted level per region-side; when given,
    the segmentation keeps nothing where it is 0, as prediction does.
    """

    activation: np.ndarray
    flair: np.ndarray
    brain: np.ndarray
    regions: np.ndarray
    total: float
    region_ratings: np.ndarray
    voxel_ml: float | None = None
    levels: dict | None = None


def segment(activation: np.ndarray, flair_normalised: np.ndarray, brain: np.ndarray,
            thresholds: SegmentThresholds) -> np.ndarray:
    """WMH mask (bool ``[I, J, K]``): inside ``brain``, activation above its level and FLAIR
    above its level (each a per-image brain percentile when the level is ``None``), grown
    to the growth levels when ``thresholds`` has them (see
    :class:`~lesion_core.wmh.config.SegmentThresholds`). Give as ``brain`` only the voxels
    a lesion may lie in (e.g. without the region-sides rated 0)."""
    brain = np.asarray(brain) > 0
    activation = np.asarray(activation, dtype=np.float32)
    flair = np.asarray(flair_normalised, dtype=np.float32)
    if not brain.any():
        return np.zeros(brain.shape, bool)
    level = thresholds.activation_level
    if level is None:
        level = float(np.percentile(activation[brain], thresholds.activation_percentile))
    flair_level = thresholds.flair_level
    if flair_level is None:
        flair_level = float(np.percentile(flair[brain], thresholds.flair_percentile))
    seeds = brain & (activation > level) & (flair > flair_level)
    if thresholds.grow_activation_level is None or not seeds.any():
        return seeds
    reach = brain & (activation > thresholds.grow_activation_level) & (
        flair > thresholds.grow_flair_level) | seeds
    components, count = ndimage.label(reach, structure=np.ones((3, 3, 3), bool))
    keep = np.zeros(count + 1, bool)
    keep[components[seeds]] = True
    keep[0] = False
    return keep[components]


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return -1.0
    rho = spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else -1.0


def ratings_explained(cases: Sequence[CalibrationCase], thresholds: SegmentThresholds,
                      default_voxel_ml: float) -> float:
    """How well the segmented volumes explain the ratings (-1..1): the mean of the rank
    score (mean Spearman rho of the totals and of the region-sides) and the level
    agreement (fraction of rated region-sides whose segmented volume lies in the range of
    the rated level, :mod:`.agreement`), so that a threshold must put the volumes in the
    right range, not only in the right order."""
    volumes, totals, regional, rated, hits = [], [], [], [], []
    for case in cases:
        brain = case.brain
        if case.levels is not None:
            brain = rating_consistent_mask(brain, case.regions, case.levels)
        mask = segment(case.activation, case.flair, brain, thresholds)
        voxel_ml = case.voxel_ml or default_voxel_ml
        if math.isfinite(case.total):
            volumes.append(mask.sum() * voxel_ml)
            totals.append(case.total)
        for index, rating in enumerate(case.region_ratings):
            if math.isfinite(rating):
                volume = (mask & (case.regions == index + 1)).sum() * voxel_ml
                regional.append(volume)
                rated.append(rating)
                hits.append(agrees(REGIONS[index], int(rating), volume))
    scores = [_spearman(v, r) for v, r in ((volumes, totals), (regional, rated)) if len(v) >= 3]
    if not scores:
        return -1.0
    rank = float(np.mean(scores))
    return 0.5 * (rank + float(np.mean(hits))) if hits else rank


def calibrate_thresholds(cases: Sequence[CalibrationCase], voxel_ml: float,
                         activation_percentiles: Sequence[float] = ACTIVATION_PERCENTILES,
                         flair_percentiles: Sequence[float] = FLAIR_PERCENTILES,
                         grow: bool = False) -> tuple[SegmentThresholds, list[dict]]:
    """The thresholds that best explain the ratings of ``cases`` (see the module notes),
    with the levels resolved on the pooled brains, and every candidate's score (rows of
    :func:`_row`).

    First the percentile pair without growth. With ``grow``, then every pair at least as
    strict as that one (both percentiles at or above it) with each pair of growth levels
    (:data:`GROW_ACTIVATION_FRACTIONS` x :data:`GROW_FLAIR_FRACTIONS` of its levels):
    growth only adds voxels, and it restores the extent stricter seeds give up, so the
    best seeds with growth are stricter than the best without (on 24 validation scans the
    best of a search over every pair lay there too). With ``grow`` the best *grown*
    candidate is chosen when it scores within :data:`GROW_TIE_TOLERANCE` of the best pair
    without growth: near the top the ratings score is flat (on 24 validation scans a
    model's best single pair and best grown candidate both scored 0.712), and a single
    pair that wins such a tie cuts large lesions to their cores (14 of 48 mL on a scan)."""
    if not cases:
        raise ValueError("calibration needs rated cases")
    pooled = np.concatenate([c.activation[c.brain > 0].ravel() for c in cases])
    pooled_flair = np.concatenate([c.flair[c.brain > 0].ravel() for c in cases])
    activation_levels = {p: float(np.percentile(pooled, p)) for p in activation_percentiles}
    flair_levels = {p: float(np.percentile(pooled_flair, p)) for p in flair_percentiles}
    candidates = [SegmentThresholds(float(pa), float(pf), activation_levels[pa], flair_levels[pf])
                  for pa in activation_percentiles for pf in flair_percentiles]
    table = [_row(c, ratings_explained(cases, c, voxel_ml)) for c in candidates]
    best = max(range(len(table)), key=lambda i: table[i]["score"])  # first of equals
    chosen, best_score = candidates[best], table[best]["score"]
    if grow:
        plain, grown, grown_score = chosen, None, -math.inf
        stricter = [seeds for seeds in candidates
                    if seeds.activation_percentile >= plain.activation_percentile
                    and seeds.flair_percentile >= plain.flair_percentile]
        for seeds in stricter:
            for fa in GROW_ACTIVATION_FRACTIONS:
                for ff in GROW_FLAIR_FRACTIONS:
                    candidate = dataclasses.replace(
                        seeds, grow_activation_level=fa * seeds.activation_level,
                        grow_flair_level=1.0 + ff * (seeds.flair_level - 1.0))
                    table.append(_row(candidate, ratings_explained(cases, candidate, voxel_ml)))
                    if table[-1]["score"] > grown_score + 1e-9:
                        grown, grown_score = candidate, table[-1]["score"]
        if grown_score >= best_score - GROW_TIE_TOLERANCE:
            chosen = grown
    return chosen, table


def _row(thresholds: SegmentThresholds, score: float) -> dict:
    """One row of the calibration table: the thresholds' fields and their score."""
    return {**dataclasses.asdict(thresholds), "score": score}


@torch.no_grad()
def calibration_cases(net, samples, device: str | torch.device = "cpu") -> list[CalibrationCase]:
    """Run ``net`` on :class:`~lesion_core.wmh.data.RatingSample` items -> cases."""
    net = net.to(device).eval()
    cases = []
    for sample in samples:
        data = sample.data
        out = net(data.image[None].to(device), data.regions[None].to(device))
        cases.append(CalibrationCase(out["activation"][0, 0].cpu().numpy(),
                                     data.image[0].numpy(), data.brain.numpy(),
                                     data.regions.numpy(), float(sample.total),
                                     sample.region_ratings.numpy()))
    return cases

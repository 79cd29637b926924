"""Image- or slice-level classification metrics (e.g. haemorrhage present / absent).

Labels are 0/1 (or bools), one per image or slice; scores are the classifier's outputs
(higher = more likely positive). A case is called positive when ``score >= threshold``.
Undefined values are ``nan``, never an exception: AUC when only one class is present,
sensitivity without positives, specificity without negatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from ._common import dataclass_dict, paired, safe_ratio


@dataclass(frozen=True)
class ClassificationScores:
    """ROC AUC (ties count one half) and sensitivity/specificity at ``threshold``."""

    n_positive: int
    n_negative: int
    auc: float
    threshold: float
    sensitivity: float
    specificity: float

    def as_dict(self) -> dict:
        """JSON-safe dict (nan -> None)."""
        return dataclass_dict(self)


def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y, s = paired(labels, scores, ("labels", "scores"))
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    return y.astype(bool), s


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2.

    Computed from the Mann-Whitney U statistic with mid-ranks, which equals the
    trapezoidal ROC area of ``sklearn.metrics.roc_auc_score``. ``nan`` when the labels
    hold only one class (or none).
    """
    y, s = _labels_scores(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    u = float(rankdata(s)[y].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def sensitivity_specificity(labels: Sequence[int], scores: Sequence[float],
                            threshold: float = 0.5) -> tuple[float, float]:
    """(TP / positives, TN / negatives) calling ``score >= threshold`` positive."""
    y, s = _labels_scores(labels, scores)
    called = s >= threshold
    return (safe_ratio(np.count_nonzero(called & y), np.count_nonzero(y)),
            safe_ratio(np.count_nonzero(~called & ~y), np.count_nonzero(~y)))


def classification_scores(labels: Sequence[int], scores: Sequence[float],
                          threshold: float = 0.5) -> ClassificationScores:
    """AUC plus sensitivity and specificity at ``threshold`` in one result."""
    y, _ = _labels_scores(labels, scores)
    sensitivity, specificity = sensitivity_specificity(labels, scores, threshold)
    return ClassificationScores(
        n_positive=int(y.sum()), n_negative=int((~y).sum()), auc=roc_auc(labels, scores),
        threshold=float(threshold), sensitivity=sensitivity, specificity=specificity)

"""Agreement between visual ratings (e.g. ARWMC scores): MAE, quadratic kappa, Pearson r.

Inputs are one value per case (1D sequences of equal length, no NaN). Undefined values
are ``nan`` and never an exception: Pearson r of a constant series or of fewer than two
cases, kappa when every rating of both raters falls into one category, anything of an
empty input.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ._common import dataclass_dict, paired


@dataclass(frozen=True)
class RatingScores:
    """Agreement of predicted with reference ratings over ``n`` cases.

    ``mae`` in rating points; ``kappa`` (quadratically weighted) in [-1, 1];
    ``pearson_r`` in [-1, 1].
    """

    n: int
    mae: float
    kappa: float
    pearson_r: float

    def as_dict(self) -> dict:
        """JSON-safe dict (nan -> None)."""
        return dataclass_dict(self)


def mean_absolute_error(reference: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean of |predicted - reference| (rating points); nan for no cases."""
    a, b = paired(reference, predicted, ("reference", "predicted"))
    return float(np.mean(np.abs(b - a))) if a.size else math.nan


def _integers(values: np.ndarray, name: str) -> np.ndarray:
    if np.any(values != np.round(values)):
        raise ValueError(f"{name} must be integer ratings for kappa (round predictions first)")
    return values.astype(np.int64)


def quadratic_weighted_kappa(rater_a: Sequence[int], rater_b: Sequence[int], *,
                             min_rating: int = 0, max_rating: int | None = None) -> float:
    """Cohen's kappa with quadratic weights for integer ratings in ``min_rating..max_rating``.

    With ``O`` the K x K table of observed rating pairs, ``E`` the table expected by
    chance (outer product of the two raters' category totals / n) and weights
    ``w_ij = (i - j)^2 / (K - 1)^2``: ``kappa = 1 - sum(w O) / sum(w E)``.
    Categories nobody used are allowed (they add zero rows/columns and do not change the
    value). ``max_rating`` defaults to the largest rating seen. Returns ``nan`` when
    ``sum(w E) = 0`` (all ratings in one category) or there are no cases; raises
    ``ValueError`` for non-integer ratings or ratings outside the range.
    """
    a, b = paired(rater_a, rater_b, ("rater_a", "rater_b"))
    if a.size == 0:
        return math.nan
    a, b = _integers(a, "rater_a"), _integers(b, "rater_b")
    top = int(max(a.max(), b.max())) if max_rating is None else int(max_rating)
    if min(a.min(), b.min()) < min_rating or max(a.max(), b.max()) > top:
        raise ValueError(f"ratings must lie in {min_rating}..{top}")
    k = top - min_rating + 1
    if k < 2:
        return math.nan
    observed = np.zeros((k, k))
    np.add.at(observed, (a - min_rating, b - min_rating), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / a.size
    categories = np.arange(k)
    weights = (categories[:, None] - categories[None, :]) ** 2 / (k - 1) ** 2
    chance = float((weights * expected).sum())
    if chance == 0.0:
        return math.nan
    return 1.0 - float((weights * observed).sum()) / chance


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation coefficient; nan for fewer than 2 cases or a constant series."""
    a, b = paired(x, y, ("x", "y"))
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(a, b)[0])


def rating_agreement(reference: Sequence[int], predicted: Sequence[float], *,
                     min_rating: int = 0, max_rating: int | None = None) -> RatingScores:
    """MAE, quadratic kappa and Pearson r of predicted against reference ratings.

    ``reference`` must be integers. MAE and r use ``predicted`` as given (a network's
    continuous output); for kappa the predictions are rounded half up to integers and
    clipped to ``min_rating..max_rating`` (``max_rating`` defaults to the largest
    reference rating if not given).
    """
    a, b = paired(reference, predicted, ("reference", "predicted"))
    if a.size == 0:
        return RatingScores(0, math.nan, math.nan, math.nan)
    a_int = _integers(a, "reference")
    top = int(a_int.max()) if max_rating is None else int(max_rating)
    b_int = np.clip(np.floor(b + 0.5), min_rating, max(top, min_rating)).astype(np.int64)
    return RatingScores(
        n=int(a.size), mae=float(np.mean(np.abs(b - a))),
        kappa=quadratic_weighted_kappa(a_int, b_int, min_rating=min_rating, max_rating=top),
        pearson_r=pearson_r(a, b))

"""Segmentation metrics of the MICCAI 2017 WMH Segmentation Challenge (Kuijf et al., IEEE TMI 2019).

All functions take a prediction and a ground truth on the same voxel grid: numpy arrays
indexed ``[i, j, k]`` with ``spacing`` (voxel size in mm along i, j, k), or
:class:`~lesion_core.volume.Volume` objects (their spacing is used and both must share
shape and affine, else ``ValueError``). A voxel is lesion when its value is >= 0.5
(1/True in a mask; the challenge's binarisation). ``ignore`` (optional mask) removes
voxels from both images before anything is measured: the challenge excluded its label 2
("other pathology") this way, i.e. ``truth == 1`` with ``ignore = truth == 2``.

Definitions (as in the challenge's evaluation script):

* Dice = 2 |P ∩ T| / (|P| + |T|).
* HD95 (mm): boundary voxels of each mask are the mask minus its erosion *in the slice
  plane only* (3x3 square neighbourhood in the two axes other than ``slice_axis``, default
  k; the image border counts as inside, so objects touching it are not given a boundary
  there). For every boundary voxel of T the Euclidean distance (mm, ``spacing``-scaled)
  to the nearest boundary voxel of P is taken, and vice versa; HD95 is the larger of the
  two 95th percentiles (``numpy.percentile``, linear interpolation). It is therefore a
  boundary-to-boundary distance, not a voxel-to-set one, and is symmetric.
  ``boundary="3d"`` erodes with the full 3x3x3 neighbourhood instead.
* AVD (%) = |V_P - V_T| / V_T * 100.
* Lesion-wise: lesions are 3D connected components (default 26-connectivity, the
  challenge's "fully connected"; ``connectivity`` may be 6, 18 or 26).
  recall = true components touching >= 1 predicted voxel / true components;
  precision = predicted components touching >= 1 true voxel / predicted components;
  F1 = 2 P R / (P + R).

Empty-mask conventions: both empty -> Dice 1.0; one empty -> Dice 0.0. HD95 is ``nan``
whenever either mask is empty (no boundary to measure from; the challenge also returned
nan for an empty prediction). AVD with an empty truth -> ``nan``. Lesion-wise: no true
components -> recall 1.0, no predicted components -> precision 1.0 (the challenge's
conventions), F1 = 0 when precision + recall = 0. ``as_dict()`` turns nan into ``None``.
Distances assume an orthogonal voxel grid (any rotation is fine; shear is not handled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
from scipy import ndimage

from ..volume import Volume
from ..jsonable import json_safe
from ._common import as_mask, dataclass_dict, on_one_grid, structure

# typing.Union: a module-level "|" union fails on the Python 3.9 of Slicer 5.6/5.8.
ImageLike = Union[np.ndarray, Volume]

#: Default connectivity of a lesion (3D neighbours): 26, as the challenge.
DEFAULT_CONNECTIVITY = 26


@dataclass(frozen=True)
class LesionwiseScores:
    """Lesion (connected component) detection scores of one case.

    ``n_true``/``n_pred``: components in truth/prediction; ``n_true_detected``: true
    components touched by the prediction; ``n_pred_correct``: predicted components
    touching the truth. ``recall``, ``precision``, ``f1`` in [0, 1].
    """

    recall: float
    precision: float
    f1: float
    n_true: int
    n_pred: int
    n_true_detected: int
    n_pred_correct: int

    def as_dict(self) -> dict:
        return dataclass_dict(self)


@dataclass(frozen=True)
class SegmentationScores:
    """The challenge's five metrics for one case, plus lesion counts and volumes.

    ``dice`` in [0, 1]; ``hd95_mm`` in mm; ``avd_percent`` in %; ``lesion_*`` in [0, 1];
    ``volume_true_ml``/``volume_pred_ml`` in millilitres (after ``ignore``).
    """

    dice: float
    hd95_mm: float
    avd_percent: float
    lesion_recall: float
    lesion_precision: float
    lesion_f1: float
    n_true_lesions: int
    n_pred_lesions: int
    volume_true_ml: float
    volume_pred_ml: float

    def as_dict(self) -> dict:
        """JSON-safe dict (nan -> None)."""
        return dataclass_dict(self)


def _masks(pred: ImageLike, truth: ImageLike, ignore, spacing=None):
    grid = on_one_grid(pred, truth, ignore, spacing=spacing,
                       names=("prediction", "truth", "ignore mask"))
    ignore_array = grid.arrays[2]
    return (as_mask(grid.arrays[0], ignore_array), as_mask(grid.arrays[1], ignore_array), grid)


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(p & t)) / total


def dice(pred: ImageLike, truth: ImageLike, *, ignore: ImageLike | None = None) -> float:
    """Dice similarity coefficient in [0, 1]; 1.0 when both masks are empty."""
    p, t, _ = _masks(pred, truth, ignore)
    return _dice(p, t)


def boundary_voxels(mask: np.ndarray, boundary: str = "inplane", slice_axis: int = 2) -> np.ndarray:
    """Boolean mask of the outer boundary of ``mask`` (mask minus its erosion).

    ``"inplane"``: erosion with a 3x3 square in the plane orthogonal to ``slice_axis``
    (the challenge's 2D erosion); ``"3d"``: erosion with the full 3x3x3 cube. Voxels
    outside the image count as foreground for the erosion.
    """
    if boundary == "inplane":
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
        element = np.zeros((3, 3, 3), dtype=bool)
        index: list = [slice(None)] * 3
        index[slice_axis] = 1
        element[tuple(index)] = True
    elif boundary == "3d":
        element = np.ones((3, 3, 3), dtype=bool)
    else:
        raise ValueError(f"boundary must be 'inplane' or '3d', got {boundary!r}")
    eroded = ndimage.binary_erosion(mask, structure=element, border_value=1)
    return mask & ~eroded


def _hd(p: np.ndarray, t: np.ndarray, spacing: np.ndarray, percentile: float,
        boundary: str, slice_axis: int) -> float:
    if not p.any() or not t.any():
        return float("nan")
    bp = boundary_voxels(p, boundary, slice_axis)
    bt = boundary_voxels(t, boundary, slice_axis)
    # Crop to the box around both boundaries: every voxel of both sets is inside, so the
    # nearest-voxel distances are unchanged and the distance transforms are cheaper.
    coords = np.argwhere(bp | bt)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(coords.min(axis=0), coords.max(axis=0)))
    bp, bt = bp[box], bt[box]
    to_p = ndimage.distance_transform_edt(~bp, sampling=spacing)[bt]
    to_t = ndimage.distance_transform_edt(~bt, sampling=spacing)[bp]
    return float(max(np.percentile(to_p, percentile), np.percentile(to_t, percentile)))


def hausdorff95(pred: ImageLike, truth: ImageLike, spacing: Sequence[float] | None = None, *,
                ignore: ImageLike | None = None, percentile: float = 95.0,
                boundary: str = "inplane", slice_axis: int = 2) -> float:
    """Challenge HD95 in mm (see the module docstring); ``nan`` if either mask is empty.

    ``spacing``: voxel size in mm along i, j, k (default 1 mm, or the Volume's).
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    p, t, grid = _masks(pred, truth, ignore, spacing)
    return _hd(p, t, grid.spacing, percentile, boundary, slice_axis)


def _avd(p: np.ndarray, t: np.ndarray) -> float:
    n_true = int(t.sum())
    if n_true == 0:
        return float("nan")
    return abs(int(p.sum()) - n_true) / n_true * 100.0


def absolute_volume_difference(pred: ImageLike, truth: ImageLike, *,
                               ignore: ImageLike | None = None) -> float:
    """|V_pred - V_true| / V_true * 100 (%); ``nan`` when the truth is empty."""
    p, t, _ = _masks(pred, truth, ignore)
    return _avd(p, t)


def _lesionwise(p: np.ndarray, t: np.ndarray, connectivity: int) -> LesionwiseScores:
    element = structure(connectivity)
    true_labels, n_true = ndimage.label(t, structure=element)
    pred_labels, n_pred = ndimage.label(p, structure=element)
    both = p & t
    n_true_detected = int(np.count_nonzero(np.unique(true_labels[both])))
    n_pred_correct = int(np.count_nonzero(np.unique(pred_labels[both])))
    recall = n_true_detected / n_true if n_true else 1.0
    precision = n_pred_correct / n_pred if n_pred else 1.0
    f1 = 0.0 if recall + precision == 0 else 2.0 * precision * recall / (precision + recall)
    return LesionwiseScores(float(recall), float(precision), float(f1), int(n_true), int(n_pred),
                            n_true_detected, n_pred_correct)


def lesionwise_scores(pred: ImageLike, truth: ImageLike, *,
                      connectivity: int = DEFAULT_CONNECTIVITY,
                      ignore: ImageLike | None = None) -> LesionwiseScores:
    """Lesion-wise recall, precision and F1 over connected components (see module docstring)."""
    p, t, _ = _masks(pred, truth, ignore)
    return _lesionwise(p, t, connectivity)


def count_lesions(mask: ImageLike, connectivity: int = DEFAULT_CONNECTIVITY) -> int:
    """Number of connected components of a mask (voxel value >= 0.5)."""
    grid = on_one_grid(mask, names=("mask",))
    return int(ndimage.label(as_mask(grid.arrays[0]), structure=structure(connectivity))[1])


def segmentation_scores(pred: ImageLike, truth: ImageLike,
                        spacing: Sequence[float] | None = None, *,
                        connectivity: int = DEFAULT_CONNECTIVITY,
                        ignore: ImageLike | None = None, boundary: str = "inplane",
                        slice_axis: int = 2) -> SegmentationScores:
    """All challenge metrics for one case.

    Args:
        pred, truth: masks indexed ``[i, j, k]`` (arrays or Volumes on one grid).
        spacing: voxel size in mm along i, j, k (arrays only; default 1 mm).
        connectivity: 6, 18 or 26 neighbours joining voxels into one lesion.
        ignore: voxels excluded from both masks (e.g. the challenge's label 2).
        boundary, slice_axis: how HD95 finds boundary voxels (see :func:`boundary_voxels`).
    """
    p, t, grid = _masks(pred, truth, ignore, spacing)
    lesions = _lesionwise(p, t, connectivity)
    ml = grid.voxel_volume_mm3 / 1000.0
    return SegmentationScores(
        dice=_dice(p, t), hd95_mm=_hd(p, t, grid.spacing, 95.0, boundary, slice_axis),
        avd_percent=_avd(p, t), lesion_recall=lesions.recall,
        lesion_precision=lesions.precision, lesion_f1=lesions.f1,
        n_true_lesions=lesions.n_true, n_pred_lesions=lesions.n_pred,
        volume_true_ml=float(t.sum()) * ml, volume_pred_ml=float(p.sum()) * ml)


def summarize_segmentation(scores: Iterable[SegmentationScores]) -> dict:
    """Cohort mean and sample standard deviation of each score, ignoring nan.

    Returns a JSON-safe ``{"n_cases": N, "<field>": {"mean", "sd", "n"}}`` where ``n`` is
    the number of cases with a defined value (e.g. HD95 is undefined for empty masks).
    """
    scores = list(scores)
    out: dict = {"n_cases": len(scores)}
    for name in SegmentationScores.__dataclass_fields__:
        values = np.array([getattr(s, name) for s in scores], dtype=np.float64)
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if values.size else math.nan
        sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
        out[name] = {"mean": mean, "sd": sd, "n": int(values.size)}
    return json_safe(out)

"""Object-level detection metrics for cerebral microbleeds (CMB) and other small lesions.

As reported by SHIVA-CMB (Sci Rep 2024) and the CMB knowledge-distillation work
(Sundaresan et al. 2023): per image TP, FP, FN, sensitivity, precision, F1; over a cohort
FPavg (false positives per image), FPcmb (false positives per true CMB) and the
cluster-wise TPR (detected true CMBs / all true CMBs).

Images are arrays indexed ``[i, j, k]`` with ``spacing`` (mm along i, j, k) or
:class:`~lesion_core.volume.Volume` objects (same shape and affine required). An object
is a 3D connected component (``connectivity`` 6, 18 or 26; default 26) of the voxels
>= 0.5, or, with ``relabel=False``, each distinct positive integer value of a label map
(so that touching CMBs labelled apart stay apart).

Two rules make a detection true; each true object is matched at most once and each
detection at most once (one-to-one), so ``TP + FP = detections`` and ``TP + FN = true
objects``, and a CMB found twice gives one TP and one FP:

* **overlap** (:func:`detect_by_overlap`): a predicted component is a TP when it shares
  >= 1 voxel with a true component. Pairs are matched greedily, largest overlap (voxel
  count) first, ties by lower predicted then lower true id.
* **distance** (:func:`detect_by_distance`): a detection point is a TP when it lies within
  ``max_distance_mm`` (inclusive; default 5 mm, this project's choice - about the largest
  CMB's radius plus one voxel) of a true CMB centre. Centres of components are their
  centroids (centre of mass of the voxels). Pairs are matched greedily, nearest first,
  ties by lower detection then lower true index. Distances are Euclidean in mm: world
  (RAS) mm through the affine when a Volume is given, else ``ijk * spacing``.

Undefined ratios are ``nan`` (``None`` in ``as_dict()``): sensitivity of an image without
true CMBs, precision of an image without detections. Such images still count in the
cohort totals (their FPs enter FPavg and FPcmb).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist

from ..volume import Volume
from ._common import (Grid, as_mask, check_spacing, dataclass_dict, on_one_grid, safe_ratio,
                      structure)

#: Default distance (mm) within which a point detection hits a true CMB centre.
DEFAULT_MAX_DISTANCE_MM = 5.0
#: Default connectivity of an object (3D neighbours).
DEFAULT_CONNECTIVITY = 26

# typing.Union: a module-level "|" union fails on the Python 3.9 of Slicer 5.6/5.8.
ImageLike = Union[np.ndarray, Volume]
PointsOrImage = Union[ImageLike, Sequence[Sequence[float]]]


@dataclass(frozen=True)
class DetectionCounts:
    """Detection result of one image.

    ``matches``: ``(detection id, true id)`` pairs that are TPs; ``false_positive_ids``:
    unmatched detections; ``missed_ids``: unmatched true objects. Ids are component labels
    (label maps; see :func:`label_objects`) or 0-based row indices (point lists).
    """

    tp: int
    fp: int
    fn: int
    matches: tuple[tuple[int, int], ...] = ()
    false_positive_ids: tuple[int, ...] = ()
    missed_ids: tuple[int, ...] = ()

    @property
    def n_true(self) -> int:
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    @property
    def sensitivity(self) -> float:
        """TP / true objects; nan without true objects."""
        return safe_ratio(self.tp, self.n_true)

    @property
    def precision(self) -> float:
        """TP / detections; nan without detections."""
        return safe_ratio(self.tp, self.n_pred)

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); nan when there is neither a detection nor a true object."""
        return safe_ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict:
        """JSON-safe dict of the counts, ids and ratios (nan -> None)."""
        return dataclass_dict(self, ("n_true", "n_pred", "sensitivity", "precision", "f1"))


@dataclass(frozen=True)
class DetectionSummary:
    """Cohort aggregation of :class:`DetectionCounts`.

    ``sensitivity`` is the cluster-wise TPR (all TPs / all true objects, pooled over
    images); ``precision`` and ``f1`` are pooled likewise. ``fp_avg`` = FPs / images
    (every image counts, with or without true CMBs); ``fp_cmb`` = FPs / true CMBs.
    ``mean_case_sensitivity`` averages the per-image sensitivity over the
    ``n_images_with_true`` images that have true CMBs.
    """

    n_images: int
    n_images_with_true: int
    n_true: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    sensitivity: float
    precision: float
    f1: float
    fp_avg: float
    fp_cmb: float
    mean_case_sensitivity: float

    @property
    def cluster_tpr(self) -> float:
        """Cluster-wise true positive rate, the same number as ``sensitivity``."""
        return self.sensitivity

    def as_dict(self) -> dict:
        """JSON-safe dict (nan -> None), with ``cluster_tpr`` spelled out."""
        return dataclass_dict(self, ("cluster_tpr",))


def summarize_detections(counts: Iterable[DetectionCounts]) -> DetectionSummary:
    """Pool per-image counts into FPavg, FPcmb, cluster-wise TPR, precision and F1."""
    counts = list(counts)
    tp = sum(c.tp for c in counts)
    fp = sum(c.fp for c in counts)
    fn = sum(c.fn for c in counts)
    with_true = [c for c in counts if c.n_true > 0]
    mean_sens = (float(np.mean([c.sensitivity for c in with_true])) if with_true
                 else float("nan"))
    return DetectionSummary(
        n_images=len(counts), n_images_with_true=len(with_true), n_true=tp + fn,
        n_pred=tp + fp, tp=tp, fp=fp, fn=fn, sensitivity=safe_ratio(tp, tp + fn),
        precision=safe_ratio(tp, tp + fp), f1=safe_ratio(2 * tp, 2 * tp + fp + fn),
        fp_avg=safe_ratio(fp, len(counts)), fp_cmb=safe_ratio(fp, tp + fn),
        mean_case_sensitivity=mean_sens)


def label_objects(image: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY,
                  relabel: bool = True) -> np.ndarray:
    """Integer object map (0 = background) as the detection functions see it.

    ``relabel=True``: connected components of the voxels >= 0.5, numbered 1..N in
    ``scipy.ndimage.label`` order. ``relabel=False``: the image's own positive integer
    labels (non-integer or negative values raise ``ValueError``).
    """
    image = np.asarray(image)
    if relabel:
        return ndimage.label(as_mask(image), structure=structure(connectivity))[0]
    if image.dtype == bool:
        return image.astype(np.int32)
    if not np.issubdtype(image.dtype, np.integer):
        if not np.all(np.isfinite(image)) or np.any(image != np.round(image)):
            raise ValueError("relabel=False needs an integer label map (one value per object)")
        image = image.astype(np.int64)
    if np.any(image < 0):
        raise ValueError("relabel=False needs labels >= 0 (0 = background)")
    return image


def _greedy(candidates: list[tuple], pred_ids: Iterable[int],
            true_ids: Iterable[int]) -> DetectionCounts:
    """One-to-one matching: take ``(sort key, pred id, true id)`` candidates in order."""
    used_pred: set = set()
    used_true: set = set()
    matches = []
    for _, pred_id, true_id in sorted(candidates):
        if pred_id in used_pred or true_id in used_true:
            continue
        used_pred.add(pred_id)
        used_true.add(true_id)
        matches.append((int(pred_id), int(true_id)))
    fps = tuple(int(i) for i in pred_ids if i not in used_pred)
    missed = tuple(int(i) for i in true_ids if i not in used_true)
    return DetectionCounts(tp=len(matches), fp=len(fps), fn=len(missed),
                           matches=tuple(sorted(matches)), false_positive_ids=fps,
                           missed_ids=missed)


def detect_by_overlap(pred: ImageLike, truth: ImageLike, *,
                      connectivity: int = DEFAULT_CONNECTIVITY, relabel: bool = True,
                      ignore: ImageLike | None = None) -> DetectionCounts:
    """Overlap rule: a predicted object overlapping a true object is a TP (one-to-one).

    Args:
        pred, truth: masks or label maps indexed ``[i, j, k]`` (arrays or Volumes on one grid).
        connectivity: 6, 18 or 26; used when ``relabel`` is True.
        relabel: find connected components (True) or use the maps' own labels (False).
        ignore: voxels (>= 0.5) removed from both maps first.
    """
    grid = on_one_grid(pred, truth, ignore, names=("prediction", "truth", "ignore mask"))
    pred_labels = label_objects(grid.arrays[0], connectivity, relabel)
    true_labels = label_objects(grid.arrays[1], connectivity, relabel)
    if grid.arrays[2] is not None:
        keep = ~as_mask(grid.arrays[2])
        pred_labels = np.where(keep, pred_labels, 0)
        true_labels = np.where(keep, true_labels, 0)
    both = (pred_labels > 0) & (true_labels > 0)
    candidates = []
    if both.any():
        pairs, overlap = np.unique(np.stack([pred_labels[both], true_labels[both]], axis=1),
                                   axis=0, return_counts=True)
        candidates = [(-int(n), int(p), int(t)) for (p, t), n in zip(pairs, overlap)]
    pred_ids = [int(i) for i in np.unique(pred_labels) if i > 0]
    true_ids = [int(i) for i in np.unique(true_labels) if i > 0]
    return _greedy(candidates, pred_ids, true_ids)


def match_points(pred_mm: Sequence[Sequence[float]], true_mm: Sequence[Sequence[float]],
                 max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM) -> DetectionCounts:
    """Distance rule on points already in mm (N x 3 each): nearest pairs first, one-to-one.

    Ids in the result are row indices (0-based) of ``pred_mm`` and ``true_mm``.
    """
    if not np.isfinite(max_distance_mm) or max_distance_mm < 0:
        raise ValueError(f"max_distance_mm must be a distance >= 0 in mm, got {max_distance_mm!r}")
    pred = _points(pred_mm, "detections")
    true = _points(true_mm, "true CMB centres")
    candidates = []
    if len(pred) and len(true):
        distances = cdist(pred, true)
        for p, t in zip(*np.nonzero(distances <= max_distance_mm)):
            candidates.append((float(distances[p, t]), int(p), int(t)))
    return _greedy(candidates, range(len(pred)), range(len(true)))


def _points(points, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 3))
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must be N x 3 coordinates, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contain NaN or infinite coordinates")
    return array


def _is_image(item) -> bool:
    return isinstance(item, Volume) or np.asarray(item).ndim == 3


def object_centres(labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Ids and centroids (N x 3, continuous voxel indices ``[i, j, k]``) of labelled objects."""
    ids = [int(i) for i in np.unique(labels) if i > 0]
    if not ids:
        return ids, np.zeros((0, 3))
    centres = ndimage.center_of_mass(np.ones(labels.shape), labels, ids)
    return ids, np.asarray(centres, dtype=np.float64).reshape(-1, 3)


def detect_by_distance(pred: PointsOrImage, truth: PointsOrImage,
                       spacing: Sequence[float] | float | None = None, *,
                       max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
                       points_unit: str = "voxel", connectivity: int = DEFAULT_CONNECTIVITY,
                       relabel: bool = True) -> DetectionCounts:
    """Distance rule: a detection within ``max_distance_mm`` of a true CMB centre is a TP.

    Args:
        pred, truth: each either a label map / mask (array ``[i, j, k]`` or Volume; its
            objects' centroids are used, ids = labels) or N x 3 points (ids = row index).
        spacing: voxel size in mm along i, j, k when no Volume is given (default 1 mm).
        max_distance_mm: largest centre distance (mm, inclusive) of a hit; default 5 mm.
        points_unit: ``"voxel"`` (points are ``[i, j, k]`` indices) or ``"mm"`` (RAS mm
            when a Volume is given, else the ``ijk * spacing`` frame).
        connectivity, relabel: how objects are found in maps (see :func:`label_objects`).
    """
    if points_unit not in ("voxel", "mm"):
        raise ValueError(f"points_unit must be 'voxel' or 'mm', got {points_unit!r}")
    images = [item if _is_image(item) else None for item in (pred, truth)]
    if any(image is not None for image in images):
        grid = on_one_grid(*images, spacing=spacing, names=("prediction", "truth"))
    else:
        grid = Grid([None, None], check_spacing(spacing), None)
    centres_mm = []
    ids = []
    for item, array in zip((pred, truth), grid.arrays):
        if array is not None:
            item_ids, centres = object_centres(label_objects(array, connectivity, relabel))
            centres_mm.append(grid.voxel_to_mm(centres))
        else:
            points = _points(item, "points")
            item_ids = list(range(len(points)))
            centres_mm.append(grid.voxel_to_mm(points) if points_unit == "voxel" else points)
        ids.append(item_ids)
    result = match_points(centres_mm[0], centres_mm[1], max_distance_mm)
    # Translate row indices back into the inputs' ids (labels for maps).
    pred_ids, true_ids = ids
    return DetectionCounts(
        tp=result.tp, fp=result.fp, fn=result.fn,
        matches=tuple(sorted((pred_ids[p], true_ids[t]) for p, t in result.matches)),
        false_positive_ids=tuple(pred_ids[p] for p in result.false_positive_ids),
        missed_ids=tuple(true_ids[t] for t in result.missed_ids))

"""Metrics against small cases computed by hand (lesion_core.metrics)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from lesion_core import metrics as m
from lesion_core.volume import Volume


def box(shape, *slices):
    """Boolean array of ``shape`` with the given index box set."""
    out = np.zeros(shape, dtype=bool)
    out[tuple(slices)] = True
    return out


def strict_json(result) -> dict:
    """as_dict() must survive JSON without NaN extensions."""
    out = result.as_dict()
    json.dumps(out, allow_nan=False)
    return out


# --------------------------------------------------------------------- segmentation
def test_dice_of_two_overlapping_cubes():
    truth = box((10, 10, 10), slice(2, 6), slice(2, 6), slice(2, 6))  # 4^3 = 64 voxels
    shifted = box((10, 10, 10), slice(4, 8), slice(2, 6), slice(2, 6))  # overlap 2*4*4 = 32
    assert m.dice(shifted, truth) == pytest.approx(2 * 32 / (64 + 64))  # 0.5
    diagonal = box((10, 10, 10), slice(3, 7), slice(3, 7), slice(3, 7))  # overlap 3^3 = 27
    assert m.dice(diagonal, truth) == pytest.approx(54 / 128)
    assert m.dice(truth, truth) == 1.0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_hd95_two_voxels_three_apart_along_a_2mm_axis_is_6mm(axis):
    spacing = [1.0, 1.0, 1.0]
    spacing[axis] = 2.0
    a = np.zeros((9, 9, 9), dtype=np.uint8)
    b = np.zeros_like(a)
    a[4, 4, 4] = 1
    index = [4, 4, 4]
    index[axis] = 7
    b[tuple(index)] = 1
    assert m.hausdorff95(a, b, spacing) == pytest.approx(6.0)
    affine = np.diag(spacing + [1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    assert m.hausdorff95(Volume(a, affine), Volume(b, affine)) == pytest.approx(6.0)


def test_hd95_is_the_interpolated_95th_percentile_not_the_max():
    # Truth: a line of 19 voxels along k. Prediction: the same line plus one outlier
    # voxel 10 voxels away along j (spacing 2 mm -> 20 mm). Every voxel of a one-voxel-
    # thick line is a boundary voxel (erosion is in-plane). Distances truth -> prediction
    # are 19 zeros; prediction -> truth are 19 zeros and 20 mm. numpy's 95th percentile of
    # those 20 values sits at rank 0.95 * 19 = 18.05: 0 + 0.05 * (20 - 0) = 1.0 mm.
    truth = box((11, 17, 19), slice(5, 6), slice(5, 6), slice(0, 19))
    pred = truth.copy()
    pred[5, 15, 0] = True
    spacing = (1.0, 2.0, 1.0)
    assert m.hausdorff95(pred, truth, spacing) == pytest.approx(1.0)
    assert m.hausdorff95(pred, truth, spacing, percentile=100) == pytest.approx(20.0)
    assert m.hausdorff95(truth, pred, spacing) == pytest.approx(1.0)  # symmetric


def test_hd95_uses_boundary_voxels_of_each_mask():
    # One slice: truth a 5x5 square, prediction the centred 3x3 square. Boundaries: the
    # 16-voxel ring of the truth, the 8-voxel ring of the prediction (only its centre is
    # eroded). Prediction ring -> truth ring: all 1 mm. Truth ring -> prediction ring:
    # 12 edge voxels at 1 mm, 4 corners at sqrt(2) mm; rank 0.95 * 15 = 14.25 lies among
    # the corners, so HD95 = sqrt(2). (Measured to the whole prediction it would be the same
    # here, but measured from all truth voxels the inner ones would add zeros.)
    truth = box((9, 9, 3), slice(2, 7), slice(2, 7), slice(1, 2))
    pred = box((9, 9, 3), slice(3, 6), slice(3, 6), slice(1, 2))
    assert m.hausdorff95(pred, truth) == pytest.approx(math.sqrt(2.0))


def test_boundary_is_in_plane_by_default():
    cube = box((5, 5, 5), slice(1, 4), slice(1, 4), slice(1, 4))
    assert m.boundary_voxels(cube).sum() == 27 - 3  # the centre column survives erosion
    assert m.boundary_voxels(cube, "3d").sum() == 27 - 1
    assert m.boundary_voxels(cube, slice_axis=0).sum() == 24


def test_absolute_volume_difference_percent():
    truth = box((10, 10, 10), slice(0, 4), slice(0, 4), slice(0, 4))  # 64
    pred = box((10, 10, 10), slice(0, 3), slice(0, 4), slice(0, 4))  # 48
    assert m.absolute_volume_difference(pred, truth) == pytest.approx(25.0)
    assert m.absolute_volume_difference(truth, pred) == pytest.approx(16 / 48 * 100)
    assert math.isnan(m.absolute_volume_difference(truth, np.zeros_like(truth)))


def three_true_lesions():
    truth = np.zeros((20, 20, 20), dtype=np.uint8)
    truth[1:4, 1:4, 1:4] = 1
    truth[10:13, 1:4, 1:4] = 1
    truth[1:4, 10:13, 10:13] = 1
    pred = np.zeros_like(truth)
    pred[2:5, 2:5, 2:5] = 1  # touches lesion 1
    pred[11, 2, 2] = 1  # touches lesion 2 with one voxel
    pred[15:18, 15:18, 15:18] = 1  # false positive component
    return pred, truth


def test_lesionwise_recall_precision_f1():
    pred, truth = three_true_lesions()
    scores = m.lesionwise_scores(pred, truth)
    assert (scores.n_true, scores.n_pred) == (3, 3)
    assert (scores.n_true_detected, scores.n_pred_correct) == (2, 2)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 / 3)
    strict_json(scores)


def test_connectivity_decides_what_is_one_lesion():
    corner = np.zeros((3, 3, 3), dtype=np.uint8)
    corner[0, 0, 0] = corner[1, 1, 1] = 1  # share only a corner
    edge = np.zeros((3, 3, 3), dtype=np.uint8)
    edge[0, 0, 0] = edge[1, 1, 0] = 1  # share an edge
    assert [m.count_lesions(corner, c) for c in (6, 18, 26)] == [2, 2, 1]
    assert [m.count_lesions(edge, c) for c in (6, 18, 26)] == [2, 1, 1]
    assert m.count_lesions(corner) == 1  # default 26
    with pytest.raises(ValueError, match="connectivity"):
        m.count_lesions(corner, 8)


def test_segmentation_scores_both_empty():
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    scores = m.segmentation_scores(empty, empty)
    assert scores.dice == 1.0
    assert math.isnan(scores.hd95_mm) and math.isnan(scores.avd_percent)
    assert (scores.lesion_recall, scores.lesion_precision, scores.lesion_f1) == (1.0, 1.0, 1.0)
    out = strict_json(scores)
    assert out["hd95_mm"] is None and out["avd_percent"] is None


def test_segmentation_scores_one_empty():
    truth = box((6, 6, 6), slice(1, 3), slice(1, 3), slice(1, 3))
    empty = np.zeros_like(truth)
    missed = m.segmentation_scores(empty, truth)
    assert missed.dice == 0.0 and math.isnan(missed.hd95_mm)
    assert missed.avd_percent == pytest.approx(100.0)
    assert (missed.lesion_recall, missed.lesion_precision, missed.lesion_f1) == (0.0, 1.0, 0.0)
    spurious = m.segmentation_scores(truth, empty)
    assert spurious.dice == 0.0 and math.isnan(spurious.hd95_mm)
    assert math.isnan(spurious.avd_percent)
    assert (spurious.lesion_recall, spurious.lesion_precision,
            spurious.lesion_f1) == (1.0, 0.0, 0.0)
    strict_json(missed), strict_json(spurious)


def test_segmentation_scores_on_volumes_use_their_spacing_and_volume():
    pred, truth = three_true_lesions()
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    scores = m.segmentation_scores(Volume(pred, affine), Volume(truth, affine))
    assert scores.volume_true_ml == pytest.approx(81 * 0.5 / 1000)
    assert scores.volume_pred_ml == pytest.approx((27 + 1 + 27) * 0.5 / 1000)
    assert scores.lesion_f1 == pytest.approx(2 / 3)
    assert scores.hd95_mm == pytest.approx(m.hausdorff95(pred, truth, (0.5, 0.5, 2.0)))
    summary = m.summarize_segmentation([scores, scores])
    assert summary["n_cases"] == 2 and summary["dice"]["mean"] == pytest.approx(scores.dice)
    json.dumps(summary, allow_nan=False)


def test_grid_mismatches_are_refused():
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape"):
        m.dice(a, np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="affine"):
        m.dice(Volume(a, np.eye(4)), Volume(a, np.diag([1.0, 1.0, 1.5, 1.0])))
    with pytest.raises(ValueError, match="spacing"):
        m.hausdorff95(Volume(a, np.eye(4)), a, spacing=(2.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="3D"):
        m.dice(np.zeros((4, 4)), np.zeros((4, 4)))


def test_ignore_mask_removes_challenge_label_2():
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[4, 4, 4] = 2  # "other pathology": not scored
    pred = (labels > 0).astype(np.uint8)
    scores = m.segmentation_scores(pred, labels == 1, ignore=labels == 2)
    assert scores.dice == 1.0 and scores.n_pred_lesions == 1 and scores.hd95_mm == 0.0


# ------------------------------------------------------------------------ detection
def cmb_truth():
    truth = np.zeros((30, 30, 30), dtype=np.uint8)
    truth[4:6, 4:6, 4:6] = 1  # CMB 1, centroid (4.5, 4.5, 4.5)
    truth[13:17, 13:17, 13:17] = 1  # CMB 2 (4 voxels wide), centroid (14.5, ...)
    truth[24:26, 4:6, 4:6] = 1  # CMB 3, centroid (24.5, 4.5, 4.5)
    return truth


def test_overlap_rule_with_a_double_detection():
    truth = cmb_truth()
    pred = np.zeros_like(truth)
    pred[5, 5, 5] = 1  # hits CMB 1
    pred[16, 16, 15:19] = 1  # hits CMB 2 with 2 voxels
    pred[13, 13, 11:14] = 1  # also hits CMB 2, with 1 voxel (separate component)
    pred[14, 17:19, 17] = 1  # next to CMB 2 but not in it: no hit under the overlap rule
    counts = m.detect_by_overlap(pred, truth)
    assert (counts.tp, counts.fp, counts.fn) == (2, 2, 1)
    assert counts.sensitivity == pytest.approx(2 / 3)
    assert counts.precision == pytest.approx(2 / 4)
    assert counts.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    pred_ids, true_ids = m.label_objects(pred), m.label_objects(truth)
    larger = int(pred_ids[16, 16, 15])
    assert (larger, int(true_ids[14, 14, 14])) in counts.matches  # larger overlap wins
    assert int(pred_ids[13, 13, 11]) in counts.false_positive_ids
    assert counts.missed_ids == (int(true_ids[24, 4, 4]),)
    out = strict_json(counts)
    assert out["n_true"] == 3 and out["n_pred"] == 4


def test_overlap_rule_with_own_labels_keeps_touching_objects_apart():
    truth = np.zeros((6, 6, 6), dtype=np.int16)
    truth[1, 1, 1], truth[1, 1, 2] = 1, 2  # two CMBs that touch
    pred = np.zeros_like(truth)
    pred[1, 1, 1:3] = 1  # one component over both
    assert m.detect_by_overlap(pred, truth).tp == 1
    counts = m.detect_by_overlap(pred, truth, relabel=False)
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 1)


def test_distance_rule_with_anisotropic_spacing():
    truth = cmb_truth()
    spacing = (1.0, 1.0, 3.0)
    points = [
        [4.5, 4.5, 5.5],  # 1 voxel along k = 3 mm from CMB 1: hit
        [14.5, 14.5, 16.5],  # 2 voxels along k = 6 mm from CMB 2: miss (> 5 mm)
        [24.5, 8.5, 4.5],  # 4 voxels along j = 4 mm from CMB 3: hit
    ]
    counts = m.detect_by_distance(points, truth, spacing)
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 1)
    assert counts.false_positive_ids == (1,)
    assert m.detect_by_distance(points, truth, spacing, max_distance_mm=6.0).tp == 3
    in_mm = np.asarray(points) * spacing
    assert m.detect_by_distance(in_mm, truth, spacing, points_unit="mm") == counts
    # A Volume brings its affine: mm points are then RAS.
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = [-100.0, 20.0, 7.0]
    ras = in_mm + affine[:3, 3]
    assert m.detect_by_distance(ras, Volume(truth, affine), points_unit="mm").tp == 2


def test_distance_rule_matches_nearest_first_and_once():
    true_mm = [[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]
    pred_mm = [[3.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
    counts = m.match_points(pred_mm, true_mm, max_distance_mm=5.0)
    # Pairs by distance: (2,0) 0.5, (1,0) 1, (0,1) 1, ... -> p2-t0, then p0-t1; p1 left over.
    assert counts.matches == ((0, 1), (2, 0))
    assert counts.false_positive_ids == (1,) and (counts.tp, counts.fp, counts.fn) == (2, 1, 0)


def test_distance_rule_on_two_label_maps_uses_centroids():
    truth = cmb_truth()
    pred = np.zeros_like(truth)
    pred[4:7, 4:7, 4:7] = 1  # centroid (5, 5, 5): 0.87 voxel from CMB 1
    pred[14, 14, 14] = 1  # duplicate of CMB 2 ...
    pred[15, 15, 17] = 1  # ... and a second one further away: one TP, one FP
    counts = m.detect_by_distance(pred, truth, max_distance_mm=2.0)
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 1)


def test_image_without_cmbs_counts_every_detection_as_fp():
    empty = np.zeros((10, 10, 10), dtype=np.uint8)
    counts = m.detect_by_distance([[1, 1, 1], [5, 5, 5]], empty)
    assert (counts.tp, counts.fp, counts.fn) == (0, 2, 0)
    assert math.isnan(counts.sensitivity) and counts.precision == 0.0 and counts.f1 == 0.0
    assert strict_json(counts)["sensitivity"] is None
    pred = empty.copy()
    pred[1, 1, 1] = pred[5, 5, 5] = 1
    assert m.detect_by_overlap(pred, empty).fp == 2
    nothing = m.detect_by_overlap(empty, empty)
    assert math.isnan(nothing.sensitivity) and math.isnan(nothing.f1)


def test_cohort_fp_avg_fp_cmb_and_cluster_tpr():
    cases = [m.DetectionCounts(tp=2, fp=1, fn=1), m.DetectionCounts(tp=0, fp=2, fn=0),
             m.DetectionCounts(tp=1, fp=0, fn=0)]
    summary = m.summarize_detections(cases)
    assert (summary.n_images, summary.n_images_with_true, summary.n_true) == (3, 2, 4)
    assert summary.fp_avg == pytest.approx(3 / 3)  # 3 FPs over 3 images
    assert summary.fp_cmb == pytest.approx(3 / 4)  # 3 FPs per 4 true CMBs
    assert summary.cluster_tpr == summary.sensitivity == pytest.approx(3 / 4)
    assert summary.precision == pytest.approx(3 / 6)
    assert summary.mean_case_sensitivity == pytest.approx((2 / 3 + 1) / 2)
    assert strict_json(summary)["cluster_tpr"] == pytest.approx(0.75)


# -------------------------------------------------------------------------- ratings
# Observed table O (rows rater A, columns rater B, categories 0..2), n = 10:
#   [[2, 1, 0],
#    [1, 2, 1],
#    [0, 1, 2]]      row sums = column sums = (3, 4, 3)
# Expected E = outer((3,4,3), (3,4,3)) / 10 = [[.9, 1.2, .9], [1.2, 1.6, 1.2], [.9, 1.2, .9]]
# Weights (i-j)^2 (the 1/(K-1)^2 factor cancels): [[0,1,4],[1,0,1],[4,1,0]]
# sum(wO) = 1+1+1+1 = 4;  sum(wE) = 4 * 1.2 + 2 * 4 * 0.9 = 12;  kappa = 1 - 4/12 = 2/3.
RATER_A = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
RATER_B = [0, 0, 1, 0, 1, 1, 2, 1, 2, 2]


def test_quadratic_kappa_hand_computed_3x3():
    assert m.quadratic_weighted_kappa(RATER_A, RATER_B) == pytest.approx(2 / 3)
    # Unused categories (3, 4) change nothing.
    assert m.quadratic_weighted_kappa(RATER_A, RATER_B, max_rating=4) == pytest.approx(2 / 3)
    assert m.quadratic_weighted_kappa(RATER_A, RATER_A) == pytest.approx(1.0)
    assert math.isnan(m.quadratic_weighted_kappa([1, 1, 1], [1, 1, 1]))
    with pytest.raises(ValueError, match="integer"):
        m.quadratic_weighted_kappa([0.5, 1], [1, 1])


def test_quadratic_kappa_agrees_with_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 31, 60)
    b = np.clip(a + rng.integers(-4, 5, 60), 0, 30)
    expected = sk.cohen_kappa_score(a, b, weights="quadratic", labels=np.arange(31))
    assert m.quadratic_weighted_kappa(a, b, max_rating=30) == pytest.approx(expected)


def test_mae_and_pearson():
    assert m.mean_absolute_error([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    # x - mean = (-1, 0, 1), y - mean = (-1, 1, 0): r = 1 / sqrt(2 * 2) = 0.5
    assert m.pearson_r([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert m.pearson_r([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(m.pearson_r([2, 2, 2], [1, 2, 3]))
        assert math.isnan(m.pearson_r([1], [1]))
    with pytest.raises(ValueError, match="values"):
        m.pearson_r([1, 2], [1, 2, 3])


def test_rating_agreement_rounds_predictions_for_kappa_only():
    scores = m.rating_agreement([0, 1, 2, 3], [0.4, 1.5, 2.2, 2.6])
    assert scores.mae == pytest.approx((0.4 + 0.5 + 0.2 + 0.4) / 4)
    rounded = m.quadratic_weighted_kappa([0, 1, 2, 3], [0, 2, 2, 3])
    assert scores.kappa == pytest.approx(rounded)
    assert scores.n == 4 and strict_json(scores)["n"] == 4


# ------------------------------------------------------------------- classification
def test_auc_with_ties_and_single_class():
    # Positive/negative pairs: (.5 vs .1) 1, (.5 vs .5) 1/2, (.9 vs .1) 1, (.9 vs .5) 1 -> 3.5/4
    assert m.roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert math.isnan(m.roc_auc([1, 1, 1], [0.2, 0.3, 0.4]))
    assert math.isnan(m.roc_auc([], []))


def test_auc_agrees_with_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 80)
    scores = np.round(rng.random(80) + 0.3 * labels, 1)  # rounding makes many ties
    assert m.roc_auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores))


def test_sensitivity_specificity_at_threshold():
    labels = [0, 0, 1, 1, 1]
    scores = [0.2, 0.6, 0.5, 0.7, 0.4]  # called positive: score >= 0.5
    sens, spec = m.sensitivity_specificity(labels, scores, threshold=0.5)
    assert (sens, spec) == (pytest.approx(2 / 3), pytest.approx(1 / 2))
    result = m.classification_scores(labels, scores)
    assert (result.n_positive, result.n_negative) == (3, 2)
    assert strict_json(m.classification_scores([1, 1], [0.2, 0.9]))["auc"] is None

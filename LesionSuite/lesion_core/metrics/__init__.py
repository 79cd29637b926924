"""Evaluation metrics of the papers LesionSuite implements.

* :mod:`.segmentation` - WMH challenge metrics (Dice, HD95 in mm, AVD in %, lesion-wise
  recall and F1) for WMH and ICH masks;
* :mod:`.detection` - CMB detection (TP/FP/FN by overlap or centre distance, FPavg,
  FPcmb, cluster-wise TPR);
* :mod:`.ratings` - visual-rating agreement (MAE, quadratic kappa, Pearson r);
* :mod:`.classification` - image/slice labels (ROC AUC, sensitivity, specificity).

Per-case functions take numpy arrays indexed ``[i, j, k]`` with spacing in mm per axis,
or :class:`~lesion_core.volume.Volume` objects on one grid. Results are frozen
dataclasses whose ``as_dict()`` is JSON-safe (nan -> None).
"""

from .classification import (ClassificationScores, classification_scores, roc_auc,
                             sensitivity_specificity)
from .detection import (DEFAULT_MAX_DISTANCE_MM, DetectionCounts, DetectionSummary,
                        detect_by_distance, detect_by_overlap, label_objects, match_points,
                        object_centres, summarize_detections)
from .ratings import (RatingScores, mean_absolute_error, pearson_r, quadratic_weighted_kappa,
                      rating_agreement)
from .segmentation import (DEFAULT_CONNECTIVITY, LesionwiseScores, SegmentationScores,
                           absolute_volume_difference, boundary_voxels, count_lesions, dice,
                           hausdorff95, lesionwise_scores, segmentation_scores,
                           summarize_segmentation)

__all__ = [
    "ClassificationScores", "classification_scores", "roc_auc", "sensitivity_specificity",
    "DEFAULT_MAX_DISTANCE_MM", "DetectionCounts", "DetectionSummary", "detect_by_distance",
    "detect_by_overlap", "label_objects", "match_points", "object_centres",
    "summarize_detections",
    "RatingScores", "mean_absolute_error", "pearson_r", "quadratic_weighted_kappa",
    "rating_agreement",
    "DEFAULT_CONNECTIVITY", "LesionwiseScores", "SegmentationScores",
    "absolute_volume_difference", "boundary_voxels", "count_lesions", "dice", "hausdorff95",
    "lesionwise_scores", "segmentation_scores", "summarize_segmentation",
]

"""Threshold calibration of the CMB detector on validation images with known microbleeds.

Each validation image is run once through :func:`.predict.predict_cmb` with permissive
thresholds (every candidate of the example threshold, no stage 2 rejection); then:

* **stage 1 threshold**: the highest value on a grid at which the pooled sensitivity
  (distance rule, 5 mm) is still ``sensitivity_target`` of the sensitivity at the lowest
  threshold. A candidate is taken to survive a threshold when its peak probability does
  (a component that would split at the higher threshold counts once: a close
  approximation for bleeds of a few voxels);
* **stage 2 threshold**: among the candidates above that threshold that pass the
  clean-up rules, the highest student probability at which at most ``max_stage2_loss`` of
  their true detections are lost.

The air-distance rule needs registration and is left out of the calibration runs. The
networks run at the training's precision (``stage1_train.optim.precision``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..io import read_volume
from ..metrics.detection import label_objects, match_points, object_centres
from .candidates import EXAMPLE_THRESHOLD
from .model import CMBConfig, CMBModel

GRID = tuple(np.round(np.arange(0.1, 0.96, 0.05), 2))


def _case(model: CMBModel, row, precision: str) -> dict:
    from .predict import predict_cmb

    image, truth = read_volume(row.image), read_volume(row.cmb)
    prediction = predict_cmb(image, model, row.sequence, locate=False, precision=precision)
    _, centres = object_centres(label_objects(np.asarray(truth.array)))
    cands = prediction.candidates
    return {"true": truth.voxel_to_ras(centres) if len(centres) else np.zeros((0, 3)),
            "centres": np.array([c.centre_ras for c in cands]).reshape(-1, 3),
            "p1": np.array([c.stage1_probability for c in cands]),
            "p2": np.array([c.stage2_probability for c in cands]),
            "clean": np.array([c.dropped_by is None for c in cands], bool)}


def detection_counts(cases: list[dict], keep) -> tuple[int, int, int]:
    """Pooled (TP, FP, true) when ``keep(case) -> bool array`` selects the detections."""
    tp = fp = n_true = 0
    for case in cases:
        counts = match_points(case["centres"][keep(case)], case["true"])
        tp, fp, n_true = tp + counts.tp, fp + counts.fp, n_true + counts.n_true
    return tp, fp, n_true


def calibrate(stage1, student, rows, config: CMBConfig, train_config) -> tuple[CMBConfig, dict]:
    """Set ``config``'s stage 1 and stage 2 thresholds from ``rows`` (see module notes).
    Returns the new config and a report of the figures behind the choice."""
    permissive = replace(config, stage2_threshold=0.0, stage1=replace(
        config.stage1, candidates=replace(config.stage1.candidates, threshold=EXAMPLE_THRESHOLD)))
    model = CMBModel(None, stage1, student, None, permissive)
    precision = train_config.stage1_train.optim.precision
    cases = [_case(model, row, precision) for row in rows]
    base_tp, _, n_true = detection_counts(cases, lambda c: c["p1"] >= 0)
    t1 = GRID[0]
    for t in GRID:
        tp, _, _ = detection_counts(cases, lambda c, t=t: c["p1"] >= t)
        if tp >= config_target(base_tp, train_config.sensitivity_target):
            t1 = t
    stage1_keep = lambda c: (c["p1"] >= t1) & c["clean"]
    s1_tp, s1_fp, _ = detection_counts(cases, stage1_keep)
    t2 = 0.05
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        tp, _, _ = detection_counts(cases, lambda c, t=t: stage1_keep(c) & (c["p2"] >= t))
        if tp >= config_target(s1_tp, 1.0 - train_config.max_stage2_loss):
            t2 = float(t)
    tp, fp, _ = detection_counts(cases, lambda c: stage1_keep(c) & (c["p2"] >= t2))
    calibrated = replace(config, stage2_threshold=t2, stage1=replace(
        config.stage1, candidates=replace(config.stage1.candidates, threshold=float(t1))))
    report = {"images": len(cases), "true_cmbs": n_true,
              "stage1_threshold": float(t1), "stage2_threshold": t2,
              "sensitivity_lowest_threshold": base_tp / max(n_true, 1),
              "after_stage1_and_cleanup": {"sensitivity": s1_tp / max(n_true, 1),
                                           "fp_avg": s1_fp / max(len(cases), 1)},
              "after_stage2": {"sensitivity": tp / max(n_true, 1),
                               "fp_avg": fp / max(len(cases), 1)}}
    return calibrated, report


def config_target(count: int, share: float) -> float:
    """The smallest count that keeps ``share`` of ``count`` (float comparison safe)."""
    return share * count - 1e-9

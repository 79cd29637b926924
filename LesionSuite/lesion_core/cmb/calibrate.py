"""Threshold calibration of the CMB detector on validation images with known microbleeds.

Each validation image is run once through :func:`.predict.predict_cmb` with permissive
thresholds (every candidate of the example threshold, no stage 2 rejection); then:

* **stage 1 threshold**: the highest value on a grid at which the pooled sensitivity
  (distance rule, 5 mm) is still ``sensitivity_target`` of the sensitivity at the lowest
  threshold. A candidate is taken to survive a threshold when its peak probability does
  (a component that would split at the higher threshold counts once: a close
  approximation for bleeds of a few voxels);
* **stage 2 threshold**: among the candidates above that threshold that pass the
  clean-up rules, the lowest student probability at which all stages give at most
  ``max_fp_per_scan`` false positives per scan (the operating point the detector is
  judged at); without that budget, or where no threshold meets it, the highest one at
  which at most ``max_stage2_loss`` of their true detections are lost.

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


def permissive_config(config: CMBConfig) -> CMBConfig:
    """``config`` keeping every candidate of the stage 1 example threshold and rejecting
    none at stage 2: one run scores every candidate that any threshold could keep."""
    return replace(config, stage2_threshold=0.0, stage1=replace(
        config.stage1, candidates=replace(config.stage1.candidates, threshold=EXAMPLE_THRESHOLD)))


def calibrate(stage1, student, rows, config: CMBConfig, train_config) -> tuple[CMBConfig, dict]:
    """Set ``config``'s stage 1 and stage 2 thresholds from ``rows`` (see module notes).
    Returns the new config and a report of the figures behind the choice."""
    model = CMBModel(None, stage1, student, None, permissive_config(config))
    precision = train_config.stage1_train.optim.precision
    cases = [_case(model, row, precision) for row in rows]
    t1, t2, report = choose_thresholds(cases, train_config.sensitivity_target,
                                       train_config.max_stage2_loss,
                                       train_config.max_fp_per_scan)
    calibrated = replace(config, stage2_threshold=t2, stage1=replace(
        config.stage1, candidates=replace(config.stage1.candidates, threshold=t1)))
    return calibrated, report


def choose_thresholds(cases: list[dict], sensitivity_target: float, max_stage2_loss: float,
                      max_fp_per_scan: float | None = None) -> tuple[float, float, dict]:
    """The stage 1 and stage 2 thresholds of the module notes from the permissive runs'
    ``cases`` (``_case`` dicts). With ``max_fp_per_scan``, stage 2's threshold is instead
    the lowest one at which all stages (stage 1 threshold, clean-up, stage 2) give at most
    that many false positives per scan, the operating point the detector is judged at:
    it keeps the most bleeds the false-positive budget allows. Where no threshold meets
    the budget, the ``max_stage2_loss`` rule stands. Returns ``(t1, t2, report)``."""
    base_tp, _, n_true = detection_counts(cases, lambda c: c["p1"] >= 0)
    t1 = GRID[0]
    for t in GRID:
        tp, _, _ = detection_counts(cases, lambda c, t=t: c["p1"] >= t)
        if tp >= config_target(base_tp, sensitivity_target):
            t1 = float(t)
    stage1_keep = lambda c: (c["p1"] >= t1) & c["clean"]  # noqa: E731
    s1_tp, s1_fp, _ = detection_counts(cases, stage1_keep)
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    counts = {float(t): detection_counts(cases, lambda c, t=t: stage1_keep(c) & (c["p2"] >= t))
              for t in grid}
    t2, rule = 0.05, "stage2_loss"
    for t, (tp, _, _) in counts.items():
        if tp >= config_target(s1_tp, 1.0 - max_stage2_loss):
            t2 = t
    within = [t for t, (_, fp, _) in counts.items()
              if max_fp_per_scan is not None and fp <= max_fp_per_scan * len(cases) + 1e-9]
    if within:
        t2, rule = min(within), "fp_per_scan"
    tp, fp, _ = counts[t2]
    report = {"images": len(cases), "true_cmbs": n_true,
              "stage1_threshold": t1, "stage2_threshold": t2, "stage2_rule": rule,
              "max_fp_per_scan": max_fp_per_scan,
              "sensitivity_lowest_threshold": base_tp / max(n_true, 1),
              "after_stage1_and_cleanup": {"sensitivity": s1_tp / max(n_true, 1),
                                           "fp_avg": s1_fp / max(len(cases), 1)},
              "after_stage2": {"sensitivity": tp / max(n_true, 1),
                               "fp_avg": fp / max(len(cases), 1)}}
    return t1, t2, report


def config_target(count: int, share: float) -> float:
    """The smallest count that keeps ``share`` of ``count`` (float comparison safe)."""
    return share * count - 1e-9

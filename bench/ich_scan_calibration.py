"""Calibrate the ICH model's scan-level decision for a stated sensitivity on validation
scans, and (``--save``) store the threshold in a copy of the model.

    python bench/ich_scan_calibration.py --cohort DIR [--cohort DIR2] [--model DIR]
        [--sensitivity 0.95] [--save DIR]

``--cohort``: synthetic ICH validation cohorts (randomized domain, validation seeds; the
issue asks for >= 30 scans without blood: ``lesion-suite synth ich --seed 100032 --n 160
--spacing 1.5 --domain randomized`` holds about 30). Only the scan-level labels are read
(image-level supervision). The scan threshold becomes the highest that keeps
``--sensitivity`` of the scans with blood (:func:`lesion_core.ich.fit.sensitivity_threshold`);
the slice and subtype thresholds, which shape the masks, are kept. Prints the validation
sensitivity, specificity and AUC at the old and the new threshold, as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from lesion_core.errors import InvalidImageError
from lesion_core.ich.data import WeakLabelDataset, table_from_synthetic_cohort
from lesion_core.ich.fit import sensitivity_threshold, validation_probabilities
from lesion_core.ich.model import load_ich_model
from lesion_core.metrics import roc_auc


def operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    called = scores >= threshold
    return {"threshold": round(float(threshold), 4),
            "sensitivity": round(float(called[labels].mean()), 4),
            "specificity": round(float((~called[~labels]).mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", action="append", required=True)
    parser.add_argument("--model", help="ICH model folder (default: the shipped one)")
    parser.add_argument("--sensitivity", type=float, default=0.95)
    parser.add_argument("--save", help="write the recalibrated model into this folder")
    args = parser.parse_args()
    model = load_ich_model(args.model)
    scans = [s for cohort in args.cohort for s in table_from_synthetic_cohort(cohort)]
    data = WeakLabelDataset(scans, model.config)
    samples, refused = [], []
    for n in range(len(data)):  # a scan the model's input checks refuse is left out
        try:
            samples.append(data[n])
        except InvalidImageError as exc:
            refused.append(str(exc))
    _, _, targets, probabilities = validation_probabilities(model, samples)
    known = ~np.isnan(targets[:, 0])
    labels, scores = targets[known, 0] == 1, probabilities[known, 0]
    threshold = sensitivity_threshold(labels, scores, args.sensitivity)
    report = {"scans": int(known.sum()), "refused": refused, "with_blood": int(labels.sum()),
              "without_blood": int((~labels).sum()), "sensitivity_asked": args.sensitivity,
              "auc": round(float(roc_auc(labels.astype(int), scores)), 4),
              "before": operating_point(labels, scores, model.thresholds.scan),
              "after": operating_point(labels, scores, threshold)}
    print(json.dumps(report), flush=True)
    if args.save:
        card = model.current_card()
        card = dataclasses.replace(card, training={**card.training, "scan_calibration": report})
        recalibrated = dataclasses.replace(
            model, thresholds=dataclasses.replace(model.thresholds, scan=threshold), card=card)
        recalibrated.save(args.save, overwrite=True)
        print(f"saved in {args.save}")


if __name__ == "__main__":
    main()

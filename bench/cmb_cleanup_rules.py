"""Cost and gain of each CMB clean-up rule on validation images (issue 14, item 3).

    python bench/cmb_cleanup_rules.py --table V1/cmb_labels.csv [--table V2/...]
        [--model DIR] [--scores DIR] [--json OUT]

Each image runs once through the pipeline with permissive thresholds
(:func:`lesion_core.cmb.calibrate.permissive_config`) and the MNI location, so every
candidate carries the first clean-up rule it fails (or none). Then, at the model's stage 1
threshold and over the student's threshold:

* per rule, the true and false detections among the stage 2 survivors that it is the
  first to remove (its cost and its gain at the shipped thresholds);
* the operating point of all stages without that rule (each later rule still applies):
  sensitivity at the model's thresholds, and the best sensitivity at <= 1 false positive
  per scan over the student's threshold.

A candidate records only the first rule it fails, so switching a rule off keeps the
candidates it removed even where a later rule would also fail them (an upper bound of
what the rule costs and gains). Matching is the distance rule (5 mm, one-to-one), pooled
over the images. Validation images only: the rules are chosen here, and the benchmark
sets stay held out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cmb_froc import load_scores, permissive_run, save_scores  # noqa: E402
from lesion_core.cmb.calibrate import detection_counts  # noqa: E402
from lesion_core.cmb.cleanup import REASONS  # noqa: E402
from lesion_core.cmb.fit import read_cohorts  # noqa: E402
from lesion_core.cmb.model import load_cmb_model  # noqa: E402
from lesion_core.io import read_volume  # noqa: E402

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.025), 3)


def permissive_scores(model, rows) -> list[dict]:
    """:func:`cmb_froc.permissive_run` of every validation row."""
    cases = []
    for index, row in enumerate(rows, 1):
        cases.append(permissive_run(model, read_volume(row.image), read_volume(row.cmb),
                                    row.sequence))
        print(f"{index}/{len(rows)} {row.subject} {row.sequence}: {len(cases[-1]['p1'])} "
              "candidates", flush=True)
    return cases


def operating_points(cases: list[dict], t1: float, t2: float, ignored: str | None) -> dict:
    """All stages with the rule ``ignored`` switched off: (sensitivity, FP per scan) at
    ``t2``, and the best sensitivity at <= 1 FP per scan over the student's threshold."""
    passing = ("", ignored) if ignored else ("",)

    def keep(t):
        return lambda c: (c["p1"] >= t1) & (c["student"] >= t) & np.isin(c["reason"], passing)

    def point(t):
        tp, fp, n_true = detection_counts(cases, keep(t))
        return tp / max(n_true, 1), fp / max(len(cases), 1)

    sens, fp = point(t2)
    budget = [(s, f, float(t)) for s, f, t in (point(t) + (t,) for t in THRESHOLDS) if f <= 1.0]
    best = max(budget, default=(0.0, 0.0, 1.0))
    return {"sensitivity": round(sens, 4), "fp_per_scan": round(fp, 3),
            "best_at_1fp": {"sensitivity": round(best[0], 4), "fp_per_scan": round(best[1], 3),
                            "stage2_threshold": best[2]}}


def rule_counts(cases: list[dict], t1: float, t2: float) -> dict:
    """True and false detections among the stage 2 survivors each rule removes first."""
    def survivors(c):
        return (c["p1"] >= t1) & (c["student"] >= t2)

    tp, fp, _ = detection_counts(cases, survivors)
    out = {}
    for rule in REASONS:
        rule_tp, rule_fp, _ = detection_counts(
            cases, lambda c, rule=rule: survivors(c) & (c["reason"] != rule))
        out[rule] = {"true_removed": tp - rule_tp, "false_removed": fp - rule_fp}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="append", required=True,
                        help="cmb_labels.csv of a validation cohort (repeatable)")
    parser.add_argument("--model", help="CMB bundle (default: the shipped one)")
    parser.add_argument("--scores", type=Path,
                        help="folder to keep (and reuse) the permissive runs in")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = load_cmb_model(args.model)
    cases = load_scores(args.scores, "validation") if args.scores else None
    if cases is None:
        cases = permissive_scores(model, read_cohorts(args.table))
        if args.scores:
            save_scores(args.scores, "validation", cases)
    t1, t2 = model.config.stage1.candidates.threshold, model.config.stage2_threshold
    report = {"model": f"{model.model_id} {model.version}", "images": len(cases),
              "bleeds": int(sum(len(c["true"]) for c in cases)), "thresholds": [t1, t2],
              "first_removed": rule_counts(cases, t1, t2),
              "all_rules": operating_points(cases, t1, t2, None),
              "without": {rule: operating_points(cases, t1, t2, rule) for rule in REASONS}}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

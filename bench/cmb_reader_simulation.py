"""What 20 reader decisions and a retrain do to the CMB detector.

    python bench/cmb_reader_simulation.py [--decisions 20] [--review-cases 8] [--n 10]

1. Review: the shipped model runs on ``--review-cases`` synthetic SWI subjects of the
   validation range (seeds 100100 and up: neither trained on, calibrated on, nor
   benchmarked). A simulated reader walks through the kept candidates and those stage 2
   dropped (the "show rejected by stage 2" view), in order of stage 1 probability, accepts
   a candidate within 5 mm of a true microbleed and rejects the others, then adds true
   microbleeds no candidate found, until ``--decisions`` decisions are made. Each decision
   goes to a feedback store through ``lesion_core.cmb.reader_decisions``, as the Slicer
   module writes them.
2. Retrain: ``lesion_core.cmb.finetune.finetune_from_feedback`` (what "Retrain from my
   decisions" runs), stage 2 only.
3. Both models run on the ``--n`` benchmark cases; prints sensitivity and FPavg (distance
   rule) before and after, and writes them to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench_cases import ensure_cases, load_case
from lesion_core.cmb.evaluate import case_counts, true_centres
from lesion_core.cmb.finetune import STUDENT_FINETUNE, finetune_from_feedback
from lesion_core.cmb.model import load_cmb_model
from lesion_core.cmb.predict import predict_cmb
from lesion_core.cmb.reader_decisions import record_decision
from lesion_core.feedback import FeedbackStore
from lesion_core.feedback_cases import ensure_case_image
from lesion_core.metrics.detection import summarize_detections
from lesion_core.synth.anatomy import AnatomyConfig
from lesion_core.synth.cohort import SubjectConfig, make_subject

REVIEW_SEED = 100_100
MATCH_MM = 5.0


def review(model, n_cases: int, budget: int, store: FeedbackStore, folder: Path) -> dict:
    """Simulated reader decisions on ``n_cases`` review subjects; returns their counts."""
    made = {"accept": 0, "reject": 0, "add": 0}
    for seed in range(REVIEW_SEED, REVIEW_SEED + n_cases):
        if sum(made.values()) >= budget:
            break
        subject = make_subject(seed, SubjectConfig(kind="cmb", swi_variant="SWI",
                                                   anatomy=AnatomyConfig(spacing_mm=1.5)))
        image, truth = subject.images["SWI"], subject.labels["SWI"]["cmb"]
        from lesion_core.io import write_volume
        path = write_volume(image, folder / f"review_{seed}.nii.gz")
        case = store.case(f"review_{seed}")
        ensure_case_image(case, path, "SWI")
        result = predict_cmb(image, model, "SWI", locate=False)
        shown = sorted((c for c in result.candidates if c.kept or c.dropped_by == "stage2"),
                       key=lambda c: -c.stage1_probability)
        centres = true_centres(truth)
        found = np.zeros(len(centres), bool)
        for c in shown:
            if sum(made.values()) >= budget:
                break
            distance = np.linalg.norm(centres - np.asarray(c.centre_ras), axis=1) if len(centres) else []
            hit = len(centres) and float(np.min(distance)) <= MATCH_MM
            if hit:
                found[int(np.argmin(distance))] = True
            decision = "accept" if hit else "reject"
            record_decision(case, decision, c.centre_ras, {"id": c.id, "diameter_mm": c.diameter_mm,
                            "stage1_probability": c.stage1_probability,
                            "stage2_probability": c.stage2_probability,
                            "dropped_by": c.dropped_by}, reader="simulated")
            made[decision] += 1
        for centre in centres[~found]:
            if sum(made.values()) >= budget:
                break
            record_decision(case, "add", centre, diameter_mm=3.0, reader="simulated")
            made["add"] += 1
    return made


def score(model, cases) -> dict:
    counts = []
    for case in cases:
        sequence = case.primary_modality
        result = predict_cmb(case.images[sequence], model, sequence, allow_other_sequence=True)
        counts.append(case_counts(result, case.labels[sequence]["cmb"])["all stages"])
    summary = summarize_detections(counts)
    return {"sensitivity": summary.sensitivity, "precision": summary.precision,
            "fp_avg": summary.fp_avg, "tp": summary.tp, "fp": summary.fp, "n_true": summary.n_true}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20)
    parser.add_argument("--review-cases", type=int, default=8)
    parser.add_argument("--n", type=int, default=10, help="benchmark cases scored")
    parser.add_argument("--steps", type=int, default=60, help="fine-tune steps")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    model = load_cmb_model()
    cases = [load_case(p) for p in ensure_cases("cmb", args.n, 1.5)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = FeedbackStore(tmp / "store")
        made = review(model, args.review_cases, args.decisions, store, tmp)
        meta, report = finetune_from_feedback(model, store.root, tmp / "tuned",
                                              student_optim=replace(STUDENT_FINETUNE,
                                                                    steps=args.steps))
        tuned = load_cmb_model(tmp / "tuned")
        before, after = score(model, cases), score(tuned, cases)
    result = {"decisions": made, "finetune": report, "before": before, "after": after}
    print(json.dumps(result, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()

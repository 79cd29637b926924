"""Choose a trained DualTasker's segmentation thresholds on rated scans at their own
resolution (lesion_core.wmh.scan_calibration) and save the model with them.

    python scripts/calibrate_wmh_on_scans.py --model DIR --synthetic COHORT_DIR --out DIR

COHORT_DIR: a `lesion-suite synth wmh` folder; only its images and ARWMC ratings are
read (validation seeds, never the benchmark's). The model card's training entry records
how many scans, from where, and the chosen thresholds' score.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from lesion_core.progress import Progress, line_printer
from lesion_core.tasks import ModelCard
from lesion_core.wmh.data import table_from_synthetic_cohort
from lesion_core.wmh.model import load_wmh_model
from lesion_core.wmh.scan_calibration import calibrate_on_scans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="DualTasker model folder")
    parser.add_argument("--synthetic", required=True, help="rated synthetic cohort folder")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--version", help="version of the written model (default: the input's)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    model = load_wmh_model(args.model)
    rows = table_from_synthetic_cohort(args.synthetic)
    calibrated, table = calibrate_on_scans(model, rows, Progress(line_printer(sys.stdout.write)))
    card = ModelCard.of(model.metadata)
    best = max(row["score"] for row in table)
    training = dict(card.training, scan_calibration={
        "scans": len(rows), "data": f"synthetic cohort {Path(args.synthetic).name}",
        "score": best, "thresholds": dataclasses.asdict(calibrated.config.thresholds)})
    card = dataclasses.replace(card, training=training, version=args.version or card.version)
    calibrated = dataclasses.replace(calibrated, metadata=None, card=card)
    calibrated.save(args.out, overwrite=args.overwrite)
    print(f"thresholds {calibrated.config.thresholds} (score {best:.3f}) -> {args.out}")


if __name__ == "__main__":
    main()

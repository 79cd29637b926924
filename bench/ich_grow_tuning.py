"""Choose the ICH growth rule (``GrowConfig``) on validation subjects, never the benchmark.

    python bench/ich_grow_tuning.py --cohort DIR [--model DIR] [--out FILE]

``--cohort``: a synthetic ICH validation cohort (``lesion-suite synth ich --seed 100000
--n 32 --spacing 1.5 --domain randomized``, the one ``scripts/train_ich_model.sh`` makes).
Each candidate rule in :data:`CANDIDATES` replaces the model's growth step and the whole
prediction runs on every subject; reported per rule: mean Dice over subjects with blood,
the false-positive volume per subject without blood, and the mean Dice of the subjects
with extra-axial (subdural or epidural) blood. The rules differ in how close to bone the
mask may grow (``dense_hu``, ``dense_margin_mm``, the top of ``window_hu``): a thick slice
averages blood against the inner table with bone, so such voxels read 100-250 HU
(docs/synthetic_cohort.md). Prints a markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from lesion_core import io as lesion_io
from lesion_core.ich.config import GrowConfig
from lesion_core.ich.evaluate import blood_mask, read_cohort
from lesion_core.ich.model import load_ich_model
from lesion_core.ich.predict import predict_ich
from lesion_core.metrics import dice

#: (top of the HU window and ``dense_hu``, ``dense_margin_mm``): the earlier rule first
#: (100 HU, 1.5 mm), then rules that let the mask grow nearer to bone; 250 HU and 1 mm
#: was chosen (``GrowConfig``'s defaults since 2026-12-05).
RULES = ((100.0, 1.5), (100.0, 0.5), (150.0, 1.0), (150.0, 0.5), (250.0, 1.0), (250.0, 0.5))
CANDIDATES = {f"{hu:g} HU, margin {margin:g} mm":
              GrowConfig(window_hu=(44.0, hu), dense_hu=hu, dense_margin_mm=margin)
              for hu, margin in RULES}

#: Label values of extra-axial blood (``lesion_core.labels.ICH_SUBTYPES``).
EXTRA_AXIAL = (4, 5)


def score(model, rows: list[dict]) -> dict:
    """Mean Dice (subjects with blood), false-positive mL (without), extra-axial Dice."""
    dices, extra, fp = [], [], []
    for row in rows:
        truth = lesion_io.read_volume(row["ct_ich_truth"])
        blood = blood_mask(truth)
        prediction = predict_ich(lesion_io.read_volume(row["ct"]), model)
        mask = np.asarray(prediction.labels.array) > 0
        if not blood.any():
            fp.append(float(mask.sum()) * truth.voxel_volume_ml)
            continue
        dices.append(dice(mask, blood))
        if np.isin(np.asarray(truth.array), EXTRA_AXIAL).any():
            extra.append(dices[-1])
    mean = lambda v: round(float(np.mean(v)), 4) if v else None  # noqa: E731
    return {"dice": mean(dices), "fp_ml": mean(fp), "extra_axial_dice": mean(extra),
            "with_blood": len(dices), "without_blood": len(fp), "extra_axial": len(extra)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", required=True, help="synthetic ICH validation cohort")
    parser.add_argument("--model", help="ICH model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    model = load_ich_model(args.model)
    rows = read_cohort(args.cohort)
    results = {}
    for name, grow in CANDIDATES.items():
        tuned = replace(model, config=replace(model.config, grow=grow))
        results[name] = {"grow": asdict(grow), **score(tuned, rows)}
        print(name, json.dumps(results[name]), flush=True)
    print("\n| rule | Dice (with blood) | extra-axial Dice | FP mL (without blood) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['dice']} | {r['extra_axial_dice']} | {r['fp_ml']} |")
    if args.out:
        args.out.write_text(json.dumps({"cohort": str(args.cohort), "results": results},
                                       indent=1))


if __name__ == "__main__":
    main()

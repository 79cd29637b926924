"""Choose the ICH pseudo-mask refinement (``RefineConfig``) on validation subjects.

    python bench/ich_refine_tuning.py --cohort DIR [--model DIR] [--out FILE]

``--cohort``: a synthetic ICH validation cohort (``lesion-suite synth ich --seed 100000
--n 32 --spacing 1.5 --domain randomized``). The segmenter learns only what the
pseudo-masks hold, so a refinement that never reaches the inner table gives a segmenter
that never seeds a thin subdural there. For each candidate in :data:`CANDIDATES` the
model's classifier and CAM run once per subject, the CAM is refined with that rule and
the pseudo-mask (gated by the classifier's positive slices, as at prediction) is scored
on the CT's grid against the voxel truth: Dice, precision and recall over subjects with
blood, the same over subjects with extra-axial blood, and the volume per subject without
blood. Prints a markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lesion_core import io as lesion_io
from lesion_core.ich.config import RefineConfig
from lesion_core.ich.evaluate import EXTRA_AXIAL, blood_mask, read_cohort
from lesion_core.ich.model import load_ich_model
from lesion_core.ich.predict import classify, on_ct_grid
from lesion_core.ich.preprocess import check_ct, checked_stack
from lesion_core.ich.refine import refine
from lesion_core.metrics import dice

#: The shipped rule first, then rules that keep voxels nearer to bone: a 5 mm slab
#: averages subdural blood against the inner table with bone (each percent of bone adds
#: ~15 HU), so thin extra-axial blood reads 100-270 HU and lies within 2 mm of > 120 HU.
CANDIDATES = {
    "shipped (dense 120 HU, 2 mm; blood 40-100 HU)": RefineConfig(),
    "dense 250 HU, 2 mm": RefineConfig(dense_hu=250.0),
    "dense 250 HU, 1 mm": RefineConfig(dense_hu=250.0, dense_margin_mm=1.0),
    "dense 250 HU, 1 mm; blood to 250 HU": RefineConfig(
        dense_hu=250.0, dense_margin_mm=1.0, fit_range_hu=(-10.0, 250.0),
        blood_window_hu=(40.0, 250.0)),
    "dense 400 HU, 1 mm; blood to 250 HU": RefineConfig(
        dense_hu=400.0, dense_margin_mm=1.0, fit_range_hu=(-10.0, 250.0),
        blood_window_hu=(40.0, 250.0)),
}

def _figures(mask: np.ndarray, blood: np.ndarray) -> tuple[float, float, float]:
    hit = float((mask & blood).sum())
    precision = hit / mask.sum() if mask.any() else float("nan")
    return dice(mask, blood), precision, hit / blood.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", required=True, help="synthetic ICH validation cohort")
    parser.add_argument("--model", help="ICH model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    model = load_ich_model(args.model)
    rows = {name: {"all": [], "extra": [], "fp_ml": []} for name in CANDIDATES}
    for row in read_cohort(args.cohort):
        ct = check_ct(lesion_io.read_volume(row["ct"]), model.config.grid)
        stack = checked_stack(ct, model.config)
        cam, _ = classify(model, stack)
        positive = stack.per_input_slice(cam.probabilities)[:, 0] >= model.thresholds.slice
        shape = [1, 1, 1]
        shape[stack.input_axis] = -1
        truth = lesion_io.read_volume(row["ct_ich_truth"])
        blood = blood_mask(truth)
        extra = np.isin(np.asarray(truth.array), EXTRA_AXIAL).any()
        for name, rule in CANDIDATES.items():
            refined = refine(stack.hu, cam.cam, stack.spacing_mm, rule,
                             cam_threshold=model.config.cam.threshold,
                             intracranial=stack.intracranial)
            mask = on_ct_grid(stack, refined.mask, 0.5) & positive.reshape(shape)
            if not blood.any():
                rows[name]["fp_ml"].append(float(mask.sum()) * truth.voxel_volume_ml)
                continue
            figures = _figures(mask, blood)
            rows[name]["all"].append(figures)
            if extra:
                rows[name]["extra"].append(figures)
        print(row["subject"], flush=True)
    mean = lambda v: [round(float(x), 4) for x in np.nanmean(np.asarray(v), axis=0)]  # noqa: E731
    results = {name: {"refine": asdict(CANDIDATES[name]),
                      "dice_precision_recall": mean(r["all"]),
                      "extra_axial_dice_precision_recall": mean(r["extra"]),
                      "fp_ml": round(float(np.mean(r["fp_ml"])), 3) if r["fp_ml"] else None,
                      "with_blood": len(r["all"]), "extra_axial": len(r["extra"])}
               for name, r in rows.items()}
    print("\n| rule | Dice / precision / recall | extra-axial | FP mL (without blood) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {' / '.join(map(str, r['dice_precision_recall']))} | "
              f"{' / '.join(map(str, r['extra_axial_dice_precision_recall']))} | {r['fp_ml']} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

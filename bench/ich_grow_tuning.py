"""Choose the ICH growth rule (``GrowConfig``) and slice gate on validation subjects only.

    python bench/ich_grow_tuning.py --cohort DIR [--cohort DIR2]
        [--family bone|seeds|gate|inner_table]
        [--model DIR] [--out FILE]

``--cohort``: synthetic ICH validation cohorts (``lesion-suite synth ich --seed 100000
--n 32 --spacing 1.5 --domain randomized``, the one ``scripts/train_ich_model.sh`` makes;
for the false positives also ``--seed 100032 --n 160``, 30 of them without blood). Each
candidate rule of the chosen family (:data:`FAMILIES`) replaces the model's growth step
and the whole prediction runs on every subject; reported per rule: mean Dice over
subjects with blood, the false-positive volume per subject without blood, and the mean
Dice of the subjects with extra-axial (subdural or epidural) blood. Family ``bone``:
how close to bone the mask may grow (``dense_hu``, ``dense_margin_mm``, the top of
``window_hu``): a thick slice averages blood against the inner table with bone, so such
voxels read 100-250 HU (docs/synthetic_cohort.md). Family ``seeds``: which components of
the segmenter's mask are kept and grown (``seed_probability``) and how far
(``max_distance_mm``): a false-positive seed on a mimic grows too. Family ``gate``: the
slice probability under which the classifier clears a slice (:data:`GATE_RULES`). Family
``inner_table``: blood-like voxels near bone where the class activation map is high seed
growth too (:data:`INNER_TABLE_RULES`). Prints a markdown table and writes the figures as
JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from lesion_core import io as lesion_io
from lesion_core.ich.config import GrowConfig
from lesion_core.ich.evaluate import EXTRA_AXIAL, blood_mask, read_cohort
from lesion_core.ich.model import load_ich_model
from lesion_core.ich.predict import predict_ich
from lesion_core.metrics import dice

#: Family "bone" (top of the HU window and ``dense_hu``, ``dense_margin_mm``; every
#: component grown up to 10 mm, as then): the earlier rule first (100 HU, 1.5 mm), then
#: rules that let the mask grow nearer to bone; 250 HU and 1 mm was chosen (2026-12-05).
BONE_RULES = ((100.0, 1.5), (100.0, 0.5), (150.0, 1.0), (150.0, 0.5), (250.0, 1.0), (250.0, 0.5))
#: Family "seeds" (``seed_probability``, ``max_distance_mm``; window and bone as chosen
#: above): which components grow, and how far. 0.98 and 6 mm was chosen (2026-12-05).
SEED_RULES = ((0.5, 10.0), (0.5, 6.0), (0.95, 6.0), (0.98, 6.0), (0.99, 6.0), (0.95, 4.0),
              (0.98, 4.0))
#: Family "gate": the slice probability under which the classifier clears a CT slice in
#: every mask before the growth (``ICHThresholds.slice``, Youden's J on validation labels
#: when the model was made): a lower gate keeps the segmenter's blood on slices the
#: classifier doubts, at the price of its false positives there.
GATE_RULES = (None, 0.45, 0.35, 0.25, 0.0)
#: Family "inner_table": the class activation map value from which blood-like voxels
#: within ``inner_table_mm`` of bone seed growth (``GrowConfig.inner_table_cam``; None:
#: no such seeds), the rest of the model's growth rule kept.
INNER_TABLE_RULES = ((None, 5.0), (0.8, 5.0), (0.6, 5.0), (0.4, 5.0), (0.6, 3.0))


def _grown(grow: GrowConfig):
    return lambda model: replace(model, config=replace(model.config, grow=grow))


def _inner_table(level: float | None, reach_mm: float):
    return lambda model: replace(model, config=replace(model.config, grow=replace(
        model.config.grow, inner_table_cam=level, inner_table_mm=reach_mm)))


def _gated(gate: float | None):
    return lambda model: model if gate is None else replace(
        model, thresholds=replace(model.thresholds, slice=gate))


FAMILIES = {
    "bone": {f"{hu:g} HU, margin {margin:g} mm":
             _grown(GrowConfig(window_hu=(44.0, hu), dense_hu=hu, dense_margin_mm=margin,
                               seed_probability=0.5, max_distance_mm=10.0))
             for hu, margin in BONE_RULES},
    "seeds": {f"seeds p >= {p:g}, reach {reach:g} mm":
              _grown(GrowConfig(seed_probability=p, max_distance_mm=reach))
              for p, reach in SEED_RULES},
    "gate": {("the model's slice threshold" if g is None else f"slice gate {g:g}"): _gated(g)
             for g in GATE_RULES},
    "inner_table": {("no inner-table seeds" if level is None
                     else f"inner-table seeds at CAM >= {level:g}, within {mm:g} mm of bone"):
                    _inner_table(level, mm) for level, mm in INNER_TABLE_RULES},
}

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
    parser.add_argument("--cohort", required=True, action="append",
                        help="synthetic ICH validation cohort (repeatable)")
    parser.add_argument("--family", choices=tuple(FAMILIES), default="seeds",
                        help="which rules to compare (default %(default)s)")
    parser.add_argument("--model", help="ICH model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    model = load_ich_model(args.model)
    rows = [row for cohort in args.cohort for row in read_cohort(cohort)]
    results = {}
    for name, variant in FAMILIES[args.family].items():
        tuned = variant(model)
        results[name] = {"grow": asdict(tuned.config.grow), "slice_gate": tuned.thresholds.slice,
                         **score(tuned, rows)}
        print(name, json.dumps(results[name]), flush=True)
    print("\n| rule | Dice (with blood) | extra-axial Dice | FP mL (without blood) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['dice']} | {r['extra_axial_dice']} | {r['fp_ml']} |")
    if args.out:
        args.out.write_text(json.dumps({"cohorts": [str(c) for c in args.cohort],
                                        "results": results},
                                       indent=1))


if __name__ == "__main__":
    main()

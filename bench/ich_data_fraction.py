"""The low-data experiment of ICHWeakSeg: Dice against the fraction of labelled data.

    python bench/ich_data_fraction.py [--n-train 80] [--fractions 0.1 0.25 0.5 1]
        [--classifier-steps 1000] [--segmenter-steps 600] [--min-steps 300]
        [--bench-n 20] [--save-supervised]

1. a synthetic training cohort (seeds 0..n-1, 1.5 mm anatomy, the benchmark's) is
   generated once into ``bench/.cache/ich_fraction_train_<n>/``;
2. for each fraction, the whole weak pipeline (classifier, pseudo-masks, segmenter) is
   trained on the nested subset :func:`lesion_core.ich.train.fraction_subset` (seed 0:
   the 10 % subjects are among the 25 %, and so on) with image-level labels only;
3. for each fraction, the fully supervised reference: the same 2.5D U-Net trained on
   the voxel labels of as many training subjects (:mod:`lesion_core.ich.supervised`);
   the one of the smallest fraction (8 subjects of 80) is saved to
   ``bench/models/ich_supervised_lowdata`` with ``--save-supervised``;
4. every model is scored on the benchmark cases (``ensure_cases("ich", n, 1.5)``, seeds
   900 000+, never trained on) with :mod:`lesion_core.ich.evaluate`: volume Dice and
   slice-wise Dice on positive slices, for the final (grown) mask, the segmenter and the
   pseudo-masks. Each weak model's thresholds (slice gate, scan, subtypes) are set on the
   image-level labels of 32 validation subjects (seeds 100000-100031, same domain), as
   the shipped model's are, and so is its confident-seed level
   (:func:`lesion_core.ich.fit.calibrate_seed_probability`).

**Steps scale with the data**, so that every point has the same number of passes over
its subjects: the full set gets ``--classifier-steps`` / ``--segmenter-steps`` (the
standard-cohort recipe of model 1.0) and a fraction f gets f times as many, but at
least ``--min-steps``. Each run's loss is recorded with its convergence (mean of the
last tenth of the steps against the tenth before it: a curve still falling by more
than a few per cent is not done). Writes ``docs/images/ich_data_fraction.json`` and
``.png``; about 35 min on 2 CPU cores with bf16 units.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench_cases import CACHE_DIR, BENCHMARK_SEED_START, ensure_cases, load_case
from lesion_core.ich.config import (ICHConfig, ClassifierTrainConfig, SegmenterTrainConfig,
                                    TrainConfig)
from lesion_core.ich.data import WeakLabelDataset, table_from_synthetic_cohort
from lesion_core.ich.evaluate import blood_mask, case_figures, slice_dice, summarize
from lesion_core.ich.fit import calibrate
from lesion_core.ich.model import ICHModel, save_ich_model
from lesion_core.ich.predict import predict_ich, segmenter_mask
from lesion_core.ich.preprocess import preprocess
from lesion_core.ich.supervised import fully_supervised, voxel_labelled_from_synthetic_cohort
from lesion_core.ich.train import fraction_subset, load_samples, train
from lesion_core.metrics import dice

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "docs" / "images" / "ich_data_fraction.json"
SUPERVISED_MODEL = Path(__file__).resolve().parent / "models" / "ich_supervised_lowdata"


def cohort(name: str, seeds: list[int]) -> Path:
    """Synthetic ICH subjects of ``seeds`` at 1.5 mm (generated once, cached)."""
    from lesion_core.synth import SubjectConfig, make_cohort
    from lesion_core.synth.anatomy import AnatomyConfig

    folder = CACHE_DIR / name
    if not (folder / "ich_labels.csv").exists():
        print(f"generating {len(seeds)} subjects into {folder}", flush=True)
        make_cohort("ich", seeds, folder, SubjectConfig(anatomy=AnatomyConfig(spacing_mm=1.5)))
    return folder


def with_steps(train_config, steps: int):
    """A stage's default train config with ``steps`` optimiser steps."""
    return replace(train_config, optim=replace(train_config.optim, steps=steps))


def scaled_steps(full: int, fraction: float, least: int) -> int:
    """Steps for ``fraction`` of the data: as many passes as ``full`` steps on all of it."""
    return max(least, int(round(full * fraction)))


def convergence(result) -> dict:
    """Loss at the start and end of a run, and how much it still fell at the end: the
    mean of the last tenth of the steps relative to the tenth before it."""
    loss = np.asarray(result.history.get("loss", []), float)
    tenth = max(len(loss) // 10, 1)
    last, before = loss[-tenth:].mean(), loss[-2 * tenth:-tenth].mean()
    return {"steps": int(result.steps), "loss_first": round(float(loss[:tenth].mean()), 4),
            "loss_last": round(float(last), 4),
            "still_falling": round(float((before - last) / before), 4)}


def score_weak(model: ICHModel, cases) -> dict:
    figures = []
    for case in cases:
        prediction = predict_ich(case.images["CT"], model, stages=True)
        figures.append(case_figures(prediction, case.labels["CT"]["ich"],
                                    model.config.refine.min_volume_ml))
    summary = summarize(figures)
    return {stage: {"dice": s["dice"], "slice_dice": s["slice_dice"]}
            for stage, s in summary["stages"].items()}


def score_supervised(model: ICHModel, cases) -> dict:
    dices, slices = [], []
    for case in cases:
        truth = case.labels["CT"]["ich"]
        blood = blood_mask(truth)
        if not blood.any():
            continue
        stack = preprocess(case.images["CT"], model.config)
        mask = segmenter_mask(model, stack)
        dices.append(dice(mask, blood))
        slices += slice_dice(mask, blood, stack.input_axis)

    def stat(v):
        return {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "n": len(v)}

    return {"segmenter": {"dice": stat(dices), "slice_dice": stat(slices)}}


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure", file=sys.stderr)
        return
    fractions = [r["fraction"] for r in result["weak"]]
    fig, ax = plt.subplots(figsize=(5.8, 4.0), dpi=120)
    x = [100 * f for f in fractions]
    for stage, style, name in (("final", "o-", "weakly supervised, final mask"),
                               ("pseudo_mask", "s--", "weakly supervised, pseudo-masks")):
        ax.plot(x, [r["figures"][stage]["dice"]["mean"] for r in result["weak"]], style,
                label=name)
    ax.plot([100 * r["fraction"] for r in result["supervised"]],
            [r["figures"]["segmenter"]["dice"]["mean"] for r in result["supervised"]], "^:",
            color="grey", label="fully supervised U-Net, voxel labels")
    ax.set_xlabel(f"labelled training subjects (% of {result['n_train']})")
    ax.set_ylabel(f"Dice (mean of {result['bench_positive']} benchmark scans with blood)")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{100 * f:g}" for f in fractions])
    ax.set_ylim(0, 1)
    ax.set_title(f"steps scale with the data: {result['classifier_steps']} classifier + "
                 f"{result['segmenter_steps']} segmenter steps on all of it, "
                 f"at least {result['min_steps']}", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=80)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--classifier-steps", type=int, default=1000,
                        help="classifier steps on the whole set (scaled for a fraction)")
    parser.add_argument("--segmenter-steps", type=int, default=600,
                        help="segmenter steps on the whole set (also the supervised one's)")
    parser.add_argument("--min-steps", type=int, default=300)
    parser.add_argument("--bench-n", type=int, default=20)
    parser.add_argument("--save-supervised", action="store_true")
    parser.add_argument("--save-models", type=Path, metavar="DIR",
                        help="also save each weak model into DIR/weak_<subjects>")
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    args = parser.parse_args()
    if args.plot_only:
        return plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
    assert args.n_train <= BENCHMARK_SEED_START  # never a benchmark seed in training
    start = time.perf_counter()
    config = ICHConfig()
    folder = cohort(f"ich_fraction_train_{args.n_train}", list(range(args.n_train)))
    scans = table_from_synthetic_cohort(folder)
    samples = load_samples(WeakLabelDataset(scans, config, cache_dir=CACHE_DIR / "ich_stacks"),
                           config)
    # Image-level labels of 32 validation subjects set each model's thresholds, as
    # `lesion-suite ich train --validation` does for the shipped model.
    validation = table_from_synthetic_cohort(cohort("ich_fraction_validation_32",
                                                    list(range(100000, 100032))))
    validation = load_samples(WeakLabelDataset(validation, config,
                                               cache_dir=CACHE_DIR / "ich_stacks"), config)
    cases = [load_case(p) for p in ensure_cases("ich", args.bench_n, 1.5)]
    result = {"n_train": len(scans), "bench_n": len(cases),
              "bench_positive": sum(bool(blood_mask(c.labels["CT"]["ich"]).any()) for c in cases),
              "classifier_steps": args.classifier_steps, "segmenter_steps": args.segmenter_steps,
              "min_steps": args.min_steps, "threads": torch.get_num_threads(), "weak": [],
              "supervised": []}
    labelled = voxel_labelled_from_synthetic_cohort(folder)
    for fraction in sorted(args.fractions):
        c_steps = scaled_steps(args.classifier_steps, fraction, args.min_steps)
        s_steps = scaled_steps(args.segmenter_steps, fraction, args.min_steps)
        subset = fraction_subset(samples, fraction, seed=0)
        trained = train(subset, config, TrainConfig(with_steps(ClassifierTrainConfig(), c_steps),
                                                    with_steps(SegmenterTrainConfig(), s_steps)))
        model = ICHModel(None, trained.classifier, trained.segmenter, config)
        calibration = calibrate(model, validation, seed_level=True)
        if args.save_models:
            save_ich_model(args.save_models / f"weak_{len(subset)}", model, overwrite=True,
                           description="data-fraction point (not shipped)",
                           training={"subjects": len(subset), "steps": [c_steps, s_steps]})
        figures = score_weak(model, cases)
        result["weak"].append({"fraction": fraction, "subjects": len(subset), "figures": figures,
                               "seed_probability": calibration["seed_probability"],
                               "training": {k: convergence(r) for k, r in trained.results.items()}})
        voxel = labelled[:len(subset)]
        net, run = fully_supervised(voxel, config, with_steps(SegmenterTrainConfig(), s_steps),
                                    cache_dir=CACHE_DIR / "ich_stacks")
        supervised = ICHModel(None, None, net, config)
        result["supervised"].append({"fraction": fraction, "subjects": len(voxel),
                                     "figures": score_supervised(supervised, cases),
                                     "training": convergence(run)})
        print(f"{100 * fraction:g} % ({len(subset)} subjects, {c_steps} + {s_steps} steps): "
              f"weak Dice {figures['final']['dice']['mean']:.3f} (segmenter "
              f"{figures['segmenter']['dice']['mean']:.3f}, pseudo-masks "
              f"{figures['pseudo_mask']['dice']['mean']:.3f}; seed level "
              f"{calibration['seed_probability']:.3f}); supervised "
              f"{result['supervised'][-1]['figures']['segmenter']['dice']['mean']:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        if args.save_supervised and fraction == min(args.fractions):
            save_ich_model(SUPERVISED_MODEL, supervised, name="ich_supervised_lowdata",
                           description="fully supervised low-data reference (not shipped)",
                           training={"supervision": "voxel labels", "subjects": len(voxel),
                                     "seeds": f"0-{len(voxel) - 1}", "steps": s_steps},
                           overwrite=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    print(f"{result['seconds']:.0f} s; results: {args.out}")


if __name__ == "__main__":
    main()

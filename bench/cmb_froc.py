"""FROC curves of the CMB detector: sensitivity against false positives per scan for stage 1,
stage 1 + teacher, stage 1 + student and all stages, on the benchmark sets.

    python bench/cmb_froc.py [--model DIR] [--sets standard shifted] [--n 20]
        [--figure docs/images/cmb_froc.png] [--json FILE]

Each case runs once through the pipeline with permissive thresholds (every candidate of
the stage 1 example threshold, no stage 2 rejection, the teacher's probability too, the
clean-up rules and the MNI location as the pipeline runs them). The curves then sweep:

* stage 1: its peak probability, over every candidate;
* teacher / student: their probability, over the candidates above the model's stage 1
  threshold;
* all stages: the student's probability over those that also pass the clean-up.

A candidate is taken to survive a higher stage 1 threshold when its peak does (as the
calibration assumes): a component that would split counts once, so the curves are a
close approximation of runs at each threshold. Matching: the distance rule (centre within
5 mm, one-to-one), pooled over the cases. The model's own operating point is marked on
each curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_cases  # noqa: E402
from lesion_core.cmb.calibrate import detection_counts, permissive_config  # noqa: E402
from lesion_core.cmb.evaluate import true_centres  # noqa: E402
from lesion_core.cmb.model import load_cmb_model  # noqa: E402
from lesion_core.cmb.predict import predict_cmb  # noqa: E402

CURVES = ("stage 1", "stage 1 + teacher", "stage 1 + student", "all stages")


def permissive_run(model, image, truth, sequence: str) -> dict:
    """Candidates of one image with every score the curves sweep, the clean-up rule each
    fails first ("" for none; ``clean``: passes them all), and the true centres."""
    loose = replace(model, config=permissive_config(model.config))
    result = predict_cmb(image, loose, sequence, allow_other_sequence=True, with_teacher=True)
    cands = result.candidates
    return {"true": true_centres(truth),
            "centres": np.array([c.centre_ras for c in cands]).reshape(-1, 3),
            "p1": np.array([c.stage1_probability for c in cands]),
            "student": np.array([c.stage2_probability for c in cands]),
            "teacher": np.array([c.teacher_probability for c in cands]),
            "clean": np.array([c.dropped_by is None for c in cands], bool),
            "reason": np.array([c.reason or "" for c in cands], dtype="U16")}


def permissive_case(model, case) -> dict:
    """:func:`permissive_run` of a benchmark case."""
    sequence = case.primary_modality
    return permissive_run(model, case.images[sequence], case.labels[sequence]["cmb"], sequence)


def save_scores(folder: Path, bench_set: str, cases: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{bench_set}.npz", **{f"{i}__{k}": v for i, case in enumerate(cases)
                                             for k, v in case.items()})


def load_scores(folder: Path, bench_set: str) -> list[dict] | None:
    path = folder / f"{bench_set}.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        cases: dict[int, dict] = {}
        for key in data.files:
            index, name = key.split("__")
            cases.setdefault(int(index), {})[name] = data[key]
    return [cases[i] for i in sorted(cases)]


def point(cases: list[dict], keep) -> tuple[float, float]:
    """Pooled (FP per scan, sensitivity) of the detections ``keep(case)`` selects."""
    tp, fp, n_true = detection_counts(cases, keep)
    return fp / max(len(cases), 1), tp / max(n_true, 1)


def curves(cases: list[dict], t1: float, t2: float) -> dict:
    """Each curve as ``{"points": [[fp, sens], ...], "operating": [fp, sens]}``."""
    grid = np.round(np.concatenate([np.arange(0.01, 0.1, 0.01), np.arange(0.1, 0.96, 0.025),
                                    np.arange(0.96, 1.0, 0.005)]), 4)
    above = lambda c: c["p1"] >= t1  # noqa: E731
    select = {
        "stage 1": lambda c, t: c["p1"] >= t,
        "stage 1 + teacher": lambda c, t: above(c) & (c["teacher"] >= t),
        "stage 1 + student": lambda c, t: above(c) & (c["student"] >= t),
        "all stages": lambda c, t: above(c) & c["clean"] & (c["student"] >= t),
    }
    operating = {"stage 1": t1, "stage 1 + teacher": t2, "stage 1 + student": t2,
                 "all stages": t2}
    out = {}
    for name, rule in select.items():
        points = [point(cases, lambda c, t=t: rule(c, t)) for t in grid]
        out[name] = {"points": [[round(f, 3), round(s, 4)] for f, s in points],
                     "operating": [round(v, 4) for v in point(
                         cases, lambda c: rule(c, operating[name]))]}
    return out


def sensitivity_at(curve: dict, fp_per_scan: float) -> float:
    """Highest sensitivity of a curve at or below ``fp_per_scan`` false positives per scan."""
    return max([s for f, s in curve["points"] if f <= fp_per_scan] or [0.0])


def plot(results: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        for curve in CURVES:
            pts = np.array(result["curves"][curve]["points"])
            line, = ax.plot(np.maximum(pts[:, 0], 0.01), pts[:, 1], label=curve)
            fp, sens = result["curves"][curve]["operating"]
            ax.plot(max(fp, 0.01), sens, "o", color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlim(0.05, 50)
        ax.set_ylim(0, 1)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("false positives per scan")
        ax.set_ylabel("sensitivity (distance rule, 5 mm)")
        ax.set_title(f"{name} set: {result['cases']} scans, {result['bleeds']} bleeds")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"CMB FROC, {results[next(iter(results))]['model']} "
                 "(dots: the model's thresholds)", fontsize=10)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="CMB bundle (default: the shipped one)")
    parser.add_argument("--sets", nargs="+", default=["standard", "shifted"],
                        choices=sorted(bench_cases.SETS))
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--cache", type=Path, default=bench_cases.CACHE_DIR)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--scores", type=Path,
                        help="keep each case's candidate scores here (.npz per set) and "
                             "reuse them: another model with the same networks but other "
                             "thresholds is then drawn without running again")
    args = parser.parse_args()
    model = load_cmb_model(args.model)
    t1, t2 = model.config.stage1.candidates.threshold, model.config.stage2_threshold
    results = {}
    for bench_set in args.sets:
        cases = load_scores(args.scores, bench_set) if args.scores else None
        if cases is None:
            paths = bench_cases.ensure_cases("cmb", args.n, args.spacing, args.cache,
                                             bench_set=bench_set)
            cases = [permissive_case(model, bench_cases.load_case(p)) for p in paths]
            if args.scores:
                save_scores(args.scores, bench_set, cases)
        result = {"model": f"{model.model_id} {model.version}", "cases": len(cases),
                  "bleeds": int(sum(len(c["true"]) for c in cases)),
                  "thresholds": [t1, t2], "curves": curves(cases, t1, t2)}
        results[bench_set] = result
        for name in CURVES:
            curve = result["curves"][name]
            print(f"| {bench_set} | {name} | {curve['operating'][1]:.2f} at "
                  f"{curve['operating'][0]:.1f} | " + " | ".join(
                      f"{sensitivity_at(curve, fp):.2f}" for fp in (0.5, 1, 2, 4)) + " |",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.figure:
        plot(results, args.figure)


if __name__ == "__main__":
    main()

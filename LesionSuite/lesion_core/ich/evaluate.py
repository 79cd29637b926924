"""Figures of an ICH model against voxel truth, stage by stage (the issue's benchmark).

One run of :func:`~.predict.predict_ich` with ``stages=True`` gives the mask of every
stage of :data:`~.predict.STAGES` on the CT's grid: the CAM alone (normalised CAM >= its
threshold), the pseudo-mask (CAM refined in HU), the segmenter, and the segmenter united
with the pseudo-mask. :func:`case_figures` scores each stage against a truth label map
(values 1-5 blood; 6, oedema, is not blood):

- ``dice``: volume Dice of any haemorrhage (:func:`lesion_core.metrics.dice`; ``None``
  on a scan without blood);
- ``slice_dice``: Dice of each CT slice (along the axial axis) that holds blood, as the
  paper reports it (slices without blood are left out: their Dice is 1 or 0);
- ``volume_error_ml``: predicted minus true volume (mL) per subtype, the prediction's
  subtypes named as the final mask's (:meth:`~.predict.ICHPrediction.label_mask`);
- ``fp_volume_ml``: predicted volume on a scan without blood.

The ``final`` stage is the model's output (after growth and the small-component rule).
Each final component's subtype is checked against the truth (:func:`component_subtypes`:
the most common blood subtype under it, or ``none``); :func:`subtype_confusion` counts
them over the cohort.

Scan- and slice-level AUC (:func:`lesion_core.metrics.roc_auc`) come from the classifier,
the same for every stage. :func:`summarize` pools: mean and sd over scans with blood of
``dice``, the mean over all positive slices of ``slice_dice``, the mean absolute and mean
signed volume error per subtype. The CLI (``lesion-suite ich evaluate``) and the
benchmark (``bench/``) use these functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from .. import io as lesion_io
from ..errors import CohortError
from ..jsonable import json_safe
from ..metrics import dice, roc_auc
from ..progress import Progress, ensure_progress
from ..tables import read_csv_records
from ..tasks import EvaluationReport
from ..training import resolve_precision
from ..volume import Volume
from .config import SUBTYPES
from .model import ICHModel
from .predict import STAGES, ICHPrediction, predict_ich

COHORT_TABLE = "ich_labels.csv"
#: Truth label values of extra-axial blood: subdural and epidural
#: (``lesion_core.labels.ICH_SUBTYPES``).
EXTRA_AXIAL = (4, 5)


def blood_mask(truth: Volume | np.ndarray) -> np.ndarray:
    """Any haemorrhage (values 1-5) of a truth label map."""
    array = np.asarray(truth.array if isinstance(truth, Volume) else truth)
    return (array >= 1) & (array <= 5)


def slice_dice(pred: np.ndarray, truth: np.ndarray, slice_axis: int) -> list[float]:
    """2D Dice of every slice along ``slice_axis`` where ``truth`` holds blood."""
    other = tuple(a for a in range(3) if a != slice_axis)
    positive = np.flatnonzero(np.asarray(truth, bool).any(axis=other))
    return [dice(np.take(pred, [k], axis=slice_axis), np.take(truth, [k], axis=slice_axis))
            for k in positive]


def subtype_volumes(labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """mL per subtype key of a label map with values 1-5."""
    counts = np.bincount(np.asarray(labels, np.int64).ravel(), minlength=7)
    return {key: float(counts[value]) * voxel_ml for value, key in enumerate(SUBTYPES, start=1)}


def stage_figures(mask: np.ndarray, truth: Volume, prediction: ICHPrediction,
                  min_volume_ml: float) -> dict:
    """Figures of one stage's CT-grid mask against ``truth`` (module notes)."""
    voxel_ml = truth.voxel_volume_ml
    labels = prediction.label_mask(mask, min_volume_ml)
    blood = blood_mask(truth)
    pred = labels > 0
    positive = bool(blood.any())
    predicted = subtype_volumes(labels, voxel_ml)
    true = subtype_volumes(np.asarray(truth.array) * blood, voxel_ml)
    return {"dice": dice(pred, blood) if positive else None,
            "slice_dice": slice_dice(pred, blood, prediction.slice_axis),
            "volume_pred_ml": float(pred.sum()) * voxel_ml,
            "fp_volume_ml": None if positive else float(pred.sum()) * voxel_ml,
            "volume_error_ml": {k: predicted[k] - true[k] for k in SUBTYPES}}


def component_subtypes(prediction: ICHPrediction, truth: Volume) -> list[list[str]]:
    """``[truth, predicted]`` subtype of every component of the final mask: predicted as
    :func:`~.predict.label_components` named it, true as the most common blood subtype
    of the truth under it (``"none"``: a component on no blood)."""
    mask = np.asarray(prediction.labels.array) > 0
    ids, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    # label_components numbers the components the same way (raster order of first voxel).
    if n != len(prediction.components):
        raise ValueError("the final mask's components do not match the prediction's")
    values = np.asarray(truth.array, np.int64)
    pairs = []
    for index, (box, component) in enumerate(zip(ndimage.find_objects(ids), prediction.components), 1):
        under = values[box][(ids[box] == index)]
        counts = np.bincount(under[(under >= 1) & (under <= 5)], minlength=6)[1:]
        true = SUBTYPES[int(np.argmax(counts))] if counts.any() else "none"
        pairs.append([true, component.subtype])
    return pairs


def subtype_confusion(cases: Sequence[dict]) -> dict:
    """Counts of ``truth -> predicted`` subtype over every case's final components."""
    rows = list(SUBTYPES) + ["none"]
    columns = list(SUBTYPES) + ["unknown"]
    table = {r: {c: 0 for c in columns} for r in rows}
    for case in cases:
        for true, predicted in case.get("component_subtypes", []):
            table[true][predicted] += 1
    return {"rows": "truth (majority subtype under the component; none: no blood)",
            "columns": "predicted", "counts": table}


def case_figures(prediction: ICHPrediction, truth: Volume, min_volume_ml: float = 0.0) -> dict:
    """Per-case figures of every stage the prediction holds (``stages=True``) and of the
    final (grown) mask, the truth and predicted subtype of each final component, plus
    the classifier's slice and scan probabilities against the truth's slice labels."""
    if tuple(truth.shape[:3]) != tuple(prediction.labels.shape[:3]):
        raise ValueError("the truth label map is not on the CT's grid")
    blood = blood_mask(truth)
    other = tuple(a for a in range(3) if a != prediction.slice_axis)
    stages = {name: stage_figures(mask, truth, prediction, min_volume_ml)
              for name, mask in prediction.stages.items()}
    stages["final"] = stage_figures(np.asarray(prediction.labels.array) > 0, truth, prediction,
                                    min_volume_ml)
    return {"positive": bool(blood.any()),
            "volume_true_ml": float(blood.sum()) * truth.voxel_volume_ml,
            "volume_true_ml_by_subtype": subtype_volumes(np.asarray(truth.array) * blood,
                                                         truth.voxel_volume_ml),
            "scan_probability": prediction.scan_probability,
            "slice_labels": blood.any(axis=other).astype(int).tolist(),
            "slice_probabilities": [float(p) for p in prediction.slice_probabilities[:, 0]],
            "seconds": prediction.seconds, "stages": stages,
            "component_subtypes": component_subtypes(prediction, truth)}


def _mean_sd(values: Sequence[float]) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], np.float64)
    return {"mean": float(v.mean()) if v.size else None,
            "sd": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}


def summarize(cases: list[dict], final: str = "final") -> dict:
    """Cohort figures per stage (module notes) and the subtype confusion of the final
    components; ``final`` names the model's final stage."""
    out: dict = {"n_cases": len(cases), "final_stage": final, "stages": {}}
    positives = [c for c in cases if c["positive"]]
    for stage in STAGES + ("final",):
        rows = [c["stages"][stage] for c in cases if stage in c["stages"]]
        if not rows:
            continue
        pos = [c["stages"][stage] for c in positives if stage in c["stages"]]
        out["stages"][stage] = {
            "dice": _mean_sd([r["dice"] for r in pos]),
            "slice_dice": _mean_sd([d for r in pos for d in r["slice_dice"]]),
            "fp_volume_ml": _mean_sd([r["fp_volume_ml"] for r in rows]),
            "volume_abs_error_ml": {k: _mean_sd([abs(r["volume_error_ml"][k]) for r in rows])
                                    for k in SUBTYPES},
            "volume_error_ml": {k: _mean_sd([r["volume_error_ml"][k] for r in rows])
                                for k in SUBTYPES}}
    labels = [y for c in cases for y in c["slice_labels"]]
    scores = [p for c in cases for p in c["slice_probabilities"]]
    out["slice_auc"] = roc_auc(labels, scores) if labels else None
    out["scan_auc"] = (roc_auc([int(c["positive"]) for c in cases],
                               [c["scan_probability"] for c in cases]) if cases else None)
    out["seconds"] = _mean_sd([c["seconds"] for c in cases])
    out["subtype_confusion"] = subtype_confusion(cases)
    return json_safe(out)


def read_cohort(folder: str | Path) -> list[dict]:
    """``subject``, ``ct`` and ``ct_ich_truth`` of each row of a synthetic ICH cohort."""
    table = Path(folder) / COHORT_TABLE
    fix = "give a folder written by `lesion-suite synth ich --out DIR`"
    if not table.is_file():
        raise CohortError(f"there is no {COHORT_TABLE}: not a synthetic ICH cohort", fix, folder)
    try:
        return [{k: r[k] for k in ("subject", "ct", "ct_ich_truth")}
                for r in read_csv_records(table, CohortError, fix)]
    except KeyError as exc:
        raise CohortError(f"the table has no column {exc}", fix, table) from exc


def _device(model: ICHModel):
    return next(model.segmenter.parameters()).device


def evaluate_cohort(model: ICHModel, folder: str | Path, progress: Progress | None = None,
                    limit: int | None = None, precision: str = "auto") -> EvaluationReport:
    """Run ``model`` on every subject (the first ``limit``) of a synthetic ICH cohort and
    score every stage against ``ct_ich_truth`` (networks in ``precision``, as
    :func:`~.predict.predict_ich`): per case :func:`case_figures`, the :func:`summarize`
    summary, and as facts the ``combination`` and the ``precision`` used (fp32 or bf16)."""
    progress = ensure_progress(progress)
    rows = read_cohort(folder)[:limit]
    cases = []
    for n, row in enumerate(rows):
        progress.update(n / max(len(rows), 1), f"{row['subject']} ({n + 1}/{len(rows)})")
        prediction = predict_ich(lesion_io.read_volume(row["ct"]), model, stages=True,
                                 precision=precision)
        figures = case_figures(prediction, lesion_io.read_volume(row["ct_ich_truth"]),
                               model.config.refine.min_volume_ml)
        cases.append({"subject": row["subject"], **figures})
    progress.update(1.0, "done")
    return EvaluationReport(
        "ich", model.model_id, model.version, "CT", str(folder),
        {"combination": model.combination,
         "precision": resolve_precision(precision, _device(model))},
        json_safe(cases), summarize(cases))


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines of a :func:`summarize` result (the CLI prints them)."""
    def fmt(stat: dict) -> str:
        if stat.get("mean") is None:
            return "n/a"
        return f"{stat['mean']:.3f}" + (f" ± {stat['sd']:.3f}" if stat.get("sd") else "")

    lines = []
    for stage, s in summary["stages"].items():
        mark = " (final)" if stage == summary["final_stage"] else ""
        errors = ", ".join(f"{k} {s['volume_abs_error_ml'][k]['mean']:.2f}" for k in SUBTYPES
                           if s["volume_abs_error_ml"][k]["mean"] is not None)
        lines.append(f"{stage + mark:>34}: Dice {fmt(s['dice'])}  slice Dice "
                     f"{fmt(s['slice_dice'])}  FP volume {fmt(s['fp_volume_ml'])} mL  "
                     f"|volume error| mL: {errors}")
    confusion = summary.get("subtype_confusion", {}).get("counts", {})
    for true, row in confusion.items():
        if any(row.values()):
            lines.append(f"components on {true}: " + ", ".join(
                f"{n} called {name}" for name, n in row.items() if n))
    auc = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines.append(f"slice AUC {auc(summary['slice_auc'])}, scan AUC {auc(summary['scan_auc'])}"
                 f", {fmt(summary['seconds'])} s per case")
    return lines

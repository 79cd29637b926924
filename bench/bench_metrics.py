"""Per-case metrics and their cohort summary, per kind, from ``lesion_core.metrics``.

* WMH (MICCAI WMH challenge definitions): Dice, HD95 (mm), AVD (%), lesion-wise recall
  and F1 (26-connected components), true and predicted volume (mL); ARWMC total MAE,
  quadratic kappa and Pearson r when the method predicts a rating.
* CMB: TP/FP/FN by the overlap rule (a detection sharing >= 1 voxel with a true CMB) and
  by the distance rule (detection centre within 5 mm of a true CMB centre), one-to-one;
  pooled sensitivity (cluster-wise TPR), precision, F1, FPavg (FP per scan), FPcmb (FP per
  true CMB); detections overlapping a mimic are counted.
* ICH: Dice of any-ICH (labels 1-5; oedema 6 is not blood) over scans with haemorrhage,
  false-positive volume (mL) on scans without; scan-level AUC, sensitivity, specificity
  from the method's scan score; slice-level ones over all slices of all scans.
"""

from __future__ import annotations

import math

import numpy as np

from lesion_core.metrics import (classification_scores, detect_by_distance, detect_by_overlap,
                                 rating_agreement, segmentation_scores, summarize_detections)
from lesion_core.metrics.detection import DetectionCounts
from lesion_core.wmh.evaluate import case_scores


def _stat(values) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else None,
            "sd": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}


# ----------------------------------------------------------------------- per case
def case_metrics(kind: str, case, prediction) -> dict:
    """JSON-safe metrics of one case (ground truth read from ``case.labels``)."""
    return {"wmh": _wmh_case, "cmb": _cmb_case, "ich": _ich_case}[kind](case, prediction)


def _wmh_case(case, prediction) -> dict:
    # The same scoring as `lesion-suite wmh evaluate` (one definition of a WMH case); a
    # T1-mode prediction is scored on the T1 grid against the T1 truth.
    modality = prediction.extra.get("modality", "FLAIR")
    out = case_scores(prediction.labels, case.labels[modality]["wmh"],
                      case.targets.get("arwmc_total"), prediction.rating).as_dict()
    levels = prediction.extra.get("levels")
    if levels:
        truth = case.targets.get("arwmc", {})
        out["region_levels"] = [[truth[r], levels[r]] for r in levels if r in truth]
        out["agreement"] = prediction.extra.get("agreement")
    return out


def _cmb_case(case, prediction) -> dict:
    name = case.primary_modality
    truth, mimics = case.labels[name]["cmb"], case.labels[name].get("mimics")
    pred = prediction.labels
    overlap = detect_by_overlap(pred, truth, relabel=False)
    if prediction.points_ras_mm is not None:
        distance = detect_by_distance(np.asarray(prediction.points_ras_mm).reshape(-1, 3), truth,
                                      points_unit="mm", relabel=False)
    else:
        distance = detect_by_distance(pred, truth, relabel=False)
    on_mimic = 0
    if mimics is not None:
        ids = np.unique(np.asarray(pred.array)[np.asarray(mimics.array) > 0])
        on_mimic = int(np.count_nonzero(ids))
    return {"overlap": _counts(overlap), "distance": _counts(distance),
            "detections_on_mimics": on_mimic}


def _counts(c: DetectionCounts) -> dict:
    return {"tp": c.tp, "fp": c.fp, "fn": c.fn}


def _ich_case(case, prediction) -> dict:
    label = case.labels["CT"]["ich"]
    blood = (np.asarray(label.array) >= 1) & (np.asarray(label.array) <= 5)
    truth = label.with_array(blood.astype(np.uint8))
    scores = segmentation_scores(prediction.labels, truth)
    positive = bool(blood.any())
    slices = case.targets.get("slices") or []
    out = {"positive": positive, "dice": scores.dice if positive else None,
           "hd95_mm": scores.hd95_mm if positive else None,
           "volume_true_ml": scores.volume_true_ml, "volume_pred_ml": scores.volume_pred_ml,
           "fp_volume_ml": None if positive else scores.volume_pred_ml,
           "scan_score": prediction.scan_score, "scan_threshold": prediction.scan_threshold,
           "slice_labels": [int(bool(s["ich"])) for s in slices],
           "slice_scores": None, "slice_threshold": prediction.slice_threshold}
    if prediction.slice_scores is not None:
        out["slice_scores"] = [float(s) for s in prediction.slice_scores]
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


# ----------------------------------------------------------------------- summary
def summarize(kind: str, per_case: list[dict]) -> list[tuple[str, dict | float | None, str]]:
    """Rows ``(metric, value, note)``; value is ``{"mean","sd","n"}`` or a pooled number."""
    return {"wmh": _wmh_summary, "cmb": _cmb_summary, "ich": _ich_summary}[kind](per_case)


def _wmh_summary(rows: list[dict]) -> list:
    out = [("Dice", _stat(r["dice"] for r in rows), "per case"),
           ("HD95 (mm)", _stat(r["hd95_mm"] for r in rows), "per case, in-plane boundaries"),
           ("AVD (%)", _stat(r["avd_percent"] for r in rows), "per case"),
           ("lesion-wise recall", _stat(r["lesion_recall"] for r in rows), "26-connected"),
           ("lesion-wise F1", _stat(r["lesion_f1"] for r in rows), "26-connected"),
           ("volume, truth (mL)", _stat(r["volume_true_ml"] for r in rows), ""),
           ("volume, predicted (mL)", _stat(r["volume_pred_ml"] for r in rows), "")]
    rated = [r for r in rows if r["rating_pred"] is not None and r["rating_true"] is not None]
    if rated:
        agreement = rating_agreement([r["rating_true"] for r in rated],
                                     [r["rating_pred"] for r in rated], max_rating=30)
        out += [("ARWMC total MAE", agreement.mae, "pooled"),
                ("ARWMC total kappa (quadratic)", agreement.kappa, "pooled"),
                ("ARWMC total Pearson r", agreement.pearson_r, "pooled")]
        low = [r for r in rated if r["rating_true"] <= 3]
        if low:
            out += [("ARWMC total MAE, scans rated 0-3",
                     float(np.mean([abs(r["rating_pred"] - r["rating_true"]) for r in low])),
                     f"{len(low)} scans")]
        zero = [r["rating_pred"] for r in rated if r["rating_true"] == 0]
        if zero:
            out += [("ARWMC total predicted, scans rated 0 (largest)", float(max(zero)),
                     f"{len(zero)} scans")]
    if any(r.get("agreement") is not None for r in rows):
        out += [("rating/segmentation agreement",
                 _stat(r.get("agreement") for r in rows),
                 "per case: fraction of region-sides whose segmented volume lies in the "
                 "range of the predicted level")]
    pairs = [p for r in rows for p in r.get("region_levels") or []]
    if pairs:
        regional = rating_agreement([t for t, _ in pairs], [p for _, p in pairs], max_rating=3)
        out += [("ARWMC region MAE", regional.mae, f"pooled over {len(pairs)} region-sides"),
                ("ARWMC region kappa (quadratic)", regional.kappa, "pooled region-sides")]
    return out


def _cmb_summary(rows: list[dict]) -> list:
    out = []
    for rule, note in (("overlap", ">= 1 voxel shared"), ("distance", "centre within 5 mm")):
        counts = [DetectionCounts(**r[rule]) for r in rows]
        s = summarize_detections(counts)
        out += [(f"sensitivity ({rule})", s.sensitivity, f"pooled, {note}"),
                (f"precision ({rule})", s.precision, "pooled"),
                (f"F1 ({rule})", s.f1, "pooled"),
                (f"FPavg ({rule})", s.fp_avg, "false positives per scan"),
                (f"FPcmb ({rule})", s.fp_cmb, "false positives per true CMB"),
                (f"F1 per scan ({rule})", _stat(c.f1 for c in counts), "mean over scans")]
    n_true = sum(r["distance"]["tp"] + r["distance"]["fn"] for r in rows)
    n_pred = sum(r["distance"]["tp"] + r["distance"]["fp"] for r in rows)
    out += [("true CMBs / detections", f"{n_true} / {n_pred}", "all scans"),
            ("detections on mimics", _stat(r["detections_on_mimics"] for r in rows),
             "per scan (vessels, calcifications, air-bone)")]
    return out


def _ich_summary(rows: list[dict]) -> list:
    positives = [r for r in rows if r["positive"]]
    out = [("Dice, any ICH", _stat(r["dice"] for r in positives), "scans with haemorrhage"),
           ("HD95 (mm)", _stat(r["hd95_mm"] for r in positives), "scans with haemorrhage"),
           ("volume, truth (mL)", _stat(r["volume_true_ml"] for r in positives), "scans with haemorrhage"),
           ("volume, predicted (mL)", _stat(r["volume_pred_ml"] for r in positives), "scans with haemorrhage"),
           ("false-positive volume (mL)", _stat(r["fp_volume_ml"] for r in rows if not r["positive"]),
            "scans without haemorrhage")]
    if all(r["scan_score"] is not None for r in rows):
        scan = classification_scores([int(r["positive"]) for r in rows],
                                     [r["scan_score"] for r in rows], rows[0]["scan_threshold"])
        out += [("scan AUC", scan.auc, f"{scan.n_positive} pos / {scan.n_negative} neg"),
                ("scan sensitivity", scan.sensitivity, f"score >= {scan.threshold:g}"),
                ("scan specificity", scan.specificity, f"score >= {scan.threshold:g}")]
    if rows and all(r["slice_scores"] is not None and len(r["slice_scores"]) == len(r["slice_labels"])
                    for r in rows):
        labels = [y for r in rows for y in r["slice_labels"]]
        scores = [s for r in rows for s in r["slice_scores"]]
        sl = classification_scores(labels, scores, rows[0]["slice_threshold"])
        out += [("slice AUC", sl.auc, f"{sl.n_positive} pos / {sl.n_negative} neg slices"),
                ("slice sensitivity", sl.sensitivity, f"score >= {sl.threshold:g}"),
                ("slice specificity", sl.specificity, f"score >= {sl.threshold:g}")]
    return out

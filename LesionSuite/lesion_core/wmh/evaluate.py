"""Evaluation of a WMH model against ground truth: one case, or a synthetic cohort folder.

:func:`case_scores` is the one way a WMH case is scored (the benchmark harness calls it
too): the MICCAI WMH challenge metrics of :func:`lesion_core.metrics.segmentation_scores`
(Dice, HD95 in mm, AVD in %, lesion-wise recall/precision/F1 on 26-connected components,
true and predicted volume in mL) and the ARWMC total, rated and predicted (0-30).

:func:`evaluate_cohort` runs a model on every subject of a folder written by
``lesion-suite synth wmh`` (``wmh_labels.csv``). A FLAIR model is run on ``flair`` and
scored against ``flair_wmh_truth``; a T1 model on ``t1`` against ``t1_wmh_truth``. The
brain mask and atlases come from registration to MNI, as for any image. Only with
``use_registration=False`` (the *known-transform path*, synthetic data only) are the
cohort's ``<modality>_arwmc_regions_truth`` files read: that is the ARWMC atlas carried by
the subject's true MNI transform, so the brain mask is its support and no zone atlas is
available (zone volumes are 0 on that path). The cohort summary pools, per cohort:
mean and sd of each segmentation score and of the seconds per case; MAE, quadratic kappa
and Pearson r of the ARWMC totals; MAE and quadratic kappa of the region-side levels (0-3)
pooled over region-sides and subjects, and the MAE per region-side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import io as lesion_io
from ..errors import CohortError
from ..jsonable import json_safe
from ..metrics import (SegmentationScores, mean_absolute_error, rating_agreement,
                       segmentation_scores, summarize_segmentation)
from ..progress import Progress, ensure_progress
from ..tables import read_csv_records
from ..atlas.arwmc import REGIONS
from ..tasks import EvaluationReport
from ..volume import Volume
from .data import Masker
from .model import WMHModel
from .predict import SubjectAtlases, predict

COHORT_TABLE = "wmh_labels.csv"
#: Highest ARWMC total (10 region-sides rated 0-3) and highest region-side rating.
MAX_TOTAL, MAX_LEVEL = 30, 3


# ------------------------------------------------------------------------ one case
@dataclass(frozen=True)
class CaseScores:
    """Scores of one case: the segmentation metrics and the ARWMC total (rated =
    reference, predicted = the model's; ``None`` when unknown or not predicted)."""

    segmentation: SegmentationScores
    rating_true: float | None
    rating_pred: float | None

    def as_dict(self) -> dict:
        """Flat JSON-safe dict: the :class:`SegmentationScores` fields (nan -> None),
        ``rating_true`` and ``rating_pred``."""
        return {**self.segmentation.as_dict(), **json_safe(
            {"rating_true": self.rating_true, "rating_pred": self.rating_pred})}


def case_scores(pred_labels: Volume | np.ndarray, truth: Volume | np.ndarray,
                rated_total: float | None, predicted_total: float | None) -> CaseScores:
    """Score one case.

    Args:
        pred_labels, truth: masks on one grid (Volumes, or arrays at 1 mm spacing);
            lesion where the value is >= 0.5.
        rated_total: the reference ARWMC total (0-30), ``None`` if unknown.
        predicted_total: the model's ARWMC total, ``None`` if it gives none (T1 mode).
    """
    return CaseScores(segmentation_scores(pred_labels, truth),
                      None if rated_total is None else float(rated_total),
                      None if predicted_total is None else float(predicted_total))


# ------------------------------------------------------------------- the cohort
@dataclass(frozen=True)
class CohortCase:
    """One subject of a synthetic cohort, for one modality (paths are absolute or as
    written in the table); ``rated_levels`` in :data:`REGIONS` order, ``None`` if unrated."""

    subject: str
    image: Path
    truth: Path
    regions_truth: Path | None
    rated_total: int | None
    rated_levels: tuple[int | None, ...]


def _cell(record: dict, key: str) -> int | None:
    value = str(record.get(key) or "").strip()
    return int(float(value)) if value else None


def read_cohort(folder: str | Path, modality: str = "FLAIR") -> list[CohortCase]:
    """The subjects of a ``lesion-suite synth wmh`` folder for ``modality`` (FLAIR or T1)."""
    folder = Path(folder)
    table = folder / COHORT_TABLE
    fix = "give a folder written by `lesion-suite synth wmh --out DIR`"
    if not table.is_file():
        raise CohortError(f"there is no {COHORT_TABLE}: not a synthetic WMH cohort", fix,
                          folder)
    records = read_csv_records(table, CohortError, fix)
    key = modality.lower()
    needed = ("subject", key, f"{key}_wmh_truth", "arwmc_total")
    missing = [c for c in needed if records and c not in records[0]]
    if not records or missing:
        raise CohortError("the table has no subjects" if not records else
                          f"the table lacks column(s) {', '.join(missing)}", fix, table)

    def path(value: str | None) -> Path | None:
        # The table holds paths as `synth` wrote them (relative to where it ran); a moved
        # cohort keeps its layout <folder>/<subject>/<file>, so look there next.
        if not value:
            return None
        given = Path(value)
        for candidate in (given, folder / given, folder / given.parent.name / given.name):
            if candidate.exists():
                return candidate
        return given
    try:
        return [CohortCase(r["subject"], path(r[key]), path(r[f"{key}_wmh_truth"]),
                           path(r.get(f"{key}_arwmc_regions_truth")), _cell(r, "arwmc_total"),
                           tuple(_cell(r, f"arwmc_{name}") for name in REGIONS))
                for r in records]
    except ValueError as exc:
        raise CohortError(f"a rating is not a number ({exc})", fix, table) from exc


def known_transform_atlases(image: Volume, regions_truth: Volume) -> SubjectAtlases:
    """Atlases of a synthetic subject from its stored known-transform ARWMC atlas (the
    ``*_arwmc_regions_truth`` file): brain = where the atlas is set; no zone atlas (0)."""
    if regions_truth.shape[:3] != image.shape[:3] or not np.allclose(
            regions_truth.affine, image.affine, atol=1e-3):
        regions_truth = regions_truth.resample_to_grid(image.affine, image.shape[:3], order=0)
    arwmc = np.asarray(regions_truth.array).astype(np.uint8)
    return SubjectAtlases(image.with_array((arwmc > 0).astype(np.uint8)),
                          image.with_array(arwmc), image.with_array(np.zeros_like(arwmc)),
                          {"atlases": "known synthetic transform (cohort files)"})


def known_transform_masker(folder: str | Path, modality: str = "FLAIR") -> Masker:
    """A training masker for a synthetic cohort that reads each subject's known-transform
    atlas instead of registering (brain mask and ARWMC atlas; lesion truth is never read)."""
    cases = {case.subject: case for case in read_cohort(folder, modality)}

    def masker(image: Volume, subject: str) -> tuple[Volume, Volume]:
        case = cases.get(subject)
        if case is None or case.regions_truth is None:
            raise CohortError(f"subject {subject} has no known-transform atlas",
                              "use registration (leave out the known-transform option)",
                              Path(folder) / COHORT_TABLE)
        atlases = known_transform_atlases(image, lesion_io.read_volume(case.regions_truth))
        return atlases.brain, atlases.arwmc
    masker.cache_name = f"known synthetic transform ({modality})"
    return masker


def _mean_sd(values: Sequence[float]) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], np.float64)
    return json_safe({"mean": float(v.mean()) if v.size else None,
                      "sd": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)})


def _pairs(rows: list[dict], true_key: str, pred_key: str) -> tuple[list, list]:
    kept = [r for r in rows if r[true_key] is not None and r[pred_key] is not None]
    return [r[true_key] for r in kept], [r[pred_key] for r in kept]


def summarize(cases: list[CaseScores], rows: list[dict]) -> dict:
    """The cohort summary of per-case scores and rows (see the module notes)."""
    summary = summarize_segmentation(c.segmentation for c in cases)
    summary["seconds"] = _mean_sd([r["seconds"] for r in rows])
    rated, predicted = _pairs(rows, "rating_true", "rating_pred")
    summary["total"] = (rating_agreement(rated, predicted, max_rating=MAX_TOTAL).as_dict()
                        if rated else None)
    level_rows = [{"true": r["levels_true"][name], "pred": (r["levels_pred"] or {}).get(name),
                   "region": name} for r in rows for name in REGIONS]
    rated, predicted = _pairs(level_rows, "true", "pred")
    summary["region_sides"] = (rating_agreement(rated, predicted, max_rating=MAX_LEVEL).as_dict()
                               if rated else None)
    per_region = {}
    for name in REGIONS:
        rated, predicted = _pairs([r for r in level_rows if r["region"] == name], "true", "pred")
        per_region[name] = mean_absolute_error(rated, predicted) if rated else None
    summary["region_mae"] = per_region
    return json_safe(summary)


def evaluate_cohort(model: WMHModel, cohort_folder: str | Path, use_registration: bool = True,
                    progress: Progress | None = None, precision: str = "auto"
                    ) -> EvaluationReport:
    """Predict on every subject of a synthetic WMH cohort and score against its truth: per
    case :meth:`CaseScores.as_dict` plus subject, levels, volumes and seconds, and the
    cohort summary (module notes); ``facts["atlases"]`` says where the atlases came from.

    Args:
        model: a loaded WMH model (FLAIR: the ``flair`` images; T1: the ``t1`` images).
        cohort_folder: a folder written by ``lesion-suite synth wmh``.
        use_registration: ``False`` = the known-transform path (module notes): faster,
            exact atlases, synthetic cohorts only.
        progress: reporter; cancelling stops between and inside cases.
        precision: of the network passes (see :func:`~lesion_core.wmh.predict.predict`).
    """
    progress = ensure_progress(progress)
    cohort = read_cohort(cohort_folder, "T1" if model.is_t1 else "FLAIR")
    atlases = "registration to MNI" if use_registration else "known synthetic transform"
    report = EvaluationReport("wmh", model.model_id, model.version, model.modality,
                              str(cohort_folder), {"atlases": atlases})
    scores: list[CaseScores] = []
    for index, case in enumerate(cohort):
        stage = progress.sub(index / len(cohort), (index + 1) / len(cohort))
        stage.update(0.0, f"{case.subject} ({index + 1}/{len(cohort)})")
        image = lesion_io.read_volume(case.image)
        atlases = None
        if not use_registration:
            if case.regions_truth is None:
                raise CohortError(f"subject {case.subject} has no known-transform atlas",
                                  "evaluate with registration instead",
                                  Path(cohort_folder) / COHORT_TABLE)
            atlases = known_transform_atlases(image, lesion_io.read_volume(case.regions_truth))
        prediction = predict(image, model, atlases, stage.sub(0.0, 0.9), precision)
        stage.update(0.9, f"{case.subject}: scoring")
        truth = lesion_io.read_volume(case.truth)
        score = case_scores(prediction.labels, truth, case.rated_total, prediction.total)
        scores.append(score)
        report.cases.append(json_safe({
            "subject": case.subject, **score.as_dict(),
            "levels_true": dict(zip(REGIONS, case.rated_levels)),
            "levels_pred": prediction.levels, "lesion_ml": prediction.lesion_ml,
            "brain_ml": prediction.brain_ml, "seconds": prediction.seconds}))
    report.summary = summarize(scores, report.cases)
    progress.update(1.0, "evaluation done")
    return report


def summary_rows(report: EvaluationReport) -> list[tuple[str, dict | float | None, str]]:
    """Rows ``(metric, value, note)`` for a table; value ``{"mean","sd","n"}`` or a number."""
    s = report.summary
    rows: list[tuple[str, dict | float | None, str]] = [
        ("Dice", s["dice"], "per case"), ("HD95 (mm)", s["hd95_mm"], "per case"),
        ("AVD (%)", s["avd_percent"], "per case"),
        ("lesion-wise recall", s["lesion_recall"], "26-connected"),
        ("lesion-wise F1", s["lesion_f1"], "26-connected"),
        ("volume, truth (mL)", s["volume_true_ml"], ""),
        ("volume, predicted (mL)", s["volume_pred_ml"], ""),
        ("seconds per case", s["seconds"], "prediction incl. atlases")]
    if s["total"] is not None:
        n = f"{s['total']['n']} subjects"
        rows += [("ARWMC total MAE", s["total"]["mae"], n),
                 ("ARWMC total kappa (quadratic)", s["total"]["kappa"], n),
                 ("ARWMC total Pearson r", s["total"]["pearson_r"], n)]
    if s["region_sides"] is not None:
        n = f"{s['region_sides']['n']} region-sides pooled"
        rows += [("ARWMC region-side MAE", s["region_sides"]["mae"], n),
                 ("ARWMC region-side kappa (quadratic)", s["region_sides"]["kappa"], n)]
        rows += [(f"  MAE {name}", value, "") for name, value in s["region_mae"].items()
                 if value is not None]
    return rows

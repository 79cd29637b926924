"""Detection figures of the CMB detector, stage by stage, against known microbleeds.

:func:`stage_selections` says which candidates each stage's output holds, so that one run
of :func:`.predict.predict_cmb` (with the teacher) scores all four rows the papers compare:
stage 1 alone, stage 1 + 2 with the teacher, with the student, and with the clean-up (the
shipped pipeline). The benchmark (``bench/``) uses the same selections.

Detections are matched to true microbleed centres by the distance rule of
:mod:`lesion_core.metrics.detection` (5 mm, one-to-one); figures are pooled over images.
"""

from __future__ import annotations

import numpy as np

from ..io import read_volume
from ..metrics.detection import (DetectionCounts, label_objects, match_points, object_centres,
                                 summarize_detections)
from ..progress import Progress, ensure_progress
from ..tasks import EvaluationReport
from .predict import CandidateResult, CMBPrediction, predict_cmb

STAGES = ("stage1", "stage1+2 teacher", "stage1+2 student", "all stages")


def stage_selections(prediction: CMBPrediction) -> dict[str, list[CandidateResult]]:
    """Candidates in the output of each of :data:`STAGES` (the teacher row is empty when
    the teacher's probabilities were not computed)."""
    threshold = prediction.thresholds["stage2"]
    cands = prediction.candidates
    return {"stage1": list(cands),
            "stage1+2 teacher": [c for c in cands if c.teacher_probability is not None
                                 and c.teacher_probability >= threshold],
            "stage1+2 student": [c for c in cands if c.stage2_probability >= threshold],
            "all stages": [c for c in cands if c.kept]}


def true_centres(truth) -> np.ndarray:
    """RAS centres (mm, ``(N, 3)``) of the microbleeds of a truth label map (one id each)."""
    _, centres = object_centres(label_objects(np.asarray(truth.array), relabel=False))
    return truth.voxel_to_ras(centres) if len(centres) else np.zeros((0, 3))


def case_counts(prediction: CMBPrediction, truth) -> dict[str, DetectionCounts]:
    """Distance-rule counts of each stage's output against ``truth``."""
    centres = true_centres(truth)
    return {stage: match_points(np.array([c.centre_ras for c in chosen]).reshape(-1, 3), centres)
            for stage, chosen in stage_selections(prediction).items()}


def evaluate_cohort(model, rows, progress: Progress | None = None, precision: str = "auto",
                    cohort: str = "") -> EvaluationReport:
    """Run the model on every row (``CohortRow``) at ``precision`` and pool the figures
    per stage (``summary``: stage -> pooled detection figures; ``cases``: the counts of
    each stage per subject). Other sequences than the model's are run anyway (evaluation,
    not clinical use). ``cohort``: the table the rows came from (for the report)."""
    from ..training import resolve_precision

    progress = ensure_progress(progress)
    per_case, pooled = [], {stage: [] for stage in STAGES}
    for index, row in enumerate(rows):
        progress.update(index / max(len(rows), 1), f"{row.subject} ({index + 1}/{len(rows)})")
        prediction = predict_cmb(read_volume(row.image), model, row.sequence,
                                 allow_other_sequence=True, with_teacher=True,
                                 precision=precision)
        counts = case_counts(prediction, read_volume(row.cmb))
        for stage, c in counts.items():
            pooled[stage].append(c)
        per_case.append({"subject": row.subject,
                         **{stage: c.as_dict() for stage, c in counts.items()}})
    progress.update(1.0, "done")
    summary = {stage: summarize_detections(c).as_dict() for stage, c in pooled.items()}
    sequences = "/".join(sorted({row.sequence for row in rows}))
    device = next(model.stage1.parameters()).device
    return EvaluationReport("cmb", model.model_id, model.version, sequences, str(cohort),
                            {"precision": resolve_precision(precision, device)},
                            per_case, summary)


def summary_lines(summary: dict) -> list[str]:
    """One line of detection figures per stage (undefined ratios, with no CMB or no
    detection, are n/a)."""
    def number(value) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return [f"{stage:>16}: sensitivity {number(figures['sensitivity'])}  precision "
            f"{number(figures['precision'])}  FPavg {number(figures['fp_avg'])}"
            for stage, figures in summary.items()]


def labels_of(prediction: CMBPrediction, chosen: list[CandidateResult]):
    """The candidate label map (image grid) keeping only ``chosen`` ids."""
    array = np.asarray(prediction.candidate_labels.array)
    lut = np.zeros(int(array.max()) + 1 if array.size else 1, np.int32)
    ids = [c.id for c in chosen]
    lut[ids] = ids
    return prediction.candidate_labels.with_array(lut[array])

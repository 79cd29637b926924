"""Training an ICH model from weak labels and calibrating its thresholds (``ich train``).

:func:`fit_ich` runs :func:`~.train.train` (classifier, pseudo-masks, segmenter: image
labels only), then :func:`calibrate_thresholds` on validation scans' *image-level* labels
(slice and scan presence, subtypes: still no voxel label), and returns the unsaved
:class:`~.model.ICHModel` with its card (the training report); it saves itself.

Calibration: each threshold maximises Youden's J (sensitivity + specificity - 1) of its
probability against the validation labels (slice "any", scan "any", slice subtypes); a
label with fewer than :data:`MIN_POSITIVES` positives or negatives keeps 0.5.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..metrics import roc_auc
from ..progress import Progress, ensure_progress
from ..tasks import ModelCard
from .config import SUBTYPES, ICHConfig, TrainConfig
from .data import WeakLabelDataset, WeakSample, WeakScan
from .model import DEFAULT_MODEL, DESCRIPTION, ICHModel, ICHThresholds
from .predict import classify
from .train import load_samples, stage_report, train

#: Fewer validation positives (or negatives) than this keep a threshold at 0.5.
MIN_POSITIVES = 3
#: How the shipped pipeline makes its final mask (measured on validation seeds; docs/ich.md).
DEFAULT_COMBINATION = "segmenter"


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (midpoint between neighbouring scores) maximising Youden's J;
    0.5 with too few positives or negatives."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    if labels.sum() < MIN_POSITIVES or (~labels).sum() < MIN_POSITIVES:
        return 0.5
    values = np.unique(scores)
    cuts = np.concatenate([(values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    j = [(scores[labels] >= c).mean() + (scores[~labels] < c).mean() - 1 for c in cuts]
    return float(np.clip(cuts[int(np.argmax(j))], 1e-3, 0.999))


def sensitivity_threshold(labels: np.ndarray, scores: np.ndarray, sensitivity: float) -> float:
    """The highest score threshold that keeps at least ``sensitivity`` of the positives
    (so the fewest negatives pass), midway to the next lower score; 0.5 with too few
    positives or negatives. An operating point stated as a sensitivity, as a triage
    rule is: a scan with blood must not be called clear."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    if labels.sum() < MIN_POSITIVES or (~labels).sum() < MIN_POSITIVES:
        return 0.5
    positives = np.sort(scores[labels])
    missed = int(np.floor((1.0 - sensitivity) * len(positives) + 1e-9))  # may fall below
    cut = positives[missed]
    lower = scores[scores < cut]
    if lower.size:
        cut = (cut + lower.max()) / 2
    return float(np.clip(cut, 1e-3, 0.999))


def validation_probabilities(model: ICHModel, samples: Sequence[WeakSample]):
    """Stacked known labels and probabilities: ``(slice targets [N, 6], slice
    probabilities [N, 6], scan targets [M, 6], scan probabilities [M, 6])``."""
    st, sp, ct, cp = [], [], [], []
    with torch.no_grad():
        for sample in samples:
            cam, scan = classify(model, sample.stack)
            st.append(sample.slice_targets.numpy()), sp.append(cam.probabilities)
            ct.append(sample.scan_targets.numpy()), cp.append(scan)
    return np.concatenate(st), np.concatenate(sp), np.stack(ct), np.stack(cp)


def calibrate_thresholds(model: ICHModel, samples: Sequence[WeakSample]) -> tuple[ICHThresholds, dict]:
    """Thresholds by Youden's J on validation image-level labels, and their figures."""
    st, sp, ct, cp = validation_probabilities(model, samples)

    def pick(targets, probabilities, c):
        known = ~np.isnan(targets[:, c])
        return youden_threshold(targets[known, c] == 1, probabilities[known, c]), known

    slice_t, known = pick(st, sp, 0)
    scan_t, scan_known = pick(ct, cp, 0)
    subtypes = tuple(pick(st, sp, c)[0] for c in range(1, 1 + len(SUBTYPES)))
    auc = lambda y, s: roc_auc(y.astype(int), s) if len(set(y.tolist())) == 2 else None  # noqa: E731
    report = {"validation_scans": len(samples), "validation_slices": int(known.sum()),
              "slice_auc": auc(st[known, 0] == 1, sp[known, 0]),
              "scan_auc": auc(ct[scan_known, 0] == 1, cp[scan_known, 0])}
    return ICHThresholds(slice_t, scan_t, subtypes), report


def fit_ich(scans: Sequence[WeakScan], validation: Sequence[WeakScan] = (),
            config: ICHConfig = ICHConfig(), train_config: TrainConfig = TrainConfig(),
            combination: str = DEFAULT_COMBINATION, progress: Progress | None = None,
            checkpoint_dir: str | Path | None = None, cache_dir: str | Path | None = None,
            data_note: dict | None = None, classifier=None) -> tuple[ICHModel, dict]:
    """Train on ``scans`` and calibrate on ``validation`` (weak labels only). Returns the
    unsaved model, with its card, and its training report (JSON-able). ``checkpoint_dir``:
    resumable training (:func:`~.train.train`); ``cache_dir``: preprocessed stacks of
    both sets kept on disk; ``data_note``: where the scans came from (added to the
    report); ``classifier``: a trained one to start from (:func:`~.train.train`)."""
    progress = ensure_progress(progress)
    start = time.perf_counter()
    share = 0.9 if validation else 1.0
    trained = train(WeakLabelDataset(scans, config, cache_dir=cache_dir), config, train_config,
                    progress.sub(0.0, share), checkpoint_dir, classifier=classifier)
    model = ICHModel(None, trained.classifier, trained.segmenter, config,
                     combination=combination)
    calibration: dict = {}
    if validation:
        samples = load_samples(WeakLabelDataset(validation, config, cache_dir=cache_dir), config,
                               progress.sub(share, share + 0.05))
        progress.update(0.97, "calibrating thresholds on validation labels")
        model.thresholds, calibration = calibrate_thresholds(model, samples)
    progress.update(1.0, "trained")
    pseudo = [p.mask for p in trained.pseudo_masks]
    with_labels = [s for s in scans if s.slices]
    report = {
        "supervision": "image-level labels only (slice and scan presence, subtypes)",
        "subjects": len(scans),
        "positive_scans": sum(1 for s in scans if s.labels[0] == 1.0
                              or any(lab[0] == 1.0 for _, lab in s.slices)),
        "scans_with_slice_labels": len(with_labels),
        "classifier": stage_report(train_config.classifier, trained.results["classifier"]),
        "segmenter": stage_report(train_config.segmenter, trained.results["segmenter"]),
        "self_training": [r.summary() for k, r in trained.results.items()
                          if k.startswith("self_training_")],
        "pseudo_masks_non_empty": int(sum(bool(m.any()) for m in pseudo)),
        "calibration": calibration, "thresholds": model.thresholds.as_dict(config),
        "combination": combination, "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(), **(data_note or {})}
    model.card = ModelCard(DEFAULT_MODEL, description=DESCRIPTION, training=report)
    return model, report

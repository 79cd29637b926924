"""Training an ICH model from weak labels and calibrating its thresholds (``ich train``).

:func:`fit_ich` runs :func:`~.train.train` (classifier, pseudo-masks, segmenter: image
labels only), then :func:`calibrate_thresholds` on validation scans' *image-level* labels
(slice and scan presence, subtypes: still no voxel label), and returns the unsaved
:class:`~.model.ICHModel` with its card (the training report); it saves itself.

Calibration: each threshold maximises Youden's J (sensitivity + specificity - 1) of its
probability against the validation labels (slice "any", scan "any", slice subtypes); a
label with fewer than :data:`MIN_POSITIVES` positives or negatives keeps 0.5. The
segmenter's confident-seed level (``GrowConfig.seed_probability``) is set the same way
over the segmenter's components (:func:`calibrate_seed_probability`): each segmenter is
confident to its own degree, so a level fixed for one model discards another's bleeds.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from ..metrics import roc_auc
from ..progress import Progress, ensure_progress
from ..tasks import ModelCard
from .config import SUBTYPES, ICHConfig, TrainConfig
from .data import WeakLabelDataset, WeakSample, WeakScan
from .model import DEFAULT_MODEL, DESCRIPTION, ICHModel, ICHThresholds
from .predict import classify
from .segmenter import segment_stack
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


def calibrate_thresholds(model: ICHModel, samples: Sequence[WeakSample],
                         probabilities=None) -> tuple[ICHThresholds, dict]:
    """Thresholds by Youden's J on validation image-level labels, and their figures;
    ``probabilities``: :func:`validation_probabilities` of these samples, if already made."""
    st, sp, ct, cp = probabilities or validation_probabilities(model, samples)

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


def component_peaks(probability: np.ndarray, slice_targets: np.ndarray, slice_gate: np.ndarray,
                    threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(on blood, peak probability)`` of each 26-connected component of the segmenter's
    mask on one stack (``probability [S, H, W]`` >= ``threshold`` on the slices of
    ``slice_gate [S]``), judged by the image-level labels ``slice_targets [S]`` (1 blood,
    0 none, NaN unknown): a component is on blood when most of its labelled slices are
    positive; one on unlabelled slices only is left out."""
    mask = (probability >= threshold) & np.asarray(slice_gate, bool)[:, None, None]
    ids, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    on_blood, peaks = [], []
    for index, box in enumerate(ndimage.find_objects(ids), start=1):
        inside = ids[box] == index
        slices = box[0].start + np.flatnonzero(inside.any(axis=(1, 2)))
        labels = slice_targets[slices]
        labels = labels[~np.isnan(labels)]
        if labels.size:
            on_blood.append(labels.mean() > 0.5)
            peaks.append(float(probability[box][inside].max()))
    return np.asarray(on_blood, bool), np.asarray(peaks, np.float64)


def calibrate_seed_probability(model: ICHModel, samples: Sequence[WeakSample],
                               slice_probabilities: np.ndarray, precision: str = "auto"
                               ) -> tuple[float, dict]:
    """The confident-seed level of ``model`` (thresholds already calibrated): Youden's J
    of the segmenter components' peak probability for "on blood" by the validation
    scans' slice labels, each component counted once, on the slices whose any-ICH
    probability (``slice_probabilities``: the samples' slices one after the other, as
    :func:`validation_probabilities` stacks them) passes the slice gate. Every component
    counts (the segmenter's threshold) when fewer than :data:`MIN_POSITIVES` components
    lie on blood or off it.

    Weighting the components by their volume was tried and chose worse levels (on 32
    validation scans, final Dice 0.02 against 0.46 for the 8-subject model of the
    data-fraction curve): a component on a slice labelled blood need not lie on the
    blood, and the large ones on such slices are often mimics."""
    config = model.config
    on_blood, peaks = [], []
    ends = np.cumsum([sample.stack.n_slices for sample in samples])
    gates = np.split(np.asarray(slice_probabilities) >= model.thresholds.slice, ends[:-1])
    with torch.no_grad():
        for sample, gate in zip(samples, gates):
            probability = segment_stack(model.segmenter, sample.stack.image, config,
                                        precision=precision)
            blood, peak = component_peaks(probability, sample.slice_targets[:, 0].numpy(),
                                          gate, config.segmenter.threshold)
            on_blood.append(blood), peaks.append(peak)
    on_blood, peaks = np.concatenate(on_blood), np.concatenate(peaks)
    too_few = on_blood.sum() < MIN_POSITIVES or (~on_blood).sum() < MIN_POSITIVES
    level = config.segmenter.threshold if too_few else youden_threshold(on_blood, peaks)
    report = {"components_on_blood": int(on_blood.sum()),
              "components_off_blood": int((~on_blood).sum()), "seed_probability": level}
    return level, report


def calibrate(model: ICHModel, samples: Sequence[WeakSample], seed_level: bool = False) -> dict:
    """Set ``model``'s thresholds (and, with ``seed_level``, its confident-seed level)
    from the image-level labels of validation ``samples``; returns the figures. Without
    ``seed_level`` the config's level stays (the shipped 0.98 was chosen with voxel labels
    of validation scans, which a user's own data seldom has)."""
    probabilities = validation_probabilities(model, samples)
    model.thresholds, report = calibrate_thresholds(model, samples, probabilities)
    if seed_level:
        level, seeds = calibrate_seed_probability(model, samples, probabilities[1][:, 0])
        model.config = replace(model.config,
                               grow=replace(model.config.grow, seed_probability=level))
        report.update(seeds)
    return report


def fit_ich(scans: Sequence[WeakScan], validation: Sequence[WeakScan] = (),
            config: ICHConfig = ICHConfig(), train_config: TrainConfig = TrainConfig(),
            combination: str = DEFAULT_COMBINATION, progress: Progress | None = None,
            checkpoint_dir: str | Path | None = None, cache_dir: str | Path | None = None,
            data_note: dict | None = None, classifier=None, seed_level: bool = False
            ) -> tuple[ICHModel, dict]:
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
        calibration = calibrate(model, samples, seed_level)
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

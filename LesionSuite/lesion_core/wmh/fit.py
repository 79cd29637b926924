"""From a ratings table (or a reader's ratings in the feedback store) to a trained model.

:func:`fit_dualtasker` = read the images the rows name (nothing else), train from the
ratings (:func:`lesion_core.wmh.train.train`), calibrate the segmentation thresholds on
the same subjects' *ratings* (:mod:`lesion_core.wmh.calibrate`), and return the model with
its card: what it was trained on (the training settings and the run's steps, wall time and
precision go to the card's ``training`` entry, never into the architecture). Fine-tuning
starts from a loaded model (``init``) and keeps its configuration and name. The model
saves itself (``model.save(folder)``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from ..progress import Progress, ensure_progress
from ..tasks import ModelCard
from .calibrate import calibrate_thresholds, calibration_cases
from .config import DualTaskerConfig, TrainConfig
from .data import Masker, RatingRow, RatingsDataset, registration_masker
from .model import DEFAULT_MODELS, FLAIR_TASK, WMHModel
from .train import train


def fit_dualtasker(rows: Sequence[RatingRow], config: DualTaskerConfig = DualTaskerConfig(),
                   train_config: TrainConfig = TrainConfig(), masker: Masker | None = None,
                   init: WMHModel | None = None, progress: Progress | None = None,
                   data_note: str = "", checkpoint_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None) -> tuple[WMHModel, dict]:
    """Train a DualTasker from ``rows``: ``(unsaved model with its card, training report)``.

    Args:
        rows: ratings-table rows (subject, image, total and/or per-region ratings).
        config: model configuration (ignored when ``init`` is given: its own is kept).
        masker: brain mask and region atlas per image (default: registration to MNI).
        init: a model to fine-tune (e.g. the shipped one, from a reader's ratings).
        data_note: free text stored in the model card (where the rows came from).
        checkpoint_dir: resumable training checkpoints (the same call resumes).
        cache_dir: on-disk cache of the preprocessed subjects (see
            :class:`~lesion_core.wmh.data.RatingsDataset`).
    """
    progress = ensure_progress(progress)
    if not rows:
        raise ValueError("no rated subjects to train from")
    if init is not None:
        config = init.config
    dataset = RatingsDataset(rows, masker or registration_masker("FLAIR"), config,
                             cache_dir=cache_dir)
    # train() reads (and reports) the subjects; the dataset keeps them for calibration.
    net, result = train(dataset, config, train_config, progress.sub(0.0, 0.9),
                        net=None if init is None else init.net, checkpoint_dir=checkpoint_dir)
    history = result.history
    samples = [dataset[i] for i in range(len(dataset))]
    progress.update(0.9, "calibrating the thresholds on the ratings")
    thresholds, table = calibrate_thresholds(calibration_cases(net, samples),
                                             config.voxel_ml)
    config = dataclasses.replace(config, thresholds=thresholds)
    last = max(len(history["rating_loss"]) // 10, 1)
    training = {
        "subjects": len(samples), "data": data_note,
        "per_region_ratings": int(sum(np.isfinite(s.region_ratings.numpy()).all()
                                      for s in samples)),
        "supervision": "ARWMC ratings only (no voxel labels)",
        "train_config": dataclasses.asdict(train_config),
        "fine_tuned_from": None if init is None else f"{init.model_id} {init.version}",
        "rating_loss_first": float(np.mean(history["rating_loss"][:last])),
        "rating_loss_last": float(np.mean(history["rating_loss"][-last:])),
        "calibration_score": max(row["score"] for row in table), **result.summary()}
    name = DEFAULT_MODELS[FLAIR_TASK] if init is None else init.model_id
    progress.update(1.0, "trained")
    return WMHModel(None, net, config, ModelCard(name, training=training)), training

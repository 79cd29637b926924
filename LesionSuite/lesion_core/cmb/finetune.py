"""Fine-tuning a CMB model from a reader's decisions ("Retrain from my decisions").

Every accept, reject and added point in the feedback store becomes a labelled stage 2
example (:func:`.reader_decisions.training_points`: accept/add = microbleed, reject =
mimic). The student is fine-tuned on them with the distillation loss, its teacher's soft
targets still guiding it, so a few dozen decisions correct its mistakes without it
forgetting everything else. With ``stage1=True`` the candidate U-Net is fine-tuned too, on
3 mm balls at the accepted/added points (rejected points: background), so that a missed
bleed a reader added is proposed next time. The thresholds are kept.

Both go through :func:`lesion_core.training.run_training`, without acquisition
randomization (flips only): the reader's images are the scanner the model is being fitted
to, so there is no other acquisition to prepare it for. With a checkpoint folder each
network keeps a subfolder (``student``, ``stage1``) and a rerun resumes.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import FeedbackStoreError
from ..io import read_volume
from ..progress import Progress, ensure_progress
from ..training import OptimConfig
from ..training.augment import AcquisitionAugment
from .candidates import normalised_input
from .discriminator import Stage2TrainConfig, distil_student
from .model import CMBModel
from .patches import extract_patch
from .stage1 import Stage1TrainConfig, TrainingVolume, train_stage1

#: Radius (mm) of the ball a stage 1 fine-tune paints at an accepted or added point.
POINT_RADIUS_MM = 1.5
#: Student fine-tune: short and gentle, a few dozen decisions (the batch is capped at
#: their count).
STUDENT_FINETUNE = OptimConfig(steps=60, lr=5e-4, batch_size=16)
#: Candidate U-Net fine-tune (``stage1=True``).
STAGE1_FINETUNE = OptimConfig(steps=40, lr=2e-4, batch_size=2)


def _balls(shape, affine: np.ndarray, centres_ras: list) -> np.ndarray:
    """Bool mask of balls of :data:`POINT_RADIUS_MM` at ``centres_ras`` on a grid."""
    mask = np.zeros(shape, bool)
    inverse, spacing = np.linalg.inv(affine), np.linalg.norm(affine[:3, :3], axis=0)
    reach = np.ceil(POINT_RADIUS_MM / spacing).astype(int) + 1
    for centre in np.asarray(centres_ras, float).reshape(-1, 3):
        ijk = inverse[:3, :3] @ centre + inverse[:3, 3]
        low = np.maximum(np.floor(ijk).astype(int) - reach, 0)
        high = np.minimum(np.ceil(ijk).astype(int) + reach + 1, shape)
        if np.any(high <= low):
            continue
        axes = np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high)], indexing="ij")
        distance = np.sqrt(sum(((a - c) * s) ** 2 for a, c, s in zip(axes, ijk, spacing)))
        mask[tuple(slice(a, b) for a, b in zip(low, high))] |= distance <= POINT_RADIUS_MM
    return mask


def finetune_cmb(model: CMBModel, store: str | Path, stage1: bool = False,
                 student_optim: OptimConfig = STUDENT_FINETUNE,
                 stage1_optim: OptimConfig = STAGE1_FINETUNE, progress: Progress | None = None,
                 checkpoint: str | Path | None = None) -> tuple[CMBModel, dict]:
    """Fine-tune ``model`` on the decisions in ``store``.

    ``student_optim`` / ``stage1_optim``: how the student / the U-Net (``stage1=True``)
    are fine-tuned; ``checkpoint``: folder of their resumable checkpoints.
    Returns ``(model, report)``: the unsaved model (same name and config, the next
    version) and the fine-tune's report. Raises :class:`FeedbackStoreError` when the store
    holds no usable decision (nothing would change).
    """
    from .reader_decisions import training_points

    progress = ensure_progress(progress)
    points = training_points(store)
    if not points:
        raise FeedbackStoreError("the feedback store holds no CMB decisions",
                                 "accept, reject or add microbleeds first", source=store)
    config = model.config
    by_image: dict[str, list] = {}
    for point in points:
        by_image.setdefault(str(point.image_path), []).append(point)
    patches, labels, volumes = [], [], []
    for index, (path, chosen) in enumerate(by_image.items()):
        progress.update(0.3 * index / len(by_image), f"reading case {index + 1}/{len(by_image)}")
        pre, inside = normalised_input(read_volume(path), config.stage1.candidates)
        for point in chosen:
            patches.append(extract_patch(pre, point.centre_ras, config.patch_size))
            labels.append(int(point.label))
        if stage1:
            positives = [p.centre_ras for p in chosen if p.label == 1]
            negatives = [p.centre_ras for p in chosen if p.label == 0]
            volumes.append(TrainingVolume(pre.array, _balls(pre.shape, pre.affine, positives),
                                          _balls(pre.shape, pre.affine, negatives), inside,
                                          pre.affine))
    x = torch.from_numpy(np.stack(patches))[:, None].float()
    y = torch.tensor(labels, dtype=torch.long)
    none = AcquisitionAugment.none()
    train = Stage2TrainConfig(optim=replace(student_optim, batch_size=max(
        2, min(student_optim.batch_size, len(y)))), augment=none)
    teacher = model.teacher if model.teacher is not None else model.student
    folder = Path(checkpoint) if checkpoint is not None else None
    progress.update(0.4, f"fine-tuning the student on {len(y)} decisions")
    student, student_run = distil_student(
        x, y, teacher, train, init=copy.deepcopy(model.student),
        checkpoint=folder / "student" if folder else None, progress=progress.sub(0.4, 0.7),
        channels=model.config.student_channels)
    new_stage1, runs = model.stage1, {"student": student_run.summary()}
    if stage1:
        progress.update(0.7, "fine-tuning the candidate U-Net")
        new_stage1, stage1_run = train_stage1(
            volumes, config.stage1, Stage1TrainConfig(augment=none, optim=stage1_optim),
            init=copy.deepcopy(model.stage1), checkpoint=folder / "stage1" if folder else None,
            progress=progress.sub(0.7, 0.95))
        runs["stage1"] = stage1_run.summary()
    report = {"decisions": len(y), "accepted_or_added": int(y.sum()), "cases": len(by_image),
              "stage1_finetuned": stage1, "runs": runs,
              "finetuned_from": f"{model.model_id} {model.version}", "store": str(store)}
    tuned = CMBModel(None, new_stage1, student, model.teacher, config,
                     model.current_card().fine_tuned(report))
    progress.update(1.0, "fine-tuned")
    return tuned, report


def finetune_from_feedback(model: CMBModel, store: str | Path, out: str | Path,
                           stage1: bool = False,
                           student_optim: OptimConfig = STUDENT_FINETUNE,
                           stage1_optim: OptimConfig = STAGE1_FINETUNE,
                           overwrite: bool = False, progress: Progress | None = None,
                           checkpoint: str | Path | None = None):
    """:func:`finetune_cmb`, the result saved in ``out``: ``(metadata, report)`` (for the
    benchmark's reader simulation)."""
    tuned, report = finetune_cmb(model, store, stage1, student_optim, stage1_optim, progress,
                                 checkpoint)
    return tuned.save(out, overwrite=overwrite), report

"""Training the three-stage CMB detector on a labelled cohort.

:func:`fit_cmb` does it all, in order:

1. put every training image and its truth on the 1 mm stage 1 grid
   (:func:`.stage1.training_volume`; cached as ``.npz`` when a cache folder is given);
2. train the stage 1 U-Net on patches;
3. run it on the training images; every candidate (at the lowest threshold) becomes a
   stage 2 example labelled by :func:`.patches.label_candidates`, plus one patch at each
   true microbleed (so bleeds stage 1 already misses are still seen) and some on mimics;
4. train the teacher on those patches, then distil the student from it;
5. calibrate the thresholds on held-out validation images (:mod:`.calibrate`);
6. save one bundle.

A cohort table is the ``cmb_labels.csv`` that ``lesion-suite synth cmb`` writes (columns
``subject``, the sequence's image column ``swi`` or ``t2star`` and its
``<sequence>_cmb_truth`` / ``<sequence>_mimics_truth`` label maps).
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidImageError
from ..io import read_volume
from ..metrics.detection import label_objects, object_centres
from ..progress import Progress, ensure_progress
from ..volume import Volume
from .candidates import CandidateConfig, extract_candidates
from .discriminator import Stage2TrainConfig, distil_student, train_teacher
from .model import CMBConfig, SEQUENCES
from .patches import extract_patch, label_candidates
from .stage1 import Stage1Config, TrainingVolume, stage1_probability, train_stage1, training_volume

#: Stage 1 threshold used to collect stage 2 examples: every plausible candidate.
EXAMPLE_THRESHOLD = 0.1


@dataclass(frozen=True)
class CohortRow:
    """One labelled subject: image and truth paths (truth is for training only)."""

    subject: str
    sequence: str
    image: Path
    cmb: Path
    mimics: Path | None


@dataclass(frozen=True)
class CMBTrainConfig:
    """What :func:`fit_cmb` trains and how.

    ``teacher`` / ``student``: stage 2 optimisation; ``mimic_patches``: extra negatives
    per image drawn on mimic voxels; ``sensitivity_target``: share of the validation
    bleeds stage 1's threshold must keep (relative to its lowest threshold);
    ``max_stage2_loss``: share of stage 1's true detections stage 2 may drop.
    """

    stage1: Stage1Config = field(default_factory=Stage1Config)
    teacher: Stage2TrainConfig = field(default_factory=lambda: Stage2TrainConfig(
        steps=500, lr=1e-3, batch_size=32))
    student: Stage2TrainConfig = field(default_factory=lambda: Stage2TrainConfig(
        steps=800, lr=2e-3, batch_size=32))
    mimic_patches: int = 6
    sensitivity_target: float = 0.95
    max_stage2_loss: float = 0.05
    seed: int = 0


def read_cohort(table: str | Path, sequence: str = "SWI") -> list[CohortRow]:
    """Rows of a cohort table that have a ``sequence`` image and its truth."""
    table = Path(table)
    if sequence not in SEQUENCES:
        raise ValueError(f"sequence must be one of {SEQUENCES}, got {sequence!r}")
    key = sequence.lower()
    try:
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise InvalidImageError(f"the cohort table cannot be read ({exc})",
                                "give the cmb_labels.csv that 'lesion-suite synth cmb' wrote",
                                source=table) from exc
    out = [CohortRow(r.get("subject", ""), sequence, Path(r[key]), Path(r[f"{key}_cmb_truth"]),
                     Path(r[f"{key}_mimics_truth"]) if r.get(f"{key}_mimics_truth") else None)
           for r in rows if r.get(key) and r.get(f"{key}_cmb_truth")]
    if not out:
        raise InvalidImageError(f"the cohort table has no {sequence} images with CMB truth",
                                f"give a table with columns '{key}' and '{key}_cmb_truth'",
                                source=table)
    return out


def read_cohorts(tables, sequences=SEQUENCES) -> list[CohortRow]:
    """Rows of every table for each of ``sequences`` it holds (a synthetic cohort holds
    SWI or T2*-GRE subjects, or both)."""
    rows = []
    for table in tables:
        found = []
        for sequence in sequences:
            try:
                found += read_cohort(table, sequence)
            except InvalidImageError:
                continue
        if not found:
            raise InvalidImageError(f"the cohort table has no {' or '.join(sequences)} images "
                                    "with CMB truth", "give a cmb_labels.csv that "
                                    "'lesion-suite synth cmb' wrote", source=table)
        rows += found
    return rows


def _prepare(args: tuple) -> TrainingVolume:
    row, config, cache = args
    path = None if cache is None else Path(cache) / f"{row.subject}_{row.sequence}.npz"
    if path is not None and path.is_file():
        with np.load(path) as data:
            return TrainingVolume(**{k: data[k] for k in data.files})
    torch.set_num_threads(1)
    volume = training_volume(read_volume(row.image), read_volume(row.cmb),
                             read_volume(row.mimics) if row.mimics else None, config)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **volume.__dict__)
    return volume


def prepare_volumes(rows: list[CohortRow], config: CandidateConfig = CandidateConfig(),
                    cache: str | Path | None = None, workers: int | None = None
                    ) -> list[TrainingVolume]:
    """:func:`.stage1.training_volume` of every row, in ``workers`` processes."""
    workers = workers or min(2, os.cpu_count() or 1)
    jobs = [(row, config, cache) for row in rows]
    if workers <= 1:
        return [_prepare(job) for job in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_prepare, jobs))


def _volume(tv: TrainingVolume) -> Volume:
    return Volume(tv.image, tv.affine)


def stage2_examples(stage1: torch.nn.Module, volumes: list[TrainingVolume],
                    config: CMBTrainConfig, progress: Progress | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled 24^3 patches ``[N, 1, 24, 24, 24]`` and labels ``[N]`` for stage 2."""
    progress = ensure_progress(progress)
    rng = np.random.default_rng(config.seed)
    low = replace(config.stage1.candidates, threshold=EXAMPLE_THRESHOLD)
    patches, labels = [], []
    for index, tv in enumerate(volumes):
        progress.update(index / len(volumes), f"stage 2 examples {index + 1}/{len(volumes)}")
        image = _volume(tv)
        probability = stage1_probability(stage1, image, tv.brain, config.stage1)
        _, candidates = extract_candidates(probability, low)
        truth, mimics = image.with_array(tv.cmb.astype(np.uint8)), image.with_array(tv.mimics.astype(np.uint8))
        centres = [c.centre_ras for c in candidates]
        found = label_candidates(candidates, truth, mimics)
        _, true_ijk = object_centres(label_objects(tv.cmb))
        mimic_ijk = np.argwhere(tv.mimics)
        extra = mimic_ijk[rng.choice(len(mimic_ijk), min(config.mimic_patches, len(mimic_ijk)),
                                     replace=False)] if len(mimic_ijk) else np.zeros((0, 3))
        centres += [tuple(p) for p in image.voxel_to_ras(np.asarray(true_ijk).reshape(-1, 3))]
        centres += [tuple(p) for p in image.voxel_to_ras(np.asarray(extra).reshape(-1, 3))]
        found += [1] * len(true_ijk) + [0] * len(extra)
        patches += [extract_patch(image, c) for c in centres]
        labels += found
    return (torch.from_numpy(np.stack(patches))[:, None].float(),
            torch.tensor(labels, dtype=torch.long))


def fit_cmb(train: list[CohortRow], validation: list[CohortRow],
            config: CMBTrainConfig = CMBTrainConfig(), cache: str | Path | None = None,
            progress: Progress | None = None, init_stage1: torch.nn.Module | None = None
            ) -> tuple[dict, CMBConfig, dict]:
    """Train all three stages and calibrate them. ``init_stage1``: a U-Net to go on
    training (a warm restart of its learning-rate schedule) instead of a fresh one.

    Returns ``(networks, model_config, report)``: networks ``{"stage1", "teacher",
    "student"}`` (eval mode), the :class:`.model.CMBConfig` to save with them, and a report
    of the training (example counts, final losses, calibration figures).
    """
    from .calibrate import calibrate

    progress = ensure_progress(progress)
    sequences = tuple(sorted({r.sequence for r in train}))
    progress.update(0.0, f"preparing {len(train)} training images")
    volumes = prepare_volumes(train, config.stage1.candidates, cache)
    stage1, history1 = train_stage1(volumes, config.stage1, init=init_stage1,
                                    progress=progress.sub(0.1, 0.55))
    patches, labels = stage2_examples(stage1, volumes, config, progress.sub(0.55, 0.7))
    del volumes
    progress.update(0.7, f"teacher on {len(labels)} patches ({int(labels.sum())} bleeds)")
    teacher, history_t = train_teacher(patches, labels, config.teacher)
    progress.update(0.8, "distilling the student")
    student, history_s = distil_student(patches, labels, teacher, config.student)
    model_config = CMBConfig(stage1=config.stage1, sequences=sequences)
    progress.update(0.9, f"calibrating on {len(validation)} validation images")
    model_config, calibration = calibrate(stage1, student, validation, model_config, config)
    progress.update(1.0, "trained")
    report = {"training_images": len(train), "validation_images": len(validation),
              "stage2_examples": int(len(labels)), "stage2_positives": int(labels.sum()),
              "final_loss": {"stage1": float(np.mean(history1[-50:])),
                             "teacher": float(np.mean(history_t[-50:])),
                             "student": float(np.mean(history_s[-50:]))},
              "calibration": calibration}
    return {"stage1": stage1, "teacher": teacher, "student": student}, model_config, report

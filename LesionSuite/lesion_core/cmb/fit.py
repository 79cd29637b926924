"""Training the three-stage CMB detector on a labelled cohort.

:func:`fit_cmb` does it all, in order:

1. put every training image and its truth on the 1 mm stage 1 grid
   (:func:`.stage1.training_volume`, in parallel processes; with a cache folder, kept as
   ``.npz`` keyed by the files' identity and the candidate settings, so a rerun reads
   arrays instead of NIfTI);
2. train the stage 1 U-Net on patches;
3. run it on the training images; every candidate (at the lowest threshold) becomes a
   stage 2 example labelled by :func:`.patches.label_candidates`, plus one patch at each
   true microbleed (so bleeds stage 1 already misses are still seen) and some on mimics
   (cached too, keyed by the U-Net's weights);
4. train the teacher on those patches, then distil the student from it;
5. calibrate the thresholds on held-out validation images (:mod:`.calibrate`);
6. return the model with its card (it saves itself: ``model.save(folder)``).

Every network trains through :func:`lesion_core.training.run_training`; with a checkpoint
folder each keeps its own subfolder (``stage1``, ``teacher``, ``student``), so the same
call after a kill resumes where it stopped and a finished network is not trained again.

A cohort table is the ``cmb_labels.csv`` that ``lesion-suite synth cmb`` writes (columns
``subject``, the sequence's image column ``swi`` or ``t2star`` and its
``<sequence>_cmb_truth`` / ``<sequence>_mimics_truth`` label maps).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..device import select_device
from ..errors import CohortError
from ..io import read_volume
from ..jsonable import json_safe
from ..metrics.detection import label_objects, object_centres
from ..progress import Progress, ensure_progress
from ..tables import read_csv_records
from ..tasks import ModelCard
from ..training import OptimConfig
from ..training.cache import cached_arrays, parallel_map
from ..volume import Volume
from .candidates import EXAMPLE_THRESHOLD, CandidateConfig, extract_candidates
from .discriminator import Stage2TrainConfig, distil_student, train_teacher, weights_digest
from .model import DEFAULT_MODEL, DESCRIPTION, SEQUENCES, CMBConfig, CMBModel
from .patches import extract_patch, label_candidates
from .stage1 import (Stage1Config, Stage1TrainConfig, TrainingVolume, stage1_probability,
                     train_stage1, training_volume)


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

    ``stage1``: the U-Net's architecture (saved in the bundle); ``stage1_train``: its
    sampling, loss, augmentation and optimisation; ``stage1_hard``: the hard-example
    fine-tune after it (``hard_examples``; skipped at 0 steps); ``teacher`` / ``student``: stage 2
    training; ``mimic_patches``: extra negatives per image drawn on mimic voxels (``seed``
    chooses them); ``sensitivity_target``: share of the validation bleeds stage 1's
    threshold must keep (relative to its lowest threshold); ``max_stage2_loss``: share of
    stage 1's true detections stage 2 may drop, unless ``max_fp_per_scan`` (the false
    positives per validation scan of all stages) sets the stage 2 threshold
    (:func:`.calibrate.choose_thresholds`); ``student_channels``: the student's stage
    widths (architecture, saved in the bundle). Stage 2 examples and the calibration run
    the U-Net at ``stage1_train.optim``'s device and precision.
    """

    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage1_train: Stage1TrainConfig = field(default_factory=Stage1TrainConfig)
    # Hard examples after the main run: a short fine-tune on the bleeds the U-Net misses
    # and the places it fools (:mod:`.hard_examples`); 0 steps skips it.
    stage1_hard: Stage1TrainConfig = field(default_factory=lambda: Stage1TrainConfig(
        hard_examples=True, optim=OptimConfig(steps=0, lr=1e-3, schedule="cosine",
                                              batch_size=4)))
    teacher: Stage2TrainConfig = field(default_factory=lambda: Stage2TrainConfig(
        optim=OptimConfig(steps=500, lr=1e-3, batch_size=32)))
    student: Stage2TrainConfig = field(default_factory=lambda: Stage2TrainConfig(
        optim=OptimConfig(steps=800, lr=2e-3, batch_size=32)))
    # The 8-16 student of older bundles did not follow a well-trained teacher; 16-32-64
    # holds it within 0.02 sensitivity (docs/benchmarks.md, issue 14).
    student_channels: tuple[int, ...] = (16, 32, 64)
    mimic_patches: int = 6
    sensitivity_target: float = 0.95
    max_stage2_loss: float = 0.05
    max_fp_per_scan: float | None = 1.0
    seed: int = 0


#: What to do about a cohort table that cannot be used.
_TABLE_FIX = "give the cmb_labels.csv that 'lesion-suite synth cmb' wrote"


def read_cohort(table: str | Path, sequence: str = "SWI") -> list[CohortRow]:
    """Rows of a cohort table that have a ``sequence`` image and its truth; a table that
    cannot be read (missing, binary, empty) or has none is one :class:`CohortError`."""
    table = Path(table)
    if sequence not in SEQUENCES:
        raise ValueError(f"sequence must be one of {SEQUENCES}, got {sequence!r}")
    return _rows_of(read_csv_records(table, CohortError, _TABLE_FIX), table, sequence)


def _rows_of(rows: list[dict], table: Path, sequence: str) -> list[CohortRow]:
    """The rows of a table's records that have a ``sequence`` image and its truth."""
    key = sequence.lower()
    out = [CohortRow(r.get("subject", ""), sequence, Path(r[key]), Path(r[f"{key}_cmb_truth"]),
                     Path(r[f"{key}_mimics_truth"]) if r.get(f"{key}_mimics_truth") else None)
           for r in rows if r.get(key) and r.get(f"{key}_cmb_truth")]
    if not out:
        raise CohortError(f"the cohort table has no {sequence} images with CMB truth",
                          f"give a table with columns '{key}' and '{key}_cmb_truth'",
                          source=table)
    return out


def read_cohorts(tables, sequences=SEQUENCES) -> list[CohortRow]:
    """Rows of every table for each of ``sequences`` it holds (a synthetic cohort holds
    SWI or T2*-GRE subjects, or both)."""
    rows = []
    for table in tables:
        # Read once: a table that cannot be read is its own error, not "no images".
        records = read_csv_records(table, CohortError, _TABLE_FIX)
        found = []
        for sequence in sequences:
            try:
                found += _rows_of(records, Path(table), sequence)
            except CohortError:
                continue
        if not found:
            raise CohortError(f"the cohort table has no {' or '.join(sequences)} images "
                              "with CMB truth", _TABLE_FIX, source=table)
        rows += found
    return rows


def _prepare(job: tuple) -> TrainingVolume:
    """:func:`.stage1.training_volume` of one row, from the cache folder when it holds it
    (module level: :func:`parallel_map` runs it in other processes)."""
    row, config, cache = job

    def compute() -> dict[str, np.ndarray]:
        volume = training_volume(read_volume(row.image), read_volume(row.cmb),
                                 read_volume(row.mimics) if row.mimics else None, config)
        return dataclasses.asdict(volume)

    # Paths stand for the files' identity (name, size, modification time): an edited
    # image or truth, or other candidate settings, is a new entry.
    key = ("cmb-training-volume", row.image, row.cmb, row.mimics, config)
    return TrainingVolume(**cached_arrays(cache, key, compute))


def prepare_volumes(rows: list[CohortRow], config: CandidateConfig = CandidateConfig(),
                    cache: str | Path | None = None, workers: int | None = None
                    ) -> list[TrainingVolume]:
    """:func:`.stage1.training_volume` of every row, in ``workers`` processes (default: the
    CPU count, at most 4), cached in ``cache`` when given."""
    return parallel_map(_prepare, [(row, config, cache) for row in rows], workers)


def _volume(tv: TrainingVolume) -> Volume:
    return Volume(tv.image, tv.affine)


def stage2_examples(stage1: torch.nn.Module, volumes: list[TrainingVolume],
                    config: CMBTrainConfig, progress: Progress | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled 24^3 patches ``[N, 1, 24, 24, 24]`` and labels ``[N]`` for stage 2
    (the U-Net runs on its own device, at ``config.stage1_train.optim.precision``)."""
    progress = ensure_progress(progress)
    precision = config.stage1_train.optim.precision
    rng = np.random.default_rng(config.seed)
    low = replace(config.stage1.candidates, threshold=EXAMPLE_THRESHOLD)
    patches, labels = [], []
    for index, tv in enumerate(volumes):
        progress.update(index / len(volumes), f"stage 2 examples {index + 1}/{len(volumes)}")
        image = _volume(tv)
        probability = stage1_probability(stage1, image, tv.brain, config.stage1, precision)
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


def _cached_examples(stage1: torch.nn.Module, rows: list[CohortRow],
                     volumes: list[TrainingVolume], config: CMBTrainConfig,
                     cache: str | Path | None, progress: Progress
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stage2_examples`, kept in ``cache`` under the U-Net's weights, the rows'
    files and the settings that shape them (a resumed run skips the U-Net inference)."""
    key = ("cmb-stage2-examples", weights_digest(stage1),
           [(r.image, r.cmb, r.mimics) for r in rows], config.stage1, config.mimic_patches,
           config.seed, EXAMPLE_THRESHOLD, config.stage1_train.optim.precision)

    def compute() -> dict[str, np.ndarray]:
        patches, labels = stage2_examples(stage1, volumes, config, progress)
        return {"patches": patches.numpy(), "labels": labels.numpy()}

    arrays = cached_arrays(cache, key, compute)
    return torch.from_numpy(arrays["patches"]), torch.from_numpy(arrays["labels"])


def train_stage2(patches: torch.Tensor, labels: torch.Tensor, config: CMBTrainConfig,
                 checkpoint: str | Path | None = None, progress: Progress | None = None,
                 init: CMBModel | None = None
                 ) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """The teacher (``config.teacher``) on the stage 2 examples, then the student
    (``config.student``, widths ``config.student_channels``) distilled from it; with
    ``init``, copies of that model's teacher and student are fine-tuned instead of new
    networks. ``checkpoint``: folder of their ``teacher`` / ``student`` checkpoints.
    Returns ``(teacher, student, {"teacher": summary, "student": summary})``."""
    progress = ensure_progress(progress)
    folder = Path(checkpoint) if checkpoint is not None else None
    start = (lambda net: copy.deepcopy(net)) if init is not None else (lambda net: None)
    teacher, run_t = train_teacher(patches, labels, config.teacher,
                                   init=start(init and init.teacher),
                                   checkpoint=folder / "teacher" if folder else None,
                                   progress=progress.sub(0.0, 0.5))
    student, run_s = distil_student(patches, labels, teacher, config.student,
                                    init=start(init and init.student),
                                    checkpoint=folder / "student" if folder else None,
                                    progress=progress.sub(0.5, 1.0),
                                    channels=config.student_channels)
    return teacher, student, {"teacher": run_t.summary(), "student": run_s.summary()}


def fit_cmb(train: list[CohortRow], validation: list[CohortRow],
            config: CMBTrainConfig = CMBTrainConfig(), cache: str | Path | None = None,
            progress: Progress | None = None, init_stage1: torch.nn.Module | None = None,
            checkpoint: str | Path | None = None, workers: int | None = None
            ) -> tuple[CMBModel, dict]:
    """Train all three stages and calibrate them. ``init_stage1``: a U-Net to go on
    training (a warm restart of its learning-rate schedule) instead of a fresh one.

    Args:
        cache: folder of prepared arrays (training volumes, stage 2 examples); default
            ``checkpoint/prepared`` when a checkpoint folder is given, else none.
        checkpoint: folder of the networks' resumable checkpoints (one subfolder each).
        workers: processes preparing the training volumes.

    Returns ``(model, report)``: the unsaved :class:`.model.CMBModel` (networks on the
    CPU, the calibrated :class:`.model.CMBConfig`, a card with the report) and the report
    of the training (example counts, each run's summary and settings, calibration figures).
    """
    from .calibrate import calibrate

    progress = ensure_progress(progress)
    folder = Path(checkpoint) if checkpoint is not None else None
    sub = (lambda name: folder / name) if folder is not None else (lambda name: None)
    if cache is None and folder is not None:
        cache = folder / "prepared"
    sequences = tuple(sorted({r.sequence for r in train}))
    progress.update(0.0, f"preparing {len(train)} training images")
    volumes = prepare_volumes(train, config.stage1.candidates, cache, workers)
    stage1, run1 = train_stage1(volumes, config.stage1, config.stage1_train, init=init_stage1,
                                checkpoint=sub("stage1"), progress=progress.sub(0.1, 0.5))
    runs = {"stage1": run1.summary()}
    if config.stage1_hard.optim.steps > 0:
        stage1, run_h = train_stage1(volumes, config.stage1, config.stage1_hard, init=stage1,
                                     checkpoint=sub("stage1_hard"),
                                     progress=progress.sub(0.5, 0.55))
        runs["stage1_hard"] = run_h.summary()
    device = select_device(config.stage1_train.optim.device)
    patches, labels = _cached_examples(stage1.to(device), train, volumes, config, cache,
                                       progress.sub(0.55, 0.7))
    del volumes
    progress.update(0.7, f"teacher on {len(labels)} patches ({int(labels.sum())} bleeds)")
    teacher, student, runs2 = train_stage2(patches, labels, config, folder,
                                           progress.sub(0.7, 0.9))
    model_config = CMBConfig(stage1=config.stage1, sequences=sequences,
                             student_channels=tuple(config.student_channels))
    progress.update(0.9, f"calibrating on {len(validation)} validation images")
    model_config, calibration = calibrate(stage1, student.to(device), validation, model_config,
                                          config)
    progress.update(1.0, "trained")
    report = {"training_images": len(train), "validation_images": len(validation),
              "stage2_examples": int(len(labels)), "stage2_positives": int(labels.sum()),
              "runs": {**runs, **runs2},
              "settings": json_safe({"stage1": dataclasses.asdict(config.stage1_train),
                                     "stage1_hard": dataclasses.asdict(config.stage1_hard),
                                     "teacher": dataclasses.asdict(config.teacher),
                                     "student": dataclasses.asdict(config.student)}),
              "calibration": calibration}
    card = ModelCard(DEFAULT_MODEL, description=DESCRIPTION, training=report)
    return CMBModel(None, stage1.cpu(), student.cpu(), teacher, model_config, card), report

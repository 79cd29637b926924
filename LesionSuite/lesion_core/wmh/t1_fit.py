"""deep-T1-WMH: a T1 U-Net taught by labels drawn on thick-slice FLAIR.

Training table (CSV), one row per subject: ``subject``, ``image`` (the 3D T1) and
``thick_label`` (the WMH mask a rater drew on a thick-slice 2D FLAIR, on that FLAIR's own
grid, in the same RAS world as the T1: co-registered, as the scanner gives them).

Each step: the T1 on the working grid -> U-Net -> WMH probability ``p``; ``p`` is seen
through the thick acquisition (averaged along the slice normal over the slice profile,
:func:`lesion_core.wmh.thick_slice.thick_slice_average`) and compared with the thick
label (soft Dice + BCE). The label is never upsampled to the T1 grid. For speed the label
is first brought to a *training grid* with the label's own axes and slice spacing and the
working in-plane spacing (in-plane area average, so a rater's 1 mm outline becomes a
fractional label: the loss takes fractions).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import io as lesion_io
from ..errors import CohortError
from ..progress import Progress, ensure_progress
from ..tables import read_csv_records
from ..tasks import ModelCard
from ..training import EpochOrder, SampleContext, StepContext, TrainResult, run_training
from ..training.augment import Augmenter
from ..volume import Volume
from .config import DualTaskerConfig, SegmentThresholds, TrainConfig, task_fingerprint
from .data import Masker, cached_subject, next_batch, registration_masker
from .model import DEFAULT_MODELS, T1_TASK, WMHModel, build_t1_network
from .preprocess import Preprocessed, antialiased, preprocess, randomize_acquisition
from .thick_slice import (SliceProfile, thick_slice_average, thick_slice_grid,
                          thick_slice_loss)

COLUMNS = ("subject", "image", "thick_label")


@dataclass(frozen=True)
class ThickLabelRow:
    subject: str
    image: str
    thick_label: str


def read_thick_label_table(path: str | Path) -> list[ThickLabelRow]:
    """Read a T1-mode training table (see the module notes); relative paths are relative
    to the table's folder."""
    path = Path(path)
    rows = []
    for record in read_csv_records(path, CohortError, "give a CSV file with the columns "
                                   f"{', '.join(COLUMNS)} and one row per subject"):
        missing = [c for c in COLUMNS if not str(record.get(c) or "").strip()]
        if missing:
            raise CohortError(f"a row lacks {', '.join(missing)}",
                                   f"give {', '.join(COLUMNS)} on every row", path)
        paths = [str(path.parent / record[c]) if not Path(record[c]).is_absolute()
                 else record[c] for c in COLUMNS[1:]]
        rows.append(ThickLabelRow(record["subject"].strip(), *paths))
    if not rows:
        raise CohortError("the table has no rows", "add one row per subject", path)
    return rows


def thick_table_from_synthetic_cohort(folder: str | Path) -> list[ThickLabelRow]:
    """Rows of a synthetic WMH cohort: its T1 and its thick-slice FLAIR rater label."""
    records = read_csv_records(Path(folder) / "wmh_labels.csv", CohortError,
                               "regenerate the cohort with `lesion-suite synth wmh --out DIR`")
    return [ThickLabelRow(r["subject"], r["t1"], r["flair_wmh_thick_label"]) for r in records]


def slice_axis(volume: Volume) -> int:
    """The axis with the largest spacing (across the thick slices)."""
    return int(np.argmax(volume.spacing))


def thick_label_from_mask(mask: Volume, thickness_mm: float = 5.0) -> Volume:
    """What a rater draws on a thick axial FLAIR: the fine ``mask`` averaged over each
    thick voxel's footprint (Gaussian slice profile, FWHM ``thickness_mm``, along the RAS
    S axis; in-plane spacing of ``mask``), kept where the average is >= 0.5 (``uint8``)."""
    fine = mask.to_ras()
    spacing = fine.spacing.copy()
    spacing[2] = thickness_mm
    extent = np.asarray(fine.shape[:3]) * fine.spacing
    shape = tuple(int(max(math.ceil(e / s), 1)) for e, s in zip(extent, spacing))
    affine = np.eye(4)
    affine[:3, :3] = fine.direction * spacing
    start = fine.voxel_to_ras(np.zeros(3)) - fine.direction @ (fine.spacing / 2) \
        + fine.direction @ (spacing / 2)
    affine[:3, 3] = start
    data = torch.from_numpy((np.asarray(fine.array) > 0).astype(np.float32))[None, None]
    fraction = thick_slice_average(data, fine.affine, affine, shape, 2,
                                   SliceProfile(thickness_mm))[0, 0].numpy()
    return Volume((fraction >= 0.5).astype(np.uint8), affine, mask.source)


@dataclass
class ThickSample:
    """One subject: the preprocessed T1 and its label on the training grid."""

    subject: str
    data: Preprocessed
    label: torch.Tensor        # [1, *shape] fractions
    affine: np.ndarray         # training grid voxel-to-RAS
    axis: int
    thickness_mm: float

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for the training cache (:meth:`from_arrays` inverts it)."""
        return {**self.data.to_arrays(), "label": self.label.numpy(),
                "label_affine": self.affine, "axis": np.asarray(self.axis),
                "thickness_mm": np.asarray(self.thickness_mm)}

    @classmethod
    def from_arrays(cls, subject: str, arrays: dict[str, np.ndarray]) -> "ThickSample":
        return cls(subject, Preprocessed.from_arrays(arrays),
                   torch.from_numpy(np.asarray(arrays["label"], np.float32)),
                   np.asarray(arrays["label_affine"], np.float64), int(arrays["axis"]),
                   float(arrays["thickness_mm"]))


def thick_sample(subject: str, t1: Volume, label: Volume, brain: Volume, atlas: Volume,
                 config: DualTaskerConfig) -> ThickSample:
    """Preprocess one subject and bring its thick label to the training grid (the sample
    holds no bias field: training does not need it)."""
    data = dataclasses.replace(preprocess(t1, brain, atlas, config), bias=None)
    axis = slice_axis(label)
    spacing = np.full(3, float(config.spacing_mm))
    spacing[axis] = label.spacing[axis]
    direction = label.affine[:3, :3] / label.spacing
    # The training grid covers the working grid's box, in the label's axes.
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    corners = (corners * (np.asarray(config.shape) - 1)) @ data.affine[:3, :3].T + data.affine[:3, 3]
    local = (corners - label.affine[:3, 3]) @ direction          # mm along label axes
    low, high = local.min(axis=0), local.max(axis=0)
    shape = tuple(int(n) for n in np.floor((high - low) / spacing) + 1)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = label.affine[:3, 3] + direction @ low
    in_plane = label.with_array((np.asarray(label.array) > 0).astype(np.float32))
    fraction = antialiased(in_plane, float(config.spacing_mm)).resample_to_grid(
        affine, shape, order=1, fill=0).array
    return ThickSample(subject, data, torch.from_numpy(np.clip(fraction, 0, 1))[None].float(),
                       affine, axis, float(label.spacing[axis]))


def read_thick_samples(rows: Sequence[ThickLabelRow], masker: Masker, config: DualTaskerConfig,
                       cache_dir: str | Path | None = None,
                       progress: Progress | None = None) -> list[ThickSample]:
    """:func:`thick_sample` of every row: the T1 and the thick label read, masked and
    resampled, or taken from ``cache_dir`` (see :data:`~lesion_core.wmh.data.Masker`)."""
    progress = ensure_progress(progress)
    samples = []
    for index, row in enumerate(rows):
        progress.update(index / len(rows), f"reading subject {index + 1}/{len(rows)}")

        def compute(row: ThickLabelRow = row) -> dict[str, np.ndarray]:
            t1 = lesion_io.read_volume(row.image)
            brain, atlas = masker(t1, row.subject)
            return thick_sample(row.subject, t1, lesion_io.read_volume(row.thick_label),
                                brain, atlas, config).to_arrays()

        arrays = cached_subject(cache_dir, "thick-label sample", [row.image, row.thick_label],
                                masker, config, compute)
        samples.append(ThickSample.from_arrays(row.subject, arrays))
    return samples


def _sampler(samples: Sequence[ThickSample], config: DualTaskerConfig,
             train_config: TrainConfig, order: EpochOrder):
    """``sample(ctx)``: the next subjects with a random acquisition each, and where the
    loss samples each prediction (:func:`~.thick_slice.thick_slice_grid`, computed here,
    ahead of the network). No spatial augmentation: the label lives on another grid,
    which would have to move too."""
    augmenter = Augmenter(train_config.acquisition, config.spacing_mm)
    shape = tuple(int(n) for n in config.shape)

    def sample(ctx: SampleContext) -> dict:
        picked = next_batch(order, samples, ctx)
        image = torch.stack([randomize_acquisition(augmenter, s.data.image, s.data.brain,
                                                   ctx.rng, config.normalisation_percentile)
                             for s in picked])
        return {"image": image, "labels": [s.label[None] for s in picked],
                "grids": [thick_slice_grid(shape, s.data.affine, s.affine,
                                           tuple(s.label.shape[1:]), s.axis,
                                           SliceProfile(s.thickness_mm)) for s in picked],
                "geometry": [(s.data.affine, s.affine, s.axis, s.thickness_mm)
                             for s in picked]}
    return sample


def _loss(net: torch.nn.Module, batch: dict, ctx: StepContext) -> dict:
    """Thick-slice loss averaged over the subjects, each against its own thick grid (one
    forward pass on the stacked images: batch norm needs more than one subject)."""
    probability = torch.sigmoid(net(batch["image"]).float())
    terms = [thick_slice_loss(probability[i:i + 1], label, working, thick, axis,
                              SliceProfile(thickness), grid=grid)
             for i, (label, grid, (working, thick, axis, thickness))
             in enumerate(zip(batch["labels"], batch["grids"], batch["geometry"]))]
    return {"loss": sum(terms) / len(terms)}


def train_t1(samples: Sequence[ThickSample], config: DualTaskerConfig,
             train_config: TrainConfig = TrainConfig(), progress: Progress | None = None,
             net: torch.nn.Module | None = None, checkpoint_dir: str | Path | None = None
             ) -> tuple[torch.nn.Module, TrainResult]:
    """Train (or continue ``net``) on the thick-slice loss with
    :func:`lesion_core.training.run_training`, ``batch_size`` subjects per step in a seeded
    epoch order, each with its own random acquisition (``train_config.acquisition``);
    ``checkpoint_dir``: resumable checkpoints."""
    order = EpochOrder()
    return run_training(net if net is not None else (lambda: build_t1_network(config)),
                        _sampler(samples, config, train_config, order), _loss,
                        train_config.optim, state=order, checkpoint_dir=checkpoint_dir,
                        progress=progress, label="T1 mode",
                        fingerprint=task_fingerprint(config, train_config,
                                                     [s.subject for s in samples],
                                                     net is not None))


#: Subjects (the first of the table) used to calibrate the threshold: enough to rank 8
#: thresholds, and each costs 8 slice-profile passes.
CALIBRATION_SUBJECTS = 48
#: Probability thresholds tried by :func:`calibrate_threshold`.
THRESHOLDS = (0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


@torch.no_grad()
def calibrate_threshold(net: torch.nn.Module, samples: Sequence[ThickSample],
                        thresholds: Sequence[float] = THRESHOLDS) -> tuple[float, dict]:
    """The probability threshold whose masks, seen through each thick acquisition, best
    match the thick labels (pooled Dice of "average >= 0.5" vs "label >= 0.5"). Uses the
    training supervision only: the class imbalance keeps probabilities of small lesions
    well below 0.5, so a fixed 0.5 would find almost nothing."""
    overlap = {t: 0.0 for t in thresholds}
    total = {t: 0.0 for t in thresholds}
    for sample in samples:
        probability = torch.sigmoid(net(sample.data.image[None]))
        probability = probability * sample.data.brain[None, None]
        label = sample.label[0] >= 0.5
        for t in thresholds:
            seen = thick_slice_average((probability > t).float(), sample.data.affine,
                                       sample.affine, tuple(label.shape), sample.axis,
                                       SliceProfile(sample.thickness_mm))[0, 0] >= 0.5
            overlap[t] += 2.0 * float((seen & label).sum())
            total[t] += float(seen.sum() + label.sum())
    scores = {t: overlap[t] / total[t] if total[t] else 0.0 for t in thresholds}
    return max(scores, key=scores.get), scores


def fit_t1(rows: Sequence[ThickLabelRow], config: DualTaskerConfig = DualTaskerConfig(),
           train_config: TrainConfig = TrainConfig(), masker: Masker | None = None,
           progress: Progress | None = None, data_note: str = "",
           init: WMHModel | None = None, checkpoint_dir: str | Path | None = None,
           cache_dir: str | Path | None = None) -> tuple[WMHModel, dict]:
    """Train the T1 mode from ``rows`` (or continue ``init``, keeping its configuration)
    and calibrate its threshold on the thick labels: ``(unsaved model with its card,
    training report)``. ``checkpoint_dir``: resumable checkpoints; ``cache_dir``:
    preprocessed subjects."""
    progress = ensure_progress(progress)
    if not rows:
        raise ValueError("no subjects to train from")
    if init is not None:
        config = init.config
    samples = read_thick_samples(rows, masker or registration_masker("T1"), config, cache_dir,
                                 progress.sub(0.0, 0.1))
    net, result = train_t1(samples, config, train_config, progress.sub(0.1, 0.95),
                           net=None if init is None else init.net,
                           checkpoint_dir=checkpoint_dir)
    progress.update(0.95, "calibrating the threshold on the thick labels")
    level, scores = calibrate_threshold(net, samples[:CALIBRATION_SUBJECTS])
    config = dataclasses.replace(config, thresholds=SegmentThresholds(activation_level=level))
    training = {"subjects": len(samples), "data": data_note,
                "supervision": "WMH masks drawn on thick-slice FLAIR (slice-profile loss)",
                "train_config": dataclasses.asdict(train_config), **result.summary(),
                "fine_tuned_from": None if init is None else f"{init.model_id} {init.version}",
                "threshold_thick_dice": {str(t): round(v, 4) for t, v in scores.items()}}
    card = ModelCard(DEFAULT_MODELS[T1_TASK], training=training)
    progress.update(1.0, "trained")
    return WMHModel(None, net, config, card, T1_TASK), training

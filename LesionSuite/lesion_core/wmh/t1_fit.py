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

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import io as lesion_io
from ..bundle import BundleMetadata
from ..errors import LesionSuiteError
from ..progress import Progress, ensure_progress
from ..volume import Volume
from .config import DualTaskerConfig, SegmentThresholds, TrainConfig
from .data import Masker, registration_masker
from .model import WMHModel, build_t1_network, save_wmh_model
from .preprocess import Preprocessed, antialiased, preprocess
from .thick_slice import SliceProfile, thick_slice_average, thick_slice_loss
from ..device import deterministic_algorithms

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
    try:
        with path.open(newline="") as handle:
            records = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LesionSuiteError(f"cannot read the table ({exc})", "give a CSV file", path) from exc
    rows = []
    for record in records:
        missing = [c for c in COLUMNS if not str(record.get(c) or "").strip()]
        if missing:
            raise LesionSuiteError(f"a row lacks {', '.join(missing)}",
                                   f"give {', '.join(COLUMNS)} on every row", path)
        paths = [str(path.parent / record[c]) if not Path(record[c]).is_absolute()
                 else record[c] for c in COLUMNS[1:]]
        rows.append(ThickLabelRow(record["subject"].strip(), *paths))
    if not rows:
        raise LesionSuiteError("the table has no rows", "add one row per subject", path)
    return rows


def thick_table_from_synthetic_cohort(folder: str | Path) -> list[ThickLabelRow]:
    """Rows of a synthetic WMH cohort: its T1 and its thick-slice FLAIR rater label."""
    with (Path(folder) / "wmh_labels.csv").open(newline="") as handle:
        return [ThickLabelRow(r["subject"], r["t1"], r["flair_wmh_thick_label"])
                for r in csv.DictReader(handle)]


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


def thick_sample(subject: str, t1: Volume, label: Volume, brain: Volume, atlas: Volume,
                 config: DualTaskerConfig) -> ThickSample:
    """Preprocess one subject and bring its thick label to the training grid."""
    data = preprocess(t1, brain, atlas, config)
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


def train_t1(samples: Sequence[ThickSample], config: DualTaskerConfig,
             train_config: TrainConfig = TrainConfig(), progress: Progress | None = None,
             net: torch.nn.Module | None = None) -> tuple[torch.nn.Module, dict]:
    """Adam on the thick-slice loss, ``batch_size`` subjects per step in a seeded order
    (one forward pass on the stacked images: batch norm needs more than one subject; the
    loss is averaged over the subjects, each against its own thick grid). Flips of the
    image are not used (the label lives on another grid), intensity changes are."""
    from .consistency import random_intensity

    progress = ensure_progress(progress)
    torch.manual_seed(train_config.seed)
    gen = torch.Generator().manual_seed(train_config.seed)
    net = (net or build_t1_network(config)).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=train_config.lr)
    history: dict[str, list[float]] = {"loss": []}
    batch_size = min(train_config.batch_size, len(samples))
    order: list[int] = []
    with deterministic_algorithms(train_config.deterministic):
        for step in range(train_config.steps):
            progress.update(step / train_config.steps, f"step {step + 1}/{train_config.steps}")
            if len(order) < batch_size:
                order += torch.randperm(len(samples), generator=gen).tolist()
            batch, order = [samples[i] for i in order[:batch_size]], order[batch_size:]
            image = torch.cat([random_intensity(gen, train_config.intensity)(s.data.image[None])
                               * s.data.brain[None, None] for s in batch])
            probability = torch.sigmoid(net(image))
            loss = sum(thick_slice_loss(probability[i:i + 1], s.label[None], s.data.affine,
                                        s.affine, s.axis, SliceProfile(s.thickness_mm))
                       for i, s in enumerate(batch)) / len(batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            history["loss"].append(float(loss.detach()))
    progress.update(1.0, "training done")
    return net.eval(), history


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


def fit_t1(rows: Sequence[ThickLabelRow], out: str | Path,
           config: DualTaskerConfig = DualTaskerConfig(),
           train_config: TrainConfig = TrainConfig(), masker: Masker | None = None,
           progress: Progress | None = None, version: str = "1.0", description: str = "",
           data_note: str = "", overwrite: bool = False,
           init: WMHModel | None = None) -> BundleMetadata:
    """Train the T1 mode from ``rows`` (or continue ``init``, keeping its configuration),
    calibrate its threshold on the thick labels and save it in ``out``."""
    progress = ensure_progress(progress)
    if not rows:
        raise ValueError("no subjects to train from")
    if init is not None:
        config = init.config
    masker = masker or registration_masker("T1")
    reading = progress.sub(0.0, 0.1)
    samples = []
    for index, row in enumerate(rows):
        reading.update(index / len(rows), f"reading subject {index + 1}/{len(rows)}")
        t1 = lesion_io.read_volume(row.image)
        brain, atlas = masker(t1, row.subject)
        samples.append(thick_sample(row.subject, t1, lesion_io.read_volume(row.thick_label),
                                    brain, atlas, config))
    net, history = train_t1(samples, config, train_config, progress.sub(0.1, 0.95),
                            net=None if init is None else init.net)
    progress.update(0.95, "calibrating the threshold on the thick labels")
    level, scores = calibrate_threshold(net, samples[:CALIBRATION_SUBJECTS])
    config = dataclasses.replace(config, thresholds=SegmentThresholds(activation_level=level))
    last = max(len(history["loss"]) // 10, 1)
    training = {"subjects": len(samples), "data": data_note,
                "supervision": "WMH masks drawn on thick-slice FLAIR (slice-profile loss)",
                "train_config": dataclasses.asdict(train_config),
                "loss_first": float(np.mean(history["loss"][:last])),
                "loss_last": float(np.mean(history["loss"][-last:])),
                "fine_tuned_from": None if init is None else f"{init.model_id} {init.version}",
                "threshold_thick_dice": {str(t): round(v, 4) for t, v in scores.items()}}
    return save_wmh_model(out, net, config, t1=True, version=version, description=description,
                          training=training, overwrite=overwrite)

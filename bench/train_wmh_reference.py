"""Upper reference for the WMH benchmark: the DualTasker's network trained with voxel labels.

Same preprocessing, working grid, U-Net, acquisition randomization and training engine as
the shipped FLAIR model, but the activation map is fitted directly to the synthetic truth
masks (soft Dice + BCE on the working grid) instead of being taught by ratings. It shows
how much the ratings-only supervision costs; it is a benchmark reference, never shipped as
a model. Prediction goes through the same ``lesion_core.wmh.predict`` with thresholds
"activation >= 0.5, no FLAIR condition".

    python bench/train_wmh_reference.py --cohort TRAIN_COHORT_DIR --out bench/models/wmh_voxel_reference \
        [--steps N] [--checkpoint DIR] [--cache DIR] [--precision auto] [--config JSON]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from lesion_core import io as lesion_io
from lesion_core.cli.common import optim_config, training_options
from lesion_core.training import EpochOrder, SampleContext, StepContext, TrainResult, run_training
from lesion_core.training.augment import Augmenter
from lesion_core.wmh.config import (DualTaskerConfig, SegmentThresholds, TrainConfig,
                                    task_fingerprint)
from lesion_core.wmh.data import cached_subject, next_batch
from lesion_core.wmh.evaluate import known_transform_masker
from lesion_core.wmh.model import load_wmh_model, save_wmh_model
from lesion_core.wmh.preprocess import Preprocessed, preprocess, randomize_acquisition
from lesion_core.wmh.task import model_config_file
from lesion_core.wmh.train import build_network

#: The reference's optimisation: the FLAIR model's, 2 subjects per step.
REFERENCE_OPTIM = dataclasses.replace(TrainConfig().optim, steps=600, batch_size=2)


@dataclasses.dataclass
class Pair:
    """One subject on the working grid and its voxel truth (fraction ``[1, I, J, K]``)."""

    subject: str
    data: Preprocessed
    truth: torch.Tensor


def load_pairs(cohort: Path, config: DualTaskerConfig, cache_dir: Path | None = None
               ) -> list[Pair]:
    """Every cohort subject on the working grid with its truth (from ``cache_dir`` when
    prepared there before)."""
    # The known synthetic transform supplies brain mask and atlas (a reference needs no
    # registration; the truth masks are its supervision anyway).
    masker = known_transform_masker(cohort, "FLAIR")
    pairs = []
    with (cohort / "wmh_labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            def compute(row: dict = row) -> dict[str, np.ndarray]:
                flair = lesion_io.read_volume(row["flair"])
                brain, atlas = masker(flair, row["subject"])
                data = dataclasses.replace(preprocess(flair, brain, atlas, config), bias=None)
                truth = lesion_io.read_volume(row["flair_wmh_truth"])
                truth = truth.with_array((np.asarray(truth.array) > 0).astype(np.float32))
                fraction = truth.resample_to_grid(data.affine, config.shape, order=1,
                                                  fill=0).array
                return {**data.to_arrays(), "truth": fraction[None].astype(np.float32)}

            arrays = cached_subject(cache_dir, "voxel-truth sample",
                                    [row["flair"], row["flair_wmh_truth"]], masker, config,
                                    compute)
            pairs.append(Pair(row["subject"], Preprocessed.from_arrays(arrays),
                              torch.from_numpy(arrays["truth"])))
            print(f"read {row['subject']}", flush=True)
    return pairs


def train_reference(pairs: list[Pair], config: DualTaskerConfig, settings: TrainConfig,
                    net: torch.nn.Module | None = None, checkpoint_dir: Path | None = None
                    ) -> tuple[torch.nn.Module, TrainResult]:
    """Fit the U-Net of the DualTasker (``net.backbone``; the head has no voxel target)
    to the truth, each image with its own random acquisition."""
    from monai.losses import DiceLoss

    augmenter = Augmenter(settings.acquisition, config.spacing_mm)
    order = EpochOrder()
    dice = DiceLoss(batch=True)

    def sample(ctx: SampleContext):
        picked = next_batch(order, pairs, ctx)
        image = torch.stack([randomize_acquisition(augmenter, p.data.image, p.data.brain,
                                                   ctx.rng, config.normalisation_percentile)
                             for p in picked])
        return image, torch.stack([p.truth for p in picked])

    def loss(model, batch, ctx: StepContext):
        image, target = batch
        activation = model.activation(image)
        return {"loss": dice(activation, target) + torch.nn.functional.binary_cross_entropy(
            activation.clamp(1e-6, 1 - 1e-6), target)}

    return run_training(net if net is not None else (lambda: build_network(config)), sample,
                        loss, settings.optim, parameters=lambda n: n.backbone.parameters(),
                        state=order, checkpoint_dir=checkpoint_dir, label="voxel reference",
                        fingerprint=task_fingerprint(config, settings,
                                                     [p.subject for p in pairs],
                                                     net is not None))


@torch.no_grad()
def calibrate_level(net, pairs: list[Pair],
                    levels=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)) -> float:
    """The activation level with the best pooled Dice against the training truth (the
    reference is voxel-supervised, so its threshold may be too)."""
    overlap, total = np.zeros(len(levels)), np.zeros(len(levels))
    for pair in pairs:
        activation = net.activation(pair.data.image[None])[0].numpy()
        truth = pair.truth.numpy() >= 0.5
        for index, level in enumerate(levels):
            mask = activation > level
            overlap[index] += 2 * np.sum(mask & truth)
            total[index] += mask.sum() + truth.sum()
    return float(levels[int(np.argmax(overlap / np.maximum(total, 1)))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, help="continue this reference model")
    parser.add_argument("--cache", type=Path, help="keep the preprocessed subjects here")
    parser.add_argument("--config", metavar="JSON",
                        help="model configuration (DualTaskerConfig fields, e.g. a finer "
                             "working grid); default: the shipped model's")
    training_options(parser)
    args = parser.parse_args(argv)
    config = model_config_file(args.config)
    settings = TrainConfig(optim=optim_config(args, REFERENCE_OPTIM))
    pairs = load_pairs(args.cohort, config, args.cache)
    start = load_wmh_model(args.init).net if args.init else None
    net, result = train_reference(pairs, config, settings, start, args.checkpoint)
    level = calibrate_level(net, pairs)
    print(f"activation level {level}", flush=True)
    config = dataclasses.replace(config, thresholds=SegmentThresholds(
        activation_percentile=0.0, flair_percentile=0.0, activation_level=level))
    save_wmh_model(args.out, net, config, name="wmh_voxel_reference", overwrite=True,
                   description="Benchmark upper reference: DualTasker network trained with "
                               "voxel labels (not shipped).",
                   training={"supervision": "synthetic voxel truth (reference only)",
                             "cohort": args.cohort.name,
                             "continued_from": str(args.init) if args.init else None,
                             "activation_level": level,
                             "train_config": dataclasses.asdict(settings),
                             **result.summary()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

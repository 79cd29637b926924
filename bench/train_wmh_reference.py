"""Upper reference for the WMH benchmark: the DualTasker's network trained with voxel labels.

Same preprocessing, working grid and U-Net as the shipped FLAIR model, but the activation
map is fitted directly to the synthetic truth masks (soft Dice + BCE on the working grid)
instead of being taught by ratings. It shows how much the ratings-only supervision costs;
it is a benchmark reference, never shipped as a model. Prediction goes through the same
``lesion_core.wmh.predict`` with thresholds "activation >= 0.5, no FLAIR condition".

    python bench/train_wmh_reference.py --cohort TRAIN_COHORT_DIR --out bench/models/wmh_voxel_reference
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
from lesion_core.wmh.config import DualTaskerConfig, SegmentThresholds, TrainConfig
from lesion_core.wmh.evaluate import known_transform_masker
from lesion_core.wmh.model import load_wmh_model, save_wmh_model
from lesion_core.wmh.preprocess import preprocess
from lesion_core.wmh.train import build_network


def load_pairs(cohort: Path, config: DualTaskerConfig) -> list[tuple[torch.Tensor, ...]]:
    """(image, regions, truth fraction) on the working grid for every cohort subject."""
    # The known synthetic transform supplies brain mask and atlas (a reference needs no
    # registration; the truth masks are its supervision anyway).
    masker = known_transform_masker(cohort, "FLAIR")
    pairs = []
    with (cohort / "wmh_labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            flair = lesion_io.read_volume(row["flair"])
            brain, atlas = masker(flair, row["subject"])
            data = preprocess(flair, brain, atlas, config)
            truth = lesion_io.read_volume(row["flair_wmh_truth"])
            truth = truth.with_array((np.asarray(truth.array) > 0).astype(np.float32))
            fraction = truth.resample_to_grid(data.affine, config.shape, order=1, fill=0).array
            pairs.append((data.image, data.regions, torch.from_numpy(fraction)[None].float()))
            print(f"read {row['subject']}", flush=True)
    return pairs


def train_reference(pairs, config: DualTaskerConfig, settings: TrainConfig,
                    net: torch.nn.Module | None = None) -> torch.nn.Module:
    from monai.losses import DiceLoss

    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    net = (net or build_network(config)).train()
    optimiser = torch.optim.Adam(net.backbone.parameters(), lr=settings.lr)
    dice = DiceLoss(batch=True)
    for step in range(settings.steps):
        picked = torch.randperm(len(pairs), generator=gen)[:settings.batch_size].tolist()
        image = torch.stack([pairs[i][0] for i in picked])
        target = torch.stack([pairs[i][2] for i in picked])
        activation = net.activation(image)
        loss = dice(activation, target) + torch.nn.functional.binary_cross_entropy(
            activation.clamp(1e-6, 1 - 1e-6), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 50 == 0:
            print(f"step {step} loss {float(loss):.4f}", flush=True)
    return net.eval()


@torch.no_grad()
def calibrate_level(net, pairs, levels=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)) -> float:
    """The activation level with the best pooled Dice against the training truth (the
    reference is voxel-supervised, so its threshold may be too)."""
    overlap, total = np.zeros(len(levels)), np.zeros(len(levels))
    for image, _, target in pairs:
        activation = net.activation(image[None])[0].numpy()
        truth = target.numpy() >= 0.5
        for index, level in enumerate(levels):
            mask = activation > level
            overlap[index] += 2 * np.sum(mask & truth)
            total[index] += mask.sum() + truth.sum()
    return float(levels[int(np.argmax(overlap / np.maximum(total, 1)))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="continue this reference model")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    config = DualTaskerConfig()
    settings = TrainConfig(steps=args.steps, seed=args.seed, lr=3e-3, batch_size=2)
    pairs = load_pairs(args.cohort, config)
    start = load_wmh_model(args.init).net if args.init else None
    net = train_reference(pairs, config, settings, start)
    level = calibrate_level(net, pairs)
    print(f"activation level {level}", flush=True)
    config = dataclasses.replace(config, thresholds=SegmentThresholds(
        activation_percentile=0.0, flair_percentile=0.0, activation_level=level))
    save_wmh_model(args.out, net, config, name="wmh_voxel_reference", overwrite=True,
                   description="Benchmark upper reference: DualTasker network trained with "
                               "voxel labels (not shipped).",
                   training={"supervision": "synthetic voxel truth (reference only)",
                             "cohort": args.cohort.name, "steps": args.steps,
                             "continued_from": str(args.init) if args.init else None,
                             "activation_level": level,
                             "seed": args.seed})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fully supervised low-data baseline: the same segmenter trained on voxel labels.

This is the paper's comparison, not part of the weakly supervised method: a small set of
CTs with voxel-wise haemorrhage masks trains the same 2.5D U-Net
(:func:`~lesion_core.ich.segmenter.train_segmenter`) directly. It is the only code of
:mod:`lesion_core.ich` that reads a label map, and the weak pipeline
(:mod:`lesion_core.ich.train`) never imports it.

Masks: any label value 1-5 is haemorrhage (the ``"ich"`` maps of the synthetic cohort;
6, perihaematomal oedema, is not); a binary mask (1) works as well.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import io as lesion_io
from ..progress import Progress, ensure_progress
from ..training import TrainResult
from .config import ICHConfig, SegmenterTrainConfig
from .preprocess import SliceStack, cached_stack
from .segmenter import train_segmenter

#: Label values counted as haemorrhage (the five subtypes).
BLOOD_VALUES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class VoxelLabelledScan:
    """A CT and its voxel-wise haemorrhage mask (any grid in the same RAS world)."""

    scan: str
    image: str
    mask: str


def voxel_labelled_from_synthetic_cohort(folder: str | Path) -> list[VoxelLabelledScan]:
    """CT and ``ct_ich_truth`` paths of a synthetic ICH cohort folder."""
    with (Path(folder) / "ich_labels.csv").open(newline="") as handle:
        return [VoxelLabelledScan(r["subject"], r["ct"], r["ct_ich_truth"])
                for r in csv.DictReader(handle)]


def load_voxel_labelled(scans: Sequence[VoxelLabelledScan], config: ICHConfig = ICHConfig(),
                        progress: Progress | None = None, cache_dir: str | Path | None = None,
                        ) -> list[tuple[SliceStack, np.ndarray]]:
    """Each scan as its stack (kept in the array cache ``cache_dir``, when given) and its
    mask on the stack grid, ``bool [S, H, W]`` (nearest-neighbour resampling)."""
    progress = ensure_progress(progress)
    out = []
    for n, scan in enumerate(scans):
        progress.update(n / max(len(scans), 1), f"reading labelled scan {n + 1}/{len(scans)}")
        stack = cached_stack(scan.image, lesion_io.read_volume, config, cache_dir)
        label = lesion_io.read_volume(scan.mask)
        blood = label.with_array(np.isin(np.asarray(label.array), BLOOD_VALUES).astype(np.uint8))
        out.append((stack, stack.from_input_grid(blood, order=0) > 0))
    return out


def fully_supervised(scans: Sequence[VoxelLabelledScan] | Sequence[tuple[SliceStack, np.ndarray]],
                     config: ICHConfig = ICHConfig(),
                     train_config: SegmenterTrainConfig = SegmenterTrainConfig(),
                     progress: Progress | None = None, checkpoint_dir: str | Path | None = None,
                     cache_dir: str | Path | None = None) -> tuple[torch.nn.Module, TrainResult]:
    """Train the segmenter on voxel labels (paths, or already loaded stacks and masks),
    resumably with ``checkpoint_dir``. Returns the network (eval, CPU) and its
    :class:`~lesion_core.training.TrainResult`."""
    progress = ensure_progress(progress)
    scans = list(scans)
    if scans and isinstance(scans[0], VoxelLabelledScan):
        pairs = load_voxel_labelled(scans, config, progress.sub(0.0, 0.2), cache_dir)
    else:
        pairs = scans
    return train_segmenter([s for s, _ in pairs], [m for _, m in pairs], config, train_config,
                           progress.sub(0.2, 1.0), checkpoint_dir=checkpoint_dir)

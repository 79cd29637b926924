"""Training ICHWeakSeg from image-level labels: classifier, pseudo-masks, segmenter.

:func:`train` runs the three stages of the method on weak labels only (the data come from
:mod:`lesion_core.ich.data`, which cannot read voxel labels):

1. :func:`train_classifier`: per-slice binary cross-entropy on slice labels and/or
   multiple-instance pooled cross-entropy on scan labels (:func:`~.classifier.mil_pool`);
2. :func:`make_pseudo_masks`: Grad-CAM through the sequence model
   (:func:`~.cam.compute_cam`) refined in HU (:func:`~.refine.refine`) for every scan;
3. :func:`~.segmenter.train_segmenter` on those pseudo-masks.

The fully supervised low-data baseline is elsewhere (:mod:`lesion_core.ich.supervised`)
and is never imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..device import select_device
from ..progress import Progress, ensure_progress
from .cam import CAMResult, compute_cam
from .classifier import ICHSliceClassifier, mil_pool
from .config import CLASSES, ClassifierTrainConfig, ICHConfig, TrainConfig
from .data import WeakLabelDataset, WeakSample, read_weak_table
from .refine import Refined, refine
from ..device import deterministic_algorithms
from .segmenter import train_segmenter


def build_classifier(config: ICHConfig = ICHConfig()) -> ICHSliceClassifier:
    """A fresh classifier (its arguments: ``config.classifier.network_args(len(windows))``)."""
    return ICHSliceClassifier(**config.classifier.network_args(len(config.windows)))


def fraction_subset(items: Sequence, fraction: float, seed: int = 0) -> list:
    """A seeded random ``fraction`` (0-1] of ``items`` (at least one), for the low-data
    experiments; a smaller fraction with the same seed is a subset of a larger one."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in sorted(order[:max(1, math.ceil(fraction * len(items)))])]


def _pos_weight(targets: list[torch.Tensor]) -> torch.Tensor:
    """negatives / positives per class over the known targets, clipped to 1..10."""
    if not targets:
        return torch.ones(len(CLASSES))
    t = torch.cat([x.reshape(-1, len(CLASSES)) for x in targets])
    known = ~torch.isnan(t)
    pos = ((t == 1) & known).sum(0).float()
    neg = ((t == 0) & known).sum(0).float()
    return (neg / pos.clamp(min=1)).clamp(1.0, 10.0)


def _masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor | None:
    known = ~torch.isnan(targets)
    if not known.any():
        return None
    loss = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none",
                                              pos_weight=pos_weight)
    return loss[known].mean()


def _usable(sample: WeakSample, mode: str) -> bool:
    """Whether a scan has any label that the ``labels`` mode trains on."""
    slices = bool((~torch.isnan(sample.slice_targets)).any())
    scan = bool((~torch.isnan(sample.scan_targets)).any())
    return {"slice": slices, "scan": scan}.get(mode, slices or scan)


def _batch(samples: Sequence[WeakSample], mode: str, train_config: ClassifierTrainConfig,
           gen: torch.Generator):
    """Pad a batch: ``x [B, S, C, H, W]``, ``lengths [B]``, slice targets ``[B, S, K]`` and
    scan targets ``[B, K]``. A sample with slice labels is trained on a random run of
    ``max_slices`` slices and its slice labels; one without on the whole scan (MIL)."""
    xs, ys, scans = [], [], []
    for sample in samples:
        x, y, scan = sample.stack.image, sample.slice_targets.clone(), sample.scan_targets.clone()
        if mode == "scan":
            y[:] = math.nan
        elif mode == "slice":
            scan[:] = math.nan
        if not torch.isnan(y).all():
            scan[:] = math.nan  # slice labels are the stronger signal; a crop breaks MIL
            n = train_config.max_slices
            if n and x.shape[0] > n:
                start = int(torch.randint(x.shape[0] - n + 1, (1,), generator=gen))
                x, y = x[start:start + n], y[start:start + n]
        if torch.rand(1, generator=gen).item() < train_config.flip_probability:
            x = x.flip(-2)  # H runs along R: a left-right mirror
        xs.append(x), ys.append(y), scans.append(scan)
    lengths = torch.tensor([x.shape[0] for x in xs])
    s = int(lengths.max())
    pad = lambda t, v: F.pad(t, (0, 0) * (t.ndim - 1) + (0, s - t.shape[0]), value=v)  # noqa: E731
    return (torch.stack([pad(x, 0.0) for x in xs]), lengths,
            torch.stack([pad(y, math.nan) for y in ys]), torch.stack(scans))


def train_classifier(samples: Sequence[WeakSample], config: ICHConfig = ICHConfig(),
                     train_config: ClassifierTrainConfig = ClassifierTrainConfig(),
                     progress: Progress | None = None, net: ICHSliceClassifier | None = None,
                     ) -> tuple[ICHSliceClassifier, dict[str, list[float]]]:
    """Train (or fine-tune ``net``) the slice classifier on weak labels.

    Loss per step: masked BCE of the slice logits on known slice targets, plus
    ``scan_weight`` x masked BCE of the MIL-pooled scan logits on known scan targets;
    positives weighted by the class balance when ``balance``. Returns the network (eval,
    CPU) and the history ``{"loss", "slice_loss", "scan_loss"}`` (NaN where a term had
    no labels in that step).
    """
    progress = ensure_progress(progress)
    samples = [s for s in samples if _usable(s, train_config.labels)]
    if not samples:
        raise ValueError(f"no training scan has labels usable with labels={train_config.labels!r}")
    device = select_device(train_config.device)
    torch.manual_seed(train_config.seed)
    gen = torch.Generator().manual_seed(train_config.seed)
    net = (net or build_classifier(config)).to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=train_config.lr)
    ones = torch.ones(len(CLASSES))
    slice_w = _pos_weight([s.slice_targets for s in samples]) if train_config.balance else ones
    scan_w = _pos_weight([s.scan_targets for s in samples]) if train_config.balance else ones
    slice_w, scan_w = slice_w.to(device), scan_w.to(device)
    history: dict[str, list[float]] = {"loss": [], "slice_loss": [], "scan_loss": []}
    batch_size = min(train_config.batch_size, len(samples))
    order: list[int] = []
    with deterministic_algorithms(train_config.deterministic):
        for step in range(train_config.steps):
            progress.update(step / train_config.steps, f"classifier step {step + 1}/{train_config.steps}")
            if len(order) < batch_size:
                order += torch.randperm(len(samples), generator=gen).tolist()
            picked, order = order[:batch_size], order[batch_size:]
            x, lengths, y, scan = _batch([samples[i] for i in picked], train_config.labels,
                                         train_config, gen)
            logits = net(x.to(device), lengths)
            slice_loss = _masked_bce(logits, y.to(device), slice_w)
            pooled = mil_pool(logits, lengths, config.classifier.pooling, config.classifier.lse_r)
            scan_loss = _masked_bce(pooled, scan.to(device), scan_w)
            # Every sample has a usable label (filtered above), so one term exists.
            loss = sum(t for t in (slice_loss, None if scan_loss is None else
                                   train_config.scan_weight * scan_loss) if t is not None)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for key, value in (("loss", loss), ("slice_loss", slice_loss), ("scan_loss", scan_loss)):
                history[key].append(math.nan if value is None else float(value.detach()))
    progress.update(1.0, "classifier trained")
    return net.eval().to("cpu"), history


@dataclass
class PseudoMask:
    """One scan's pseudo-mask ``bool [S, H, W]`` with the CAM and refinement behind it."""

    scan: str
    mask: np.ndarray
    cam: CAMResult
    refined: Refined


def make_pseudo_masks(classifier: ICHSliceClassifier, samples: Sequence[WeakSample],
                      config: ICHConfig = ICHConfig(), progress: Progress | None = None,
                      ) -> list[PseudoMask]:
    """CAM + refinement for every scan (no labels are used: the classifier decides which
    slices are positive)."""
    progress = ensure_progress(progress)
    out = []
    for n, sample in enumerate(samples):
        progress.update(n / max(len(samples), 1), f"pseudo-mask {n + 1}/{len(samples)}")
        stack = sample.stack
        cam = compute_cam(classifier, stack.image, config.cam)
        refined = refine(stack.hu, cam.cam, stack.spacing_mm, config.refine,
                         cam_threshold=config.cam.threshold, intracranial=stack.intracranial)
        out.append(PseudoMask(sample.scan, refined.mask, cam, refined))
    progress.update(1.0, "pseudo-masks done")
    return out


@dataclass
class TrainedICH:
    """The result of :func:`train`: both networks (eval, CPU), the config they were built
    with, the per-stage histories and the pseudo-masks the segmenter learnt from."""

    classifier: ICHSliceClassifier
    segmenter: torch.nn.Module
    config: ICHConfig
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    pseudo_masks: list[PseudoMask] = field(default_factory=list)


def load_samples(data: WeakLabelDataset | Sequence[WeakSample] | str | Path,
                 config: ICHConfig = ICHConfig(), progress: Progress | None = None) -> list[WeakSample]:
    """Training scans from a weak-label CSV path, a dataset or ready samples."""
    progress = ensure_progress(progress)
    if isinstance(data, (str, Path)):
        data = WeakLabelDataset(read_weak_table(data), config)
    samples = []
    for n in range(len(data)):
        progress.update(n / max(len(data), 1), f"reading scan {n + 1}/{len(data)}")
        samples.append(data[n])
    return samples


def train(data: WeakLabelDataset | Sequence[WeakSample] | str | Path,
          config: ICHConfig = ICHConfig(), train_config: TrainConfig = TrainConfig(),
          progress: Progress | None = None) -> TrainedICH:
    """The whole weakly supervised method (module notes); cancelling via ``progress``
    raises ``OperationCancelled`` between steps."""
    progress = ensure_progress(progress)
    samples = load_samples(data, config, progress.sub(0.0, 0.1))
    if not samples:
        raise ValueError("no training scans")
    classifier, c_hist = train_classifier(samples, config, train_config.classifier,
                                          progress.sub(0.1, 0.5))
    pseudo = make_pseudo_masks(classifier, samples, config, progress.sub(0.5, 0.6))
    segmenter, s_hist = train_segmenter([s.stack.image for s in samples], [p.mask for p in pseudo],
                                        config, train_config.segmenter, progress.sub(0.6, 1.0))
    return TrainedICH(classifier, segmenter, config, {"classifier": c_hist, "segmenter": s_hist},
                      pseudo)

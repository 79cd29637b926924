"""Training ICHWeakSeg from image-level labels: classifier, pseudo-masks, segmenter.

:func:`train` runs the three stages of the method on weak labels only (the data come from
:mod:`lesion_core.ich.data`, which cannot read voxel labels):

1. :func:`train_classifier`: per-slice binary cross-entropy on slice labels and/or
   multiple-instance pooled cross-entropy on scan labels (:func:`~.classifier.mil_pool`);
2. :func:`make_pseudo_masks`: Grad-CAM through the sequence model
   (:func:`~.cam.compute_cam`; or LayerCAM of ``SegmenterTrainConfig.pseudo_mask_layer_stage``)
   refined in HU (:func:`~.refine.refine`) for every scan;
3. :func:`~.segmenter.train_segmenter` on those pseudo-masks, emptied where the image-level
   labels say "no haemorrhage" (:func:`clean_with_labels`); optionally rounds of
   self-training on the segmenter's own grown output (:func:`own_target`).

Both networks train through :func:`lesion_core.training.run_training` (seeding, bf16
autocast where it pays, resumable checkpoints: one folder per network), on inputs
randomized in HU (:mod:`.augment`).

The fully supervised low-data baseline is elsewhere (:mod:`lesion_core.ich.supervised`)
and is never imported here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..device import select_device
from ..jsonable import json_safe
from ..progress import Progress, ensure_progress
from ..training import EpochOrder, SampleContext, StepContext, TrainResult, run_training
from ..training.augment import Augmenter
from .augment import ct_augmenter, training_slices
from .cam import CAMResult, compute_cam
from .classifier import ICHSliceClassifier, mil_pool
from .config import CLASSES, ClassifierTrainConfig, ICHConfig, SegmenterTrainConfig, TrainConfig
from .data import WeakLabelDataset, WeakSample, read_weak_table
from .refine import Refined, refine
from .grow import confident_components, grow_into_blood
from .segmenter import segment_stack, train_segmenter


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


def _scan_input(sample: WeakSample, mode: str, train_config: ClassifierTrainConfig,
                config: ICHConfig, augmenter: Augmenter | None, ctx: SampleContext):
    """One scan's ``(x [S, C, H, W], slice targets [S, K], scan targets [K])`` for a step.
    A scan with slice labels is trained on a random run of ``max_slices`` slices and its
    slice labels; one without on the whole scan (MIL). Crop and flip from
    ``ctx.generator``, the acquisition randomization from ``ctx.rng``."""
    y, scan = sample.slice_targets.clone(), sample.scan_targets.clone()
    if mode == "scan":
        y[:] = math.nan
    elif mode == "slice":
        scan[:] = math.nan
    index = np.arange(sample.stack.n_slices)
    if not torch.isnan(y).all():
        scan[:] = math.nan  # slice labels are the stronger signal; a crop breaks MIL
        n = train_config.max_slices
        if n and len(index) > n:
            start = int(torch.randint(len(index) - n + 1, (1,), generator=ctx.generator))
            index, y = index[start:start + n], y[start:start + n]
    flip = torch.rand(1, generator=ctx.generator).item() < train_config.flip_probability
    x = training_slices(sample.stack, index, config.windows, augmenter, ctx.rng)
    return (x.flip(-2) if flip else x), y, scan  # H runs along R: a left-right mirror


def _padded(items: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Pad a batch: ``x [B, S, C, H, W]``, ``lengths [B]``, slice targets ``[B, S, K]``
    (NaN padding) and scan targets ``[B, K]``."""
    lengths = torch.tensor([x.shape[0] for x, _, _ in items])
    s = int(lengths.max())
    pad = lambda t, v: F.pad(t, (0, 0) * (t.ndim - 1) + (0, s - t.shape[0]), value=v)  # noqa: E731
    return (torch.stack([pad(x, 0.0) for x, _, _ in items]), lengths,
            torch.stack([pad(y, math.nan) for _, y, _ in items]),
            torch.stack([scan for _, _, scan in items]))


def train_classifier(samples: Sequence[WeakSample], config: ICHConfig = ICHConfig(),
                     train_config: ClassifierTrainConfig = ClassifierTrainConfig(),
                     progress: Progress | None = None, net: ICHSliceClassifier | None = None,
                     checkpoint_dir: str | Path | None = None,
                     ) -> tuple[ICHSliceClassifier, TrainResult]:
    """Train (or fine-tune ``net``) the slice classifier on weak labels with the training
    engine (:func:`~lesion_core.training.run_training`; ``checkpoint_dir``: resumable).

    Each step draws ``optim.batch_size`` scans in epoch order (:class:`~lesion_core.training.EpochOrder`).
    Loss: masked BCE of the slice logits on known slice targets, plus ``scan_weight`` x
    masked BCE of the MIL-pooled scan logits on known scan targets; positives weighted by
    the class balance when ``balance``. Returns the network (eval, CPU) and the
    :class:`~lesion_core.training.TrainResult`, whose history has ``loss``,
    ``slice_loss`` and ``scan_loss`` (NaN where a term had no labels in that step).
    """
    samples = [s for s in samples if _usable(s, train_config.labels)]
    if not samples:
        raise ValueError(f"no training scan has labels usable with labels={train_config.labels!r}")
    ones = torch.ones(len(CLASSES))
    slice_w = _pos_weight([s.slice_targets for s in samples]) if train_config.balance else ones
    scan_w = _pos_weight([s.scan_targets for s in samples]) if train_config.balance else ones
    augmenter = ct_augmenter(train_config.augment, config.grid)
    order = EpochOrder()

    def sample(ctx: SampleContext):
        picked = order.take(min(ctx.batch_size, len(samples)), len(samples), ctx.generator)
        return _padded([_scan_input(samples[i], train_config.labels, train_config, config,
                                    augmenter, ctx) for i in picked])

    def loss(network: ICHSliceClassifier, batch, ctx: StepContext) -> dict:
        x, lengths, y, scan = batch
        logits = network(x, lengths).float()
        slice_loss = _masked_bce(logits, y, slice_w.to(ctx.device))
        pooled = mil_pool(logits, lengths, config.classifier.pooling, config.classifier.lse_r)
        scan_loss = _masked_bce(pooled, scan, scan_w.to(ctx.device))
        # Every sample has a usable label (filtered above), so one term exists.
        total = sum(t for t in (slice_loss, None if scan_loss is None else
                                train_config.scan_weight * scan_loss) if t is not None)
        return {"loss": total, "slice_loss": slice_loss, "scan_loss": scan_loss}

    return run_training(net if net is not None else (lambda: build_classifier(config)),
                        sample, loss, train_config.optim, state=order,
                        checkpoint_dir=checkpoint_dir, progress=progress, label="classifier",
                        fingerprint={"settings": asdict(train_config),
                                     "scans": [s.scan for s in samples],
                                     # A run from given weights is not a run from new ones.
                                     **({"from_given_network": True} if net is not None else {})})


@dataclass
class PseudoMask:
    """One scan's pseudo-mask ``bool [S, H, W]`` with the CAM and refinement behind it."""

    scan: str
    mask: np.ndarray
    cam: CAMResult
    refined: Refined


def make_pseudo_masks(classifier: ICHSliceClassifier, samples: Sequence[WeakSample],
                      config: ICHConfig = ICHConfig(), progress: Progress | None = None,
                      precision: str = "auto") -> list[PseudoMask]:
    """CAM + refinement for every scan (no labels are used: the classifier decides which
    slices are positive). Deterministic: a resumed training recomputes the same masks."""
    progress = ensure_progress(progress)
    out = []
    for n, sample in enumerate(samples):
        progress.update(n / max(len(samples), 1), f"pseudo-mask {n + 1}/{len(samples)}")
        stack = sample.stack
        cam = compute_cam(classifier, stack.image, config.cam, precision)
        refined = refine(stack.hu, cam.cam, stack.spacing_mm, config.refine,
                         cam_threshold=config.cam.threshold, intracranial=stack.intracranial)
        out.append(PseudoMask(sample.scan, refined.mask, cam, refined))
    progress.update(1.0, "pseudo-masks done")
    return out


@dataclass
class TrainedICH:
    """The result of :func:`train`: both networks (eval, CPU), the config they were built
    with, each stage's :class:`~lesion_core.training.TrainResult` (``"classifier"``,
    ``"segmenter"``) and the pseudo-masks the segmenter learnt from."""

    classifier: ICHSliceClassifier
    segmenter: torch.nn.Module
    config: ICHConfig
    results: dict[str, TrainResult] = field(default_factory=dict)
    pseudo_masks: list[PseudoMask] = field(default_factory=list)


def load_samples(data: WeakLabelDataset | Sequence[WeakSample] | str | Path,
                 config: ICHConfig = ICHConfig(), progress: Progress | None = None,
                 cache_dir: str | Path | None = None) -> list[WeakSample]:
    """Training scans from a weak-label CSV path (stacks cached in ``cache_dir``), a
    dataset or ready samples."""
    progress = ensure_progress(progress)
    if isinstance(data, (str, Path)):
        data = WeakLabelDataset(read_weak_table(data), config, cache_dir=cache_dir)
    samples = []
    for n in range(len(data)):
        progress.update(n / max(len(data), 1), f"reading scan {n + 1}/{len(data)}")
        samples.append(data[n])
    return samples


def stage_report(settings: ClassifierTrainConfig | SegmenterTrainConfig,
                 result: TrainResult) -> dict:
    """A model card's record of one network's training: the task settings, the
    optimisation settings (``optim``) and how the run went (steps, wall time, precision,
    loss; :meth:`~lesion_core.training.TrainResult.summary`)."""
    task = {k: v for k, v in asdict(settings).items() if k != "optim"}
    return json_safe({**task, "optim": asdict(settings.optim), **result.summary()})


def stage_folder(checkpoint_dir: str | Path | None, stage: str) -> Path | None:
    """The checkpoint folder of one network (``DIR/classifier``, ``DIR/segmenter``)."""
    return None if checkpoint_dir is None else Path(checkpoint_dir) / stage


def train(data: WeakLabelDataset | Sequence[WeakSample] | str | Path,
          config: ICHConfig = ICHConfig(), train_config: TrainConfig = TrainConfig(),
          progress: Progress | None = None, checkpoint_dir: str | Path | None = None,
          cache_dir: str | Path | None = None,
          classifier: ICHSliceClassifier | None = None) -> TrainedICH:
    """The whole weakly supervised method (module notes); cancelling via ``progress``
    raises ``OperationCancelled``. ``classifier``: a trained one to start from (with 0
    classifier steps it is kept as it is and only the segmenter learns, from its CAMs).
    With ``checkpoint_dir`` each network keeps resumable checkpoints in its own subfolder
    (:func:`stage_folder`): the same call after a kill resumes in the stage it was in (a finished classifier is returned at once and its
    pseudo-masks are recomputed, deterministically)."""
    progress = ensure_progress(progress)
    samples = load_samples(data, config, progress.sub(0.0, 0.1), cache_dir)
    if not samples:
        raise ValueError("no training scans")
    c_config, s_config = train_config.classifier, train_config.segmenter
    classifier, c_result = train_classifier(
        samples, config, c_config, progress.sub(0.1, 0.5), net=classifier,
        checkpoint_dir=stage_folder(checkpoint_dir, "classifier"))
    # The CAMs run where the classifier trained (it comes back on the CPU).
    device = select_device(c_config.optim.device)
    target_cam = replace(config.cam, layer_stage=s_config.pseudo_mask_layer_stage)
    pseudo = make_pseudo_masks(classifier.to(device), samples, replace(config, cam=target_cam),
                               progress.sub(0.5, 0.6), c_config.optim.precision)
    classifier.to("cpu")
    stacks = [s.stack for s in samples]

    def cleaned(masks: list[np.ndarray]) -> list[np.ndarray]:
        if not s_config.label_cleaning:
            return masks
        return [clean_with_labels(m, s) for m, s in zip(masks, samples)]

    targets = cleaned([p.mask for p in pseudo])
    rounds = s_config.self_training_rounds
    share = 0.4 / (rounds + 1)
    segmenter, s_result = train_segmenter(stacks, targets, config, s_config,
                                          progress.sub(0.6, 0.6 + share),
                                          checkpoint_dir=stage_folder(checkpoint_dir,
                                                                      "segmenter"))
    results = {"classifier": c_result, "segmenter": s_result}
    for k in range(1, rounds + 1):
        own = cleaned([own_target(segmenter, st, config, s_config.optim.precision)
                       for st in stacks])
        targets = [t | m for t, m in zip(targets, own)]
        segmenter, results[f"self_training_{k}"] = train_segmenter(
            stacks, targets, config, s_config,
            progress.sub(0.6 + k * share, 0.6 + (k + 1) * share), net=segmenter,
            checkpoint_dir=stage_folder(checkpoint_dir, f"segmenter_round{k}"))
    return TrainedICH(classifier, segmenter, config, results, pseudo)


def clean_with_labels(mask: np.ndarray, sample: WeakSample) -> np.ndarray:
    """``mask [S, H, W]`` emptied on the working slices whose "any" label is 0, and
    wholly when the scan's is (unknown labels leave it as it is)."""
    if sample.scan_targets[0].item() == 0.0:
        return np.zeros_like(mask)
    negative = (sample.slice_targets[:, 0] == 0.0).numpy()
    return np.where(negative[:, None, None], False, mask)


def own_target(segmenter: torch.nn.Module, stack, config: ICHConfig,
               precision: str = "auto") -> np.ndarray:
    """The segmenter's mask on a working-grid stack (its threshold; components without
    a voxel of ``grow.seed_probability`` dropped), grown into the connected blood as at
    prediction (``config.grow``): a self-training target."""
    probability = segment_stack(segmenter, stack.image, config, precision=precision)
    seeds = confident_components(probability >= config.segmenter.threshold,
                                 probability >= config.grow.seed_probability)
    return grow_into_blood(seeds, stack.hu, stack.spacing_mm, stack.intracranial, 0,
                           config.grow)

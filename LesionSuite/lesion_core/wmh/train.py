"""Training WMH-DualTasker from ratings: rating loss + lambda * consistency loss.

Each step draws ``batch_size`` subjects (a fresh order per epoch) and one random spatial
transform T (flips, axial quarter turns where the grid allows, a small affine with some
probability). The transformed image gets a random acquisition of its own
(:data:`~lesion_core.wmh.config.WMH_ACQUISITION`: bias, noise, contrast curve, thick
slices...): ``x'' = A(T(x))``. The network runs on ``x`` and ``x''`` and the loss is

    rating_loss(x) [+ rating_loss(x'') with T's regions and ratings, averaged]
    + consistency_weight * mean_valid (act(x'') - T(act(x)))**2
    + negative_weight * BCE(act, 0) over regions rated 0 and outside the brain
    + sparsity_weight * mean activation over the brain (both branches, averaged)

so the map must follow T and ignore the acquisition (the paper's transformation
invariance, with the acquisition as part of T). The transformed branch uses its own
gate, as prediction on a new scan does. The optimisation itself (seeding, Adam, schedule,
bf16, checkpoints, progress) is :func:`lesion_core.training.run_training`. No voxel label is ever seen (the
data come from :mod:`lesion_core.wmh.data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..progress import Progress, ensure_progress
from ..training import EpochOrder, SampleContext, StepContext, TrainResult, run_training
from ..training.augment import Augmenter
from .config import DualTaskerConfig, TrainConfig, task_fingerprint
from .consistency import consistency_pair, random_transform
from .data import (Masker, RatingSample, RatingsDataset, collate, next_batch,
                   read_ratings_table)
from .losses import localization_loss, rating_loss
from .network import DualTaskerNet
from .preprocess import randomize_acquisition

#: The ordinal head's parameters (left out of the optimiser when the head is frozen).
RATING_HEAD = ("cut_base", "cut_steps", "raw_slope")


def build_network(config: DualTaskerConfig) -> DualTaskerNet:
    """A fresh network for ``config`` (its arguments are ``config.network_args()``)."""
    return DualTaskerNet(**config.network_args())


def _samples(data, config: DualTaskerConfig, masker: Masker | None,
             progress: Progress) -> list[RatingSample]:
    if isinstance(data, (str, Path)):
        if masker is None:
            raise ValueError("training from a table file needs a masker")
        data = RatingsDataset(read_ratings_table(data), masker, config)
    samples = []
    for index in range(len(data)):
        progress.update(index / max(len(data), 1), f"reading subject {index + 1}/{len(data)}")
        samples.append(data[index])
    if not samples:
        raise ValueError("no training subjects")
    return samples


def _sampler(samples: Sequence[RatingSample], config: DualTaskerConfig,
             train_config: TrainConfig, order: EpochOrder):
    """``sample(ctx)``: subjects, their transform and the randomized transformed images
    (runs in the engine's prefetch thread; draws only from ``ctx``)."""
    augmenter = Augmenter(train_config.acquisition, config.spacing_mm)
    percentile = config.normalisation_percentile

    def sample(ctx: SampleContext) -> dict:
        picked = next_batch(order, samples, ctx)
        batch = collate(picked)
        transform = random_transform(tuple(batch["image"].shape[2:]), train_config,
                                     ctx.generator)
        moved_brain = transform.map(batch["brain"][:, None].float())[:, 0] > 0.5
        batch["moved"] = torch.stack([
            randomize_acquisition(augmenter, image, brain, ctx.rng, percentile)
            for image, brain in zip(transform.map(batch["image"]), moved_brain)])
        batch["transform"] = transform
        batch["moved_brain"] = moved_brain
        return batch
    return sample


def _loss(train_config: TrainConfig):
    """``loss(net, batch, ctx)`` of one step (see the module notes)."""
    weight = train_config.total_weight

    def loss(net: DualTaskerNet, batch: dict, ctx: StepContext) -> dict:
        transform = batch["transform"]
        consistency, outputs, moved = consistency_pair(
            net, batch["image"], batch["regions"], transform, moved_image=batch["moved"])
        rated = rating_loss(outputs, batch["region_ratings"], batch["total"], weight)
        rating = rated.loss
        moved_ratings = transform.ratings(batch["region_ratings"])
        if train_config.rating_on_transformed:
            rated_t = rating_loss(moved, moved_ratings, batch["total"], weight)
            rating = 0.5 * (rating + rated_t.loss)
        local = localization_loss(outputs["activation"], batch["regions"], batch["brain"],
                                  batch["region_ratings"])
        local_t = localization_loss(moved["activation"], transform.regions(batch["regions"]),
                                    batch["moved_brain"], moved_ratings)
        negative = 0.5 * (local.negative + local_t.negative)
        sparsity = 0.5 * (local.sparsity + local_t.sparsity)
        total_loss = (rating + train_config.consistency_weight * consistency
                      + train_config.negative_weight * negative
                      + train_config.sparsity_weight * sparsity)
        return {"loss": total_loss, "rating_loss": rating, "consistency_loss": consistency,
                "negative_loss": negative, "sparsity": sparsity,
                "ordinal": rated.ordinal, "total": rated.total}
    return loss


def _trained_parameters(train_config: TrainConfig):
    """The engine's ``parameters``: all but the ordinal head when it is frozen."""
    def parameters(net: torch.nn.Module):
        return [p for n, p in net.named_parameters()
                if not (train_config.freeze_rating_head and n in RATING_HEAD)]
    return parameters


def train(data: RatingsDataset | Sequence[RatingSample] | str | Path,
          config: DualTaskerConfig = DualTaskerConfig(),
          train_config: TrainConfig = TrainConfig(), progress: Progress | None = None,
          masker: Masker | None = None, net: DualTaskerNet | None = None,
          checkpoint_dir: str | Path | None = None) -> tuple[DualTaskerNet, TrainResult]:
    """Train (or fine-tune ``net``) from ratings.

    Args:
        data: a :class:`RatingsDataset`, preprocessed samples, or a ratings CSV path
            (then ``masker`` supplies brain masks and atlases).
        config: model configuration (grid, network size).
        train_config: optimisation, augmentation and loss settings.
        progress: reporter; cancelling raises ``OperationCancelled`` between steps (after
            saving a checkpoint when ``checkpoint_dir`` is given).
        net: a network to continue training (e.g. a loaded bundle's); new when ``None``.
        checkpoint_dir: resumable checkpoints; a run found there resumes.

    Returns:
        the trained network (eval mode, on CPU) and the run's
        :class:`~lesion_core.training.TrainResult`, whose history has per step
        ``"loss"``, ``"rating_loss"``, ``"consistency_loss"``, ``"ordinal"``, ``"total"``.
    """
    progress = ensure_progress(progress)
    samples = _samples(data, config, masker, progress.sub(0.0, 0.1))
    order = EpochOrder()
    return run_training(net if net is not None else (lambda: build_network(config)),
                        _sampler(samples, config, train_config, order), _loss(train_config),
                        train_config.optim, parameters=_trained_parameters(train_config),
                        state=order, checkpoint_dir=checkpoint_dir,
                        progress=progress.sub(0.1, 1.0), label="DualTasker",
                        fingerprint=task_fingerprint(config, train_config,
                                                     [s.subject for s in samples],
                                                     net is not None))

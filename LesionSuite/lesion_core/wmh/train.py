"""Training WMH-DualTasker from ratings: rating loss + lambda * consistency loss.

Each step draws ``batch_size`` subjects and one random transform T (flips, axial quarter
turns where the grid allows, a small affine with some probability, intensity changes),
runs the network on x and on T(x), and minimises

    rating_loss(x) [+ rating_loss(T(x)) with T's regions and ratings, averaged]
    + consistency_weight * mean_valid (act(T(x)) - T(act(x)))**2

with Adam. No voxel label is ever seen (the data come from :mod:`lesion_core.wmh.data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..device import deterministic_algorithms, select_device
from ..progress import Progress, ensure_progress
from .config import DualTaskerConfig, TrainConfig
from .consistency import consistency_pair, random_transform
from .data import Masker, RatingSample, RatingsDataset, collate, read_ratings_table
from .losses import rating_loss
from .network import DualTaskerNet


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


def train(data: RatingsDataset | Sequence[RatingSample] | str | Path,
          config: DualTaskerConfig = DualTaskerConfig(),
          train_config: TrainConfig = TrainConfig(), progress: Progress | None = None,
          masker: Masker | None = None, net: DualTaskerNet | None = None,
          ) -> tuple[DualTaskerNet, dict[str, list[float]]]:
    """Train (or fine-tune ``net``) from ratings.

    Args:
        data: a :class:`RatingsDataset`, preprocessed samples, or a ratings CSV path
            (then ``masker`` supplies brain masks and atlases).
        config: model configuration (grid, network size).
        train_config: optimisation settings.
        progress: reporter; cancelling raises ``OperationCancelled`` between steps.
        net: a network to continue training (e.g. a loaded bundle's); new when ``None``.

    Returns:
        the trained network (eval mode, on CPU) and the history: per step
        ``"loss"``, ``"rating_loss"``, ``"consistency_loss"``, ``"ordinal"``, ``"total"``.
    """
    progress = ensure_progress(progress)
    samples = _samples(data, config, masker, progress.sub(0.0, 0.1))
    step_progress = progress.sub(0.1, 1.0)
    device = select_device(train_config.device)
    torch.manual_seed(train_config.seed)
    gen = torch.Generator().manual_seed(train_config.seed)
    net = (net or build_network(config)).to(device).train()
    head = {"cut_base", "cut_steps", "raw_slope"}
    params = [p for n, p in net.named_parameters()
              if not (train_config.freeze_rating_head and n in head)]
    optimiser = torch.optim.Adam(params, lr=train_config.lr)
    history: dict[str, list[float]] = {k: [] for k in ("loss", "rating_loss", "consistency_loss",
                                                       "ordinal", "total")}
    batch_size = min(train_config.batch_size, len(samples))
    order: list[int] = []
    with deterministic_algorithms(train_config.deterministic):
        for step in range(train_config.steps):
            step_progress.update(step / train_config.steps,
                                 f"step {step + 1}/{train_config.steps}")
            if len(order) < batch_size:
                order += torch.randperm(len(samples), generator=gen).tolist()
            picked, order = order[:batch_size], order[batch_size:]
            batch = {k: v.to(device) for k, v in collate([samples[i] for i in picked]).items()}
            transform = random_transform(tuple(batch["image"].shape[2:]), train_config, gen)
            consistency, outputs, moved = consistency_pair(net, batch["image"],
                                                           batch["regions"], transform)
            rated = rating_loss(outputs, batch["region_ratings"], batch["total"],
                                train_config.total_weight)
            rating = rated.loss
            if train_config.rating_on_transformed:
                rated_t = rating_loss(moved, transform.ratings(batch["region_ratings"]),
                                      batch["total"], train_config.total_weight)
                rating = 0.5 * (rating + rated_t.loss)
            loss = rating + train_config.consistency_weight * consistency
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for key, value in (("loss", loss), ("rating_loss", rating),
                               ("consistency_loss", consistency), ("ordinal", rated.ordinal),
                               ("total", rated.total)):
                history[key].append(float(value.detach()))
    step_progress.update(1.0, "training done")
    return net.eval().to("cpu"), history

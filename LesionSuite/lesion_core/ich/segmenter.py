"""The 2.5D haemorrhage segmenter: a MONAI 2D ``UNet`` on a slice and its neighbours.

Input of slice ``s``: the windowed channels of slices ``s - context .. s + context``
(edge slices repeated), ``[N, C * (2 context + 1), H, W]``; output: one logit per pixel
(any haemorrhage; the subtype comes from the classifier). :func:`train_segmenter` learns
(through the training engine, :mod:`lesion_core.training`) from any masks ``[S, H, W]``
on the stack grid: the pseudo-masks of the weak pipeline, or
voxel labels in the separate fully supervised baseline (:mod:`lesion_core.ich.supervised`).
Loss: Dice + binary cross-entropy (MONAI ``DiceCELoss``, Dice over the whole batch so that
empty slices do not divide by zero).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..progress import Progress
from ..training import SampleContext, StepContext, TrainResult, autocast, run_training
from ..training.augment import Augmenter
from .augment import ct_augmenter, training_slices
from .config import ICHConfig, SegmenterTrainConfig
from .preprocess import SliceStack


#: Initial bias of the output convolution: sigmoid(-4.6) = 1 %, about how often a pixel
#: is blood. Started at 0 (probability 0.5 everywhere), the U-Net spent its first ~1000
#: steps pushing the background down and no pixel reached 0.5 after 600 steps (seeds
#: 0-15, validation 100000-100005); with the prior it segments after 200.
PRIOR_LOGIT = -4.6


def build_segmenter(config: ICHConfig = ICHConfig()) -> torch.nn.Module:
    """A fresh MONAI ``UNet`` (bundle name ``monai.UNet``, args
    ``config.segmenter.network_args(len(config.windows))``), output bias at the prior."""
    from monai.networks.nets import UNet

    net = UNet(**config.segmenter.network_args(len(config.windows)))
    # modules() runs in registration order, which ends with the top level's output layer.
    last = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
    if last.bias is not None:
        torch.nn.init.constant_(last.bias, PRIOR_LOGIT)
    return net


def context_input(image: torch.Tensor, slices: torch.Tensor | Sequence[int], context: int) -> torch.Tensor:
    """Slices ``slices`` of one stack ``[S, C, H, W]`` with their neighbours as channels:
    ``[N, C * (2 context + 1), H, W]``, neighbours ordered inferior to superior."""
    slices = torch.as_tensor(slices, dtype=torch.long)
    offsets = torch.arange(-context, context + 1)
    index = (slices[:, None] + offsets[None]).clamp(0, image.shape[0] - 1)   # [N, 2c+1]
    picked = image[index]                                                  # [N, 2c+1, C, H, W]
    return picked.reshape(picked.shape[0], -1, *picked.shape[-2:])


@torch.no_grad()
def segment_stack(net: torch.nn.Module, image: torch.Tensor, config: ICHConfig = ICHConfig(),
                  chunk: int = 16, precision: str = "auto") -> np.ndarray:
    """Haemorrhage probability ``float32 [S, H, W]`` of one stack ``[S, C, H, W]``; the
    network runs in bf16 autocast when ``precision`` resolves to bf16 on its device."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    try:
        for start in range(0, image.shape[0], chunk):
            idx = torch.arange(start, min(start + chunk, image.shape[0]))
            x = context_input(image, idx, config.segmenter.context).to(device)
            with autocast(precision, device):
                logits = net(x)
            out.append(torch.sigmoid(logits.float())[:, 0].cpu())
    finally:
        net.train(was_training)
    return torch.cat(out).numpy()


def _context_slices(stack: SliceStack, s: int, config: ICHConfig, augmenter: Augmenter | None,
                    rng: np.random.Generator) -> torch.Tensor:
    """Slice ``s`` with its neighbours as channels, ``[C * (2 context + 1), H, W]`` (the
    layout of :func:`context_input`), randomized in HU when ``augmenter`` is given."""
    c = config.segmenter.context
    index = np.clip(np.arange(s - c, s + c + 1), 0, stack.n_slices - 1)
    x = training_slices(stack, index, config.windows, augmenter, rng)
    return x.reshape(-1, *x.shape[-2:])


def train_segmenter(stacks: Sequence[SliceStack], masks: Sequence[np.ndarray],
                    config: ICHConfig = ICHConfig(),
                    train_config: SegmenterTrainConfig = SegmenterTrainConfig(),
                    progress: Progress | None = None, net: torch.nn.Module | None = None,
                    checkpoint_dir: str | Path | None = None,
                    ) -> tuple[torch.nn.Module, TrainResult]:
    """Train (or fine-tune ``net``) on stacks and masks ``[S, H, W]`` with the training
    engine (:func:`~lesion_core.training.run_training`; ``checkpoint_dir``: resumable).

    Each step draws ``optim.batch_size`` slices, ``positive_fraction`` of them from slices
    whose mask is not empty (haemorrhage is rare), randomized in HU
    (``train_config.augment``) and flipped left-right at random. Returns the network
    (eval mode, CPU) and the :class:`~lesion_core.training.TrainResult` (history
    ``{"loss"}``).
    """
    from monai.losses import DiceCELoss

    if len(stacks) != len(masks) or not stacks:
        raise ValueError("need the same, non-zero number of stacks and masks")
    for stack, mask in zip(stacks, masks):
        if tuple(np.shape(mask)) != tuple(stack.hu.shape):
            raise ValueError(f"mask shape {np.shape(mask)} does not fit stack {stack.hu.shape}")
    targets = [torch.as_tensor(np.asarray(m), dtype=torch.float32) for m in masks]
    every = [(n, s) for n, m in enumerate(targets) for s in range(m.shape[0])]
    positive = [(n, s) for n, s in every if targets[n][s].any()]
    batch_size = train_config.optim.batch_size
    n_pos = int(round(batch_size * train_config.positive_fraction)) if positive else 0
    augmenter = ct_augmenter(train_config.augment, config.grid)

    def sample(ctx: SampleContext):
        g = ctx.generator
        picks = [positive[i] for i in torch.randint(len(positive), (n_pos,), generator=g)] if n_pos else []
        picks += [every[i] for i in torch.randint(len(every), (batch_size - n_pos,), generator=g)]
        flip = torch.rand(len(picks), generator=g) < train_config.flip_probability
        x = torch.stack([_context_slices(stacks[n], s, config, augmenter, ctx.rng)
                         for n, s in picks])
        y = torch.stack([targets[n][s] for n, s in picks])[:, None]
        x[flip], y[flip] = x[flip].flip(-2), y[flip].flip(-2)  # H runs along R: a L-R mirror
        return x, y

    dice_ce = DiceCELoss(sigmoid=True, batch=True)

    def loss(network: torch.nn.Module, batch, ctx: StepContext) -> dict:
        x, y = batch
        return {"loss": dice_ce(network(x).float(), y)}

    return run_training(net if net is not None else (lambda: build_segmenter(config)),
                        sample, loss, train_config.optim, checkpoint_dir=checkpoint_dir,
                        progress=progress, label="segmenter",
                        fingerprint={"settings": asdict(train_config), "slices": len(every),
                                     "positive_slices": len(positive)})

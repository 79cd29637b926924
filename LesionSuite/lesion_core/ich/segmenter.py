"""The 2.5D haemorrhage segmenter: a MONAI 2D ``UNet`` on a slice and its neighbours.

Input of slice ``s``: the windowed channels of slices ``s - context .. s + context``
(edge slices repeated), ``[N, C * (2 context + 1), H, W]``; output: one logit per pixel
(any haemorrhage; the subtype comes from the classifier). :func:`train_segmenter` learns
from any masks ``[S, H, W]`` on the stack grid: the pseudo-masks of the weak pipeline, or
voxel labels in the separate fully supervised baseline (:mod:`lesion_core.ich.supervised`).
Loss: Dice + binary cross-entropy (MONAI ``DiceCELoss``, Dice over the whole batch so that
empty slices do not divide by zero).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..device import deterministic_algorithms, select_device
from ..progress import Progress, ensure_progress
from .config import ICHConfig, SegmenterTrainConfig


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
                  chunk: int = 16) -> np.ndarray:
    """Haemorrhage probability ``float32 [S, H, W]`` of one stack ``[S, C, H, W]``."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    try:
        for start in range(0, image.shape[0], chunk):
            idx = torch.arange(start, min(start + chunk, image.shape[0]))
            x = context_input(image, idx, config.segmenter.context).to(device)
            out.append(torch.sigmoid(net(x))[:, 0].float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(out).numpy()


def train_segmenter(images: Sequence[torch.Tensor], masks: Sequence[np.ndarray],
                    config: ICHConfig = ICHConfig(),
                    train_config: SegmenterTrainConfig = SegmenterTrainConfig(),
                    progress: Progress | None = None, net: torch.nn.Module | None = None,
                    ) -> tuple[torch.nn.Module, dict[str, list[float]]]:
    """Train (or fine-tune ``net``) on stacks ``[S, C, H, W]`` and masks ``[S, H, W]``.

    Each step draws ``batch_size`` slices, ``positive_fraction`` of them from slices whose
    mask is not empty (haemorrhage is rare), with a random left-right flip. Returns the
    network (eval mode, CPU) and the history ``{"loss": [...]}``.
    """
    from monai.losses import DiceCELoss

    progress = ensure_progress(progress)
    if len(images) != len(masks) or not images:
        raise ValueError("need the same, non-zero number of images and masks")
    for image, mask in zip(images, masks):
        if tuple(np.shape(mask)) != (image.shape[0],) + tuple(image.shape[2:]):
            raise ValueError(f"mask shape {np.shape(mask)} does not fit stack {tuple(image.shape)}")
    device = select_device(train_config.device)
    torch.manual_seed(train_config.seed)
    gen = torch.Generator().manual_seed(train_config.seed)
    targets = [torch.as_tensor(np.asarray(m), dtype=torch.float32) for m in masks]
    every = [(n, s) for n, m in enumerate(targets) for s in range(m.shape[0])]
    positive = [(n, s) for n, s in every if targets[n][s].any()]
    net = (net or build_segmenter(config)).to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=train_config.lr)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    history: dict[str, list[float]] = {"loss": []}
    n_pos = int(round(train_config.batch_size * train_config.positive_fraction)) if positive else 0
    with deterministic_algorithms(train_config.deterministic):
        for step in range(train_config.steps):
            progress.update(step / train_config.steps, f"segmenter step {step + 1}/{train_config.steps}")
            picks = [positive[i] for i in torch.randint(len(positive), (n_pos,), generator=gen)] if n_pos else []
            picks += [every[i] for i in torch.randint(len(every), (train_config.batch_size - n_pos,),
                                                     generator=gen)]
            x = torch.cat([context_input(images[n], [s], config.segmenter.context) for n, s in picks])
            y = torch.stack([targets[n][s] for n, s in picks])[:, None]
            flip = torch.rand(len(picks), generator=gen) < train_config.flip_probability
            x[flip], y[flip] = x[flip].flip(-2), y[flip].flip(-2)  # H runs along R: a L-R mirror
            loss = loss_fn(net(x.to(device)), y.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            history["loss"].append(float(loss.detach()))
    progress.update(1.0, "segmenter trained")
    return net.eval().to("cpu"), history

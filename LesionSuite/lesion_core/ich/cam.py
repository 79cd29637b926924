"""Grad-CAM per slice through the sequence model, normalised and thresholded.

For slice ``s`` and target class ``c`` (default "any"), with encoder maps ``A_s``
(``[F, h, w]``) and the slice's logit ``y_{s,c}``:

    alpha_s = d y_{s,c} / d v_s          (v_s = spatial mean of A_s, the GRU's input)
    CAM_s   = ReLU(sum_f alpha_{s,f} A_{s,f})

Because the encoder ends in global average pooling, this is exactly Grad-CAM (its channel
weights are the spatial mean of d y / d A, which is ``alpha / (h w)``, constant over the
map; the constant does not survive normalisation). The gradient runs through the
bidirectional GRU, so ``alpha_s`` depends on every other slice's features: the neighbours
decide which of slice ``s``'s features count as haemorrhage. Only the GRU and the head are
differentiated; the encoder runs once, without gradients. The ``alpha_s`` are the diagonal
blocks of the Jacobian of the logits by the GRU's input, and every logit depends on every
slice, so one backward pass of the summed logits would mix the slices. Instead
(:func:`slice_weights`) the sequence is repeated along the GRU's batch axis and copy
``k`` is differentiated through slice ``k``'s logit only: the batch rows do not interact,
so a single backward pass of the sum gives every ``alpha_s`` (in chunks of
:data:`COPIES_PER_PASS` copies, to bound the memory). It runs on one CPU thread: with two,
each of the GRU's small steps waits for the other thread, which made the pass 30-100x
slower while other jobs held the cores.

With ``CAMConfig.layer_stage`` the map is instead LayerCAM of an earlier encoder stage
(:func:`grad_cam`): the gradient of each slice's logit, from the same ``alpha_s``, runs
back through the later stages to that stage's finer maps and weighs them position by
position. The shipped classifier's 16 mm Grad-CAM cells cover a thin subdural and the
brain beside it alike; stage 2's 8 mm cells lifted the pseudo-masks' Dice on the
validation cohort (docs/ich.md).

Precision: the encoder (nearly all the arithmetic) runs in bf16 autocast when the
``precision`` asked for resolves to bf16; the GRU, the head and their gradients always
run in fp32. They cost little, and the weights ``alpha`` are gradients through a
recurrent network, which bf16's 8-bit mantissa would quantise (autocast itself works
there too, but only for the linear layers, so it would buy no speed).

Then (:func:`normalise_cam`): the map is upsampled bilinearly to the slice size, set to 0
on slices whose predicted probability is below ``min_probability``, divided by its
maximum (per slice or per scan) so it lies in [0, 1], and thresholded at ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..device import cpu_threads
from ..training import autocast
from .classifier import ICHSliceClassifier
from .config import CAMConfig, CLASSES


@dataclass
class CAMResult:
    """CAMs of one scan, on the stack grid.

    Attributes:
        cam: normalised map, ``float32 [S, H, W]`` in [0, 1].
        region: ``cam >= threshold``, ``bool [S, H, W]``.
        raw: un-normalised Grad-CAM (ReLU applied), ``float32 [S, H, W]``.
        probabilities: sigmoid of the slice logits, ``float32 [S, K]`` (``CLASSES`` order).
    """

    cam: np.ndarray
    region: np.ndarray
    raw: np.ndarray
    probabilities: np.ndarray


#: Copies of the slice sequence :func:`slice_weights` differentiates in one backward pass.
#: Each copy of each slice keeps ~200 floats for the backward pass (measured with the
#: default classifier), ~30 MB for 128 copies of 300 slices; on a CPU, 128 copies per pass
#: were faster than 64 or all at once.
COPIES_PER_PASS = 128


def slice_weights(model: ICHSliceClassifier, pooled: torch.Tensor, c: int,
                  copies: int = COPIES_PER_PASS) -> torch.Tensor:
    """Grad-CAM weights ``alpha [S, F]``: row ``s`` is ``d logit[s, c] / d pooled[s]``.

    Args:
        model: the classifier, in eval mode (dropout off: each copy must see the same net).
        pooled: one scan's pooled slice features ``[S, F]`` (fp32; not differentiated
            further back).
        c: class index of the logit.
        copies: sequence copies per backward pass (module notes).
    """
    n = pooled.shape[0]
    rows = []
    with cpu_threads(1):  # the GRU's hundreds of small steps: one thread (module notes)
        for start in range(0, n, copies):
            slices = torch.arange(start, min(start + copies, n), device=pooled.device)
            copy = torch.arange(len(slices), device=pooled.device)
            # Copy k of the sequence answers for slice start + k only.
            batch = pooled.detach()[None].repeat(len(slices), 1, 1).requires_grad_(True)
            picked = model.sequence_logits(batch)[copy, slices, c].sum()    # batch [B, S, F]
            grad, = torch.autograd.grad(picked, batch)
            rows.append(grad[copy, slices])
    return torch.cat(rows)


def grad_cam(model: ICHSliceClassifier, stack: torch.Tensor, target: int | str = "any",
             precision: str = "auto", layer_stage: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw class activation map of one scan: Grad-CAM of the encoder's last maps, or with
    ``layer_stage`` LayerCAM of an earlier stage's.

    LayerCAM (Jiang et al. 2021) weighs each position of the maps ``B_s`` after encoder
    stage ``k`` by the positive part of the slice logit's gradient there,
    ``ReLU(sum_f ReLU(d y_s / d B_{s,f}) B_{s,f})``: the finer cells of an earlier stage
    localise a haemorrhage better than the last stage's global channel weights (8 mm
    instead of 16 mm cells at stage 2). The gradient reaches ``B_s`` through the later
    stages from ``alpha_s`` (:func:`slice_weights`): each slice's maps feed only its own
    pooled features, so one backward pass through the later stages for all slices at once
    gives every ``d y_s / d B_s``.

    Args:
        model: the classifier (evaluated in eval mode; its mode is restored).
        stack: one scan's slices ``[S, C, H, W]``.
        target: class index or name of :data:`CLASSES`.
        precision: of the encoder (module notes); ``auto``, ``fp32`` or ``bf16``.
        layer_stage: ``None`` for Grad-CAM, else the encoder stage (1-based) of LayerCAM.

    Returns:
        ``(cam [S, H, W] >= 0, logits [S, K])``, both float32 on the CPU.
    """
    c = CLASSES.index(target) if isinstance(target, str) else int(target)
    stages = len(model.encoder)
    split = stages if layer_stage is None else int(layer_stage)
    if not 1 <= split <= stages:
        raise ValueError(f"layer_stage {layer_stage} is not an encoder stage (1-{stages})")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(precision, device):
            early = model.encoder[:split](stack.to(device))                # [S, F', h', w']
        early = early.float().requires_grad_(split < stages)
        with torch.enable_grad():
            with autocast(precision, device):
                maps = model.encoder[split:](early)                         # [S, F, h, w]
            maps = maps.float()
            pooled = maps.mean(dim=(-2, -1))                                # [S, F]
            alphas = slice_weights(model, pooled, c)                        # [S, F]
            if split < stages:
                size = maps.shape[-2] * maps.shape[-1]
                # The vector-Jacobian product with the weights as the gradient of one
                # scalar: the same numbers as grad_outputs=weights, without the 0.4 s
                # import (sympy) autograd makes the first time it checks a given one.
                weights = (alphas[:, :, None, None] / size).detach()
                grads, = torch.autograd.grad((maps * weights).sum(), early)
        with torch.no_grad():
            # The logits of the scan itself (batch of one), as the classifier gives them.
            logits = model.sequence_logits(pooled.detach()[None])[0]       # [S, K]
    finally:
        model.train(was_training)
    with torch.no_grad():
        if split < stages:
            cam = torch.relu((torch.relu(grads) * early.detach()).sum(dim=1))
        else:
            cam = torch.relu(torch.einsum("sf,sfhw->shw", alphas, maps.detach()))
        cam = F.interpolate(cam[:, None], size=tuple(stack.shape[-2:]), mode="bilinear",
                            align_corners=False)[:, 0]
    return cam.float().cpu(), logits.float().cpu()


def normalise_cam(raw: np.ndarray, probability: np.ndarray,
                  config: CAMConfig = CAMConfig()) -> np.ndarray:
    """Raw CAM ``[S, H, W]`` and the target's slice probabilities ``[S]`` -> [0, 1]."""
    cam = np.where(np.asarray(probability)[:, None, None] >= config.min_probability,
                   np.maximum(np.asarray(raw, np.float32), 0.0), 0.0)
    if config.normalise == "slice":
        peak = cam.max(axis=(1, 2), keepdims=True)
    else:
        peak = np.full((1, 1, 1), cam.max())
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype(np.float32)


def compute_cam(model: ICHSliceClassifier, stack: torch.Tensor,
                config: CAMConfig = CAMConfig(), precision: str = "auto") -> CAMResult:
    """CAM of ``config.target`` for one scan ``[S, C, H, W]`` (Grad-CAM, or LayerCAM of
    ``config.layer_stage``), normalised and thresholded (see the module notes)."""
    raw, logits = grad_cam(model, stack, config.target, precision, config.layer_stage)
    probabilities = torch.sigmoid(logits).numpy().astype(np.float32)
    cam = normalise_cam(raw.numpy(), probabilities[:, CLASSES.index(config.target)], config)
    return CAMResult(cam, cam >= config.threshold, raw.numpy(), probabilities)

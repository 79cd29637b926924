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
differentiated (one small backward pass per slice); the encoder runs once, without
gradients.

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


def grad_cam(model: ICHSliceClassifier, stack: torch.Tensor, target: int | str = "any",
             precision: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Raw Grad-CAM of one scan.

    Args:
        model: the classifier (evaluated in eval mode; its mode is restored).
        stack: one scan's slices ``[S, C, H, W]``.
        target: class index or name of :data:`CLASSES`.
        precision: of the encoder (module notes); ``auto``, ``fp32`` or ``bf16``.

    Returns:
        ``(cam [S, H, W] >= 0, logits [S, K])``, both float32 on the CPU.
    """
    c = CLASSES.index(target) if isinstance(target, str) else int(target)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(precision, device):
            maps = model.feature_maps(stack[None].to(device))[0]         # [S, F, h, w]
        maps = maps.float()
        with torch.enable_grad():
            pooled = maps.mean(dim=(-2, -1))[None].detach().requires_grad_(True)  # [1, S, F]
            logits = model.sequence_logits(pooled)[0]                       # [S, K]
            alphas = torch.stack([torch.autograd.grad(logits[s, c], pooled, retain_graph=True)[0][0, s]
                                  for s in range(logits.shape[0])])       # [S, F]
    finally:
        model.train(was_training)
    cam = torch.relu(torch.einsum("sf,sfhw->shw", alphas, maps))
    cam = F.interpolate(cam[:, None], size=tuple(stack.shape[-2:]), mode="bilinear",
                        align_corners=False)[:, 0]
    return cam.detach().float().cpu(), logits.detach().float().cpu()


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
    """Grad-CAM of ``config.target`` for one scan ``[S, C, H, W]``, normalised and
    thresholded (see the module notes)."""
    raw, logits = grad_cam(model, stack, config.target, precision)
    probabilities = torch.sigmoid(logits).numpy().astype(np.float32)
    cam = normalise_cam(raw.numpy(), probabilities[:, CLASSES.index(config.target)], config)
    return CAMResult(cam, cam >= config.threshold, raw.numpy(), probabilities)

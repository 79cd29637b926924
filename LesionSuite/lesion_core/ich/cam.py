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
            pooled = maps.mean(dim=(-2, -1))                                  # [S, F]
            alphas = slice_weights(model, pooled, c)                        # [S, F]
        with torch.no_grad():
            # The logits of the scan itself (batch of one), as the classifier gives them.
            logits = model.sequence_logits(pooled[None])[0]                 # [S, K]
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

"""Training inputs of ICHWeakSeg: CT slices randomized in HU, then windowed.

The acquisition randomization (:class:`~lesion_core.training.augment.Augmenter`, ranges in
:data:`~.config.CT_AUGMENT`) acts on the HU of the working grid before the windows, so a
HU offset or noise reaches every window channel consistently, as it would from another
scanner. The slices of one draw (a scan's run of slices, or a slice and its neighbours)
are the channels of one 2D image: they share one draw of every randomization (one
scanner per scan) and no transform mixes slices, so every slice label stays true.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..training.augment import AcquisitionAugment, Augmenter
from .config import SliceGrid, Window
from .preprocess import SliceStack, window_channels


def ct_augmenter(augment: AcquisitionAugment | None, grid: SliceGrid) -> Augmenter | None:
    """The augmenter for ``augment`` on the working grid (``None``: no randomization)."""
    return None if augment is None else Augmenter(augment, grid.pixel_mm)


def training_slices(stack: SliceStack, index: np.ndarray | Sequence[int],
                    windows: Sequence[Window], augmenter: Augmenter | None,
                    rng: np.random.Generator) -> torch.Tensor:
    """Slices ``index`` of ``stack`` as network input ``float32 [N, C, H, W]``: the
    stack's own windowed image without ``augmenter``, else its HU randomized (one draw
    from ``rng`` for all N slices) and windowed."""
    index = np.asarray(index, np.int64)
    if augmenter is None:
        return stack.windowed(index)
    hu = torch.from_numpy(np.ascontiguousarray(stack.hu[index]))
    # A trailing singleton axis makes the image 3D ([N, H, W, 1]): MONAI's low-resolution
    # transform upsamples trilinearly, which needs three spatial axes, and an axis of one
    # voxel cannot lose resolution, so the loss stays in-plane.
    return window_channels(augmenter(hu[..., None], rng)[..., 0], windows)

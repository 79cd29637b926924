"""The slice classifier with interslice context, and multiple-instance pooling.

``ICHSliceClassifier(x)`` with ``x`` a batch of slice stacks ``[B, S, C, H, W]``:

1. a 2D **encoder** (MONAI residual units, batch norm, strided) turns each slice into
   feature maps ``A_s`` of shape ``[F, h, w]`` (kept for the CAM);
2. global average pooling gives one vector ``v_s = mean_{h,w} A_s`` per slice;
3. a **bidirectional GRU** runs over ``v_1..v_S`` (the slice order inferior to
   superior), so each slice's state carries evidence from the slices above and below:
   a thin subdural seen better on the next slice, a bleed's extent, partial volume;
4. a linear layer gives per-slice logits ``[B, S, K]`` for :data:`~.config.CLASSES`
   ("any" haemorrhage, then the five subtypes).

``context=False`` swaps the GRU for a per-slice layer of the same width (ablation: the
same network without neighbours). Constructor arguments are plain JSON values so a model
bundle can rebuild the network (``"lesion_suite.ICHSliceClassifier"`` in the allow-list).

:func:`mil_pool` turns slice logits into scan logits for scan-level labels: a scan has
haemorrhage when at least one slice has (the multiple-instance assumption).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from monai.networks.blocks import ResidualUnit
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..networks import register_network


@register_network("lesion_suite.ICHSliceClassifier")
class ICHSliceClassifier(nn.Module):
    """2D slice encoder + bidirectional GRU over the slices -> per-slice logits.

    Args:
        in_channels: input channels per slice (one per HU window).
        n_classes: logits per slice (6: any + five subtypes).
        channels, strides: encoder stages (one residual unit each).
        gru_hidden, gru_layers: size of the GRU (per direction) and its depth.
        dropout: dropout before the linear head.
        context: ``False`` = no sequence model (each slice alone).
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 6,
                 channels: Sequence[int] = (16, 32, 64, 96), strides: Sequence[int] = (2, 2, 2, 1),
                 gru_hidden: int = 64, gru_layers: int = 1, dropout: float = 0.1,
                 context: bool = True):
        super().__init__()
        stages, previous = [], int(in_channels)
        for out, stride in zip(channels, strides):
            stages.append(ResidualUnit(2, previous, int(out), strides=int(stride), subunits=2,
                                       act="PRELU", norm="BATCH"))
            previous = int(out)
        self.encoder = nn.Sequential(*stages)
        self.n_features = previous
        self.context = bool(context)
        width = 2 * int(gru_hidden)
        if self.context:
            self.sequence = nn.GRU(previous, int(gru_hidden), num_layers=int(gru_layers),
                                   batch_first=True, bidirectional=True)
        else:
            self.sequence = nn.Sequential(nn.Linear(previous, width), nn.PReLU())
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(width, int(n_classes))

    def feature_maps(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder maps ``[B, S, F, h, w]`` of ``x`` ``[B, S, C, H, W]``; padded slices
        (beyond ``lengths``) are not encoded (they would bias the batch norm) and stay 0."""
        b, s = x.shape[:2]
        valid = _valid_mask(b, s, lengths, x.device)
        maps = self.encoder(x[valid])
        out = maps.new_zeros((b, s) + tuple(maps.shape[1:]))
        out[valid] = maps
        return out

    def sequence_logits(self, pooled: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Per-slice logits ``[B, S, K]`` from pooled slice features ``[B, S, F]``."""
        if not self.context:
            hidden = self.sequence(pooled)
        elif lengths is None:
            hidden = self.sequence(pooled)[0]
        else:
            # Packing keeps the backward direction from starting in the padding.
            packed = pack_padded_sequence(pooled, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            hidden = pad_packed_sequence(self.sequence(packed)[0], batch_first=True,
                                         total_length=pooled.shape[1])[0]
        return self.head(self.dropout(hidden))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, S, C, H, W]`` (or one stack ``[S, C, H, W]``) -> logits ``[B, S, K]``."""
        if x.ndim == 4:
            x = x[None]
        pooled = self.feature_maps(x, lengths).mean(dim=(-2, -1))
        return self.sequence_logits(pooled, lengths)


def _valid_mask(batch: int, slices: int, lengths: torch.Tensor | None, device) -> torch.Tensor:
    """``bool [B, S]``: True for real (not padded) slices."""
    if lengths is None:
        return torch.ones((batch, slices), dtype=torch.bool, device=device)
    return torch.arange(slices, device=device)[None] < lengths.to(device)[:, None]


def mil_pool(slice_logits: torch.Tensor, lengths: torch.Tensor | None = None,
             kind: str = "lse", r: float = 5.0) -> torch.Tensor:
    """Scan logits ``[B, K]`` from slice logits ``[B, S, K]`` (padding beyond ``lengths``
    ignored).

    ``"max"``: the most positive slice. ``"lse"``: ``(1/r) log(mean_s exp(r z_s))``, a
    smooth maximum that passes gradient to every slice in proportion to how positive it
    is (the max trains one slice per step) and lies between the mean (r -> 0) and the
    max (r -> inf).
    """
    b, s, _ = slice_logits.shape
    valid = _valid_mask(b, s, lengths, slice_logits.device)[..., None]
    masked = slice_logits.masked_fill(~valid, -math.inf)
    if kind == "max":
        return masked.max(dim=1).values
    if kind != "lse":
        raise ValueError(f"unknown pooling {kind!r}")
    count = valid.sum(dim=1).clamp(min=1).to(slice_logits.dtype)
    return (torch.logsumexp(r * masked, dim=1) - torch.log(count)) / r

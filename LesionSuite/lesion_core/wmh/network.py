"""The DualTasker network: a lesion activation map whose regional loads explain the rating.

``DualTaskerNet(image, regions)``:

- a MONAI ``UNet`` maps the normalised FLAIR ``[B, 1, I, J, K]`` to logits; a sigmoid gives
  the **activation** ``a(x)`` in [0, 1] per voxel (the WMH map; no voxel labels ever
  train it);
- the **regional load** of region-side ``r`` is ``L_r = sum_{x in r} a(x) g(x) v`` (mL, with
  ``v`` the working voxel volume) where ``g(x) = sigmoid((I(x) - gate_level) / gate_width)``
  is a soft FLAIR-hyperintensity gate on the normalised image ``I``: the soft volume of
  activated *and* hyperintense tissue, the same two conditions the published inference
  applies (activation high and FLAIR hyperintense), so training and inference agree. The
  gate also gives the weak rating signal a place to look: without it a ratings-only
  network can explain the ratings by spreading activation over the regions (it did, in
  our first runs: activation in lesions below the brain average, Dice 0);
- an **ordinal head** per region-side turns the load into a rating 0-3:
  ``P(rating_r > k) = sigmoid(s_r * (log(L_r + eps) - theta_{r,k}))`` for k = 0, 1, 2, with
  ``theta_{r,0} < theta_{r,1} < theta_{r,2}`` guaranteed by building them as a learnable
  base plus cumulative softplus steps, and ``s_r > 0`` (softplus). The expected rating is
  ``E_r = sum_k P(rating_r > k)`` (0-3, increasing in ``L_r``) and the total is
  ``sum_r E_r`` (0-30).

The only way to raise a predicted rating is to put activation into that region, which is
what makes the map a segmentation. Constructor arguments are plain JSON values so a model
bundle can rebuild the network from ``metadata.json``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..networks import register_network
from .config import N_LEVELS

#: Initial cut points of the ordinal head, regional load in mL: rating > 0 from ~0.1 mL
#: (a few foci of 5 mm), > 1 from ~1 mL (beginning confluence), > 2 from ~5 mL (diffuse).
INITIAL_CUTS_ML = (0.1, 1.0, 5.0)[:N_LEVELS]


def _inverse_softplus(y: float) -> float:
    return float(y + math.log(-math.expm1(-y)))


@register_network("lesion_suite.DualTaskerNet")
class DualTaskerNet(nn.Module):
    """WMH-DualTasker: activation map + ordinal ARWMC head (see the module notes).

    Args:
        features: channels per U-Net level (strides 2 between levels).
        res_units: residual units per U-Net block.
        n_regions: number of region-sides (10 for ARWMC).
        voxel_ml: volume of one input voxel (mL).
        load_eps_ml: added to the load before the log (mL).
        init_activation: activation everywhere at initialisation.
        gate_level, gate_width: the hyperintensity gate (normalised FLAIR units, where the
            brain median is 1); ``gate_width=0`` switches the gate off.
        norm: the U-Net's normalisation layers. Batch norm, not MONAI's default instance
            norm: with residual units the U-Net's last up-sampling layer instance-normalises
            its single output channel, so every image gets the same output distribution
            and a scan without lesions cannot have a uniformly low map (our first
            voxel-supervised reference saturated at its initial activation, 0.3).
    """

    def __init__(self, features: list[int] | tuple[int, ...] = (8, 16, 32, 64),
                 res_units: int = 2, n_regions: int = 10, voxel_ml: float = 0.027,
                 load_eps_ml: float = 0.05, init_activation: float = 0.002,
                 gate_level: float = 1.2, gate_width: float = 0.05, norm: str = "batch"):
        super().__init__()
        from monai.networks.nets import UNet

        features = tuple(int(f) for f in features)
        if len(features) < 2:
            raise ValueError("features needs at least two levels")
        if not 0.0 < init_activation < 1.0:
            raise ValueError("init_activation must be in (0, 1)")
        self.n_regions = int(n_regions)
        self.voxel_ml = float(voxel_ml)
        self.load_eps_ml = float(load_eps_ml)
        self.gate_level = float(gate_level)
        self.gate_width = float(gate_width)
        self.backbone = UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=features,
                             strides=(2,) * (len(features) - 1), num_res_units=int(res_units),
                             norm=norm)
        self.activation_bias = nn.Parameter(torch.tensor(math.log(init_activation /
                                                                  (1.0 - init_activation))))
        logs = [math.log(c + self.load_eps_ml) for c in INITIAL_CUTS_ML]
        self.cut_base = nn.Parameter(torch.full((self.n_regions,), logs[0]))
        steps = [_inverse_softplus(b - a) for a, b in zip(logs[:-1], logs[1:])]
        self.cut_steps = nn.Parameter(torch.tensor(steps).repeat(self.n_regions, 1))
        self.raw_slope = nn.Parameter(torch.full((self.n_regions,), _inverse_softplus(2.0)))

    # ------------------------------------------------------------------ parts
    def activation(self, image: torch.Tensor) -> torch.Tensor:
        """Activation map ``[B, 1, I, J, K]`` in [0, 1] of an image ``[B, 1, I, J, K]``,
        float32 even under bf16 autocast (only the U-Net runs in bf16: the regional loads
        sum ~10^5 voxels and the ordinal head takes their log)."""
        return torch.sigmoid(self.backbone(image).float() + self.activation_bias)

    def cut_points(self) -> torch.Tensor:
        """Ordered cut points ``theta`` ``[R, 3]`` (log mL), strictly increasing along k."""
        increments = torch.cat([self.cut_base[:, None], F.softplus(self.cut_steps)], dim=1)
        return torch.cumsum(increments, dim=1)

    def slopes(self) -> torch.Tensor:
        """Positive slopes ``s_r`` ``[R]``."""
        return F.softplus(self.raw_slope)

    def gate(self, image: torch.Tensor) -> torch.Tensor:
        """Soft hyperintensity gate ``[B, 1, I, J, K]`` in [0, 1] of the normalised image
        (all ones when ``gate_width`` is 0)."""
        if self.gate_width <= 0:
            return torch.ones_like(image)
        return torch.sigmoid((image - self.gate_level) / self.gate_width)

    def regional_loads(self, activation: torch.Tensor, regions: torch.Tensor,
                       gate: torch.Tensor | None = None) -> torch.Tensor:
        """Loads ``[B, R]`` (mL): activation ``[B, 1, I, J, K]`` (times ``gate`` when given)
        summed per region-side of ``regions`` ``[B, I, J, K]`` (0 = none, 1..R) times the
        voxel volume."""
        if gate is not None:
            activation = activation * gate
        act = activation.flatten(1)
        labels = regions.flatten(1)
        loads = [(act * (labels == r + 1).to(act.dtype)).sum(dim=1) for r in range(self.n_regions)]
        return torch.stack(loads, dim=1) * self.voxel_ml

    def rate(self, loads: torch.Tensor) -> dict[str, torch.Tensor]:
        """Ordinal head on loads ``[B, R]`` (mL): cumulative ``P(rating > k)`` ``[B, R, 3]``,
        expected ratings ``[B, R]`` and total ``[B]``."""
        log_load = torch.log(loads.clamp_min(0.0) + self.load_eps_ml)
        logits = self.slopes()[None, :, None] * (log_load[:, :, None] - self.cut_points()[None])
        cumulative = torch.sigmoid(logits)
        expected = cumulative.sum(dim=2)
        return {"cumulative_logits": logits, "cumulative": cumulative, "expected": expected,
                "total": expected.sum(dim=1)}

    def forward(self, image: torch.Tensor, regions: torch.Tensor,
                gate: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``image`` ``[B, 1, I, J, K]``, ``regions`` ``[B, I, J, K]`` int ->
        ``{"activation", "loads", "cumulative_logits", "cumulative", "expected", "total"}``.

        ``gate``: the hyperintensity gate to use (default ``self.gate(image)``). Training
        passes the gate of the *untransformed* image, moved by the spatial transform only:
        an intensity augmentation (x 1.15) must not decide which voxels count as
        hyperintense, or it would pull normal tissue into the loads."""
        if image.ndim != 5 or image.shape[1] != 1:
            raise ValueError(f"image must be [B, 1, I, J, K], got {tuple(image.shape)}")
        if regions.shape != image.shape[:1] + image.shape[2:]:
            raise ValueError(f"regions {tuple(regions.shape)} do not match image "
                             f"{tuple(image.shape)}")
        activation = self.activation(image)
        loads = self.regional_loads(activation, regions,
                                    self.gate(image) if gate is None else gate)
        return {"activation": activation, "loads": loads, **self.rate(loads)}


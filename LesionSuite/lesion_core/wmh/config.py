"""Typed configurations of WMH-DualTasker: the model (grid, network, thresholds) and training.

Lengths are in millimetres, volumes in millilitres. The working grid is RAS-aligned,
isotropic (``spacing_mm``) and has a fixed ``shape`` ``(I, J, K)`` centred on the brain;
tensors on it are ``[B, C, I, J, K]`` with ``i`` towards R, ``j`` towards A, ``k`` towards S.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..synth.arwmc import REGIONS

#: ARWMC ratings per region-side are 0..3, so the ordinal head has 3 cut points.
N_LEVELS = 3


@dataclass(frozen=True)
class SegmentThresholds:
    """The two thresholds of the published inference (voxel is WMH when both hold).

    Attributes:
        activation_percentile: percentile (0-100) of the activation within the brain.
        flair_percentile: percentile (0-100) of the normalised FLAIR within each brain.
        activation_level: the activation value that ``activation_percentile`` gave on the
            calibration set (pooled over its brains); when set it is used as a fixed level,
            so that subjects with little activation get few voxels. ``None``: the
            percentile is taken per image.
        flair_level: likewise for the FLAIR: the ``flair_percentile`` of the pooled,
            normalised calibration brains. A per-image percentile would hand a subject
            with 1 mL of lesions the same share of voxels as one with 50 mL.
    """

    activation_percentile: float = 97.0
    flair_percentile: float = 90.0
    activation_level: float | None = None
    flair_level: float | None = None


@dataclass(frozen=True)
class DualTaskerConfig:
    """The model: working grid, network size and inference thresholds.

    Attributes:
        spacing_mm: isotropic working voxel size (mm); 3 for tests, 2-2.5 for real models.
        shape: working grid ``(I, J, K)``; each must be divisible by 2**(len(features)-1).
        features: channels per U-Net level (MONAI ``UNet``); 4 levels of (8, 16, 32, 64)
            keep the model about 1.2 MB.
        res_units: residual units per U-Net block.
        norm: normalisation layers of the U-Net ("batch"; see the network's notes).
        load_eps_ml: added to regional loads (mL) before the log in the ordinal head.
        init_activation: activation everywhere at initialisation (0-1). With the gate,
            0.3 starts the loads near the middle of the rating scale, where the sigmoid
            still passes gradient (starting at 0.002 the map collapsed and never recovered).
        bias_sigma_mm: width (mm) of the bias-field correction (0 = off).
        gate_level, gate_width: soft FLAIR-hyperintensity gate of the regional loads
            (normalised units; see :mod:`lesion_core.wmh.network`). After the bias
            correction, on the synthetic cohort at 3 mm, about 78 % of lesion voxels and
            about 0.5 % of normal brain voxels lie above 1.25.
        normalisation_percentile: the FLAIR is divided by this percentile of its brain
            voxels (50 = median: normal-appearing tissue near 1, lesions above).
        thresholds: segmentation thresholds (replaced by calibrated ones after training).
    """

    spacing_mm: float = 3.0
    shape: tuple[int, int, int] = (64, 72, 64)
    features: tuple[int, ...] = (8, 16, 32, 64)
    res_units: int = 2
    norm: str = "batch"
    load_eps_ml: float = 0.05
    init_activation: float = 0.3
    normalisation_percentile: float = 50.0
    bias_sigma_mm: float = 20.0
    gate_level: float = 1.25
    gate_width: float = 0.05
    thresholds: SegmentThresholds = SegmentThresholds()
    regions: tuple[str, ...] = REGIONS

    def __post_init__(self) -> None:
        factor = 2 ** (len(self.features) - 1)
        if any(int(n) % factor for n in self.shape):
            raise ValueError(f"shape {self.shape} must be divisible by {factor} for "
                             f"{len(self.features)} U-Net levels")
        if self.spacing_mm <= 0:
            raise ValueError(f"spacing_mm must be positive, got {self.spacing_mm}")

    @property
    def voxel_ml(self) -> float:
        """Volume (mL) of one working voxel."""
        return float(self.spacing_mm) ** 3 / 1000.0

    def network_args(self) -> dict:
        """JSON-able keyword arguments of :class:`~lesion_core.wmh.network.DualTaskerNet`."""
        return {"features": [int(f) for f in self.features], "res_units": int(self.res_units),
                "n_regions": len(self.regions), "voxel_ml": self.voxel_ml,
                "load_eps_ml": float(self.load_eps_ml),
                "init_activation": float(self.init_activation),
                "gate_level": float(self.gate_level), "gate_width": float(self.gate_width),
                "norm": str(self.norm)}


@dataclass(frozen=True)
class IntensityAugment:
    """Ranges of the intensity transforms (the map must be invariant to them)."""

    gamma: tuple[float, float] = (0.8, 1.25)
    scale: tuple[float, float] = (0.85, 1.15)
    bias_log_rms: float = 0.1       # RMS of the log of the smooth multiplicative field
    noise_sd: float = 0.03          # Gaussian noise, in units of the normalised image


@dataclass(frozen=True)
class TrainConfig:
    """How to train from ratings.

    Attributes:
        steps: optimiser steps (one random batch and one random transform each).
        lr: Adam learning rate.
        batch_size: subjects per step.
        consistency_weight: lambda of the consistency term.
        total_weight: weight of the smooth-L1 total-score term (points of ARWMC).
        affine_probability: chance that a step's transform includes a small random
            affine (rotation <= ``max_rotation_deg``, scale within ``scale_range``).
        flip_probability: chance per axis of a flip.
        rating_on_transformed: also apply the rating loss to the transformed branch.
        freeze_rating_head: keep the ordinal head's cut points and slopes at their
            initial, volume-meaningful values (0.1 / 1 / 5 mL), so the only way to lower the
            rating loss is to move activation; a free head learns the rating distribution
            first and the map never has to explain anything (predicted totals collapse to
            the cohort mean).
        seed: seeds torch, the batch order and the transforms.
        device: "cpu", "cuda" or "auto".
        deterministic: ask torch for deterministic algorithms during training.
    """

    steps: int = 400
    lr: float = 3e-3
    batch_size: int = 4
    consistency_weight: float = 1.0
    total_weight: float = 0.5
    affine_probability: float = 0.5
    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    flip_probability: float = 0.5
    intensity: IntensityAugment = field(default_factory=IntensityAugment)
    rating_on_transformed: bool = True
    freeze_rating_head: bool = True
    seed: int = 0
    device: str = "cpu"
    deterministic: bool = True

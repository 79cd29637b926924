"""Typed configurations of WMH-DualTasker: the model (grid, network, thresholds) and training.

Lengths are in millimetres, volumes in millilitres. The working grid is RAS-aligned,
isotropic (``spacing_mm``) and has a fixed ``shape`` ``(I, J, K)`` centred on the brain;
tensors on it are ``[B, C, I, J, K]`` with ``i`` towards R, ``j`` towards A, ``k`` towards S.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from ..atlas.arwmc import REGIONS
from ..training.augment import AcquisitionAugment
from ..training.config import OptimConfig

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
        grow_activation_level, grow_flair_level: lower levels a lesion grows to
            (hysteresis, both or neither): the mask is every 26-connected component of
            brain voxels above both growth levels that holds a voxel above both levels
            above. The strict levels decide whether a lesion is there, the growth levels
            how far it reaches, so a lesion's faint rim is kept without the faint false
            positives elsewhere. ``None``: no growth.
    """

    activation_percentile: float = 97.0
    flair_percentile: float = 90.0
    activation_level: float | None = None
    flair_level: float | None = None
    grow_activation_level: float | None = None
    grow_flair_level: float | None = None

    def __post_init__(self) -> None:
        grow = (self.grow_activation_level, self.grow_flair_level)
        if (grow[0] is None) != (grow[1] is None):
            raise ValueError("give both growth levels or neither")
        if grow[0] is not None and (self.activation_level is None or self.flair_level is None):
            raise ValueError("growth levels need fixed activation and FLAIR levels")


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


#: Acquisition randomization of WMH training (FLAIR and T1 alike), applied to the
#: normalised working-grid image, which is then renormalised to brain median 1 as
#: preprocessing does at prediction (so a pure scale is a no-op and ``scale`` stays 1).
#: Why these ranges: the working grid is 3 mm, so thick slices start at 3 mm and reach
#: 6 mm (2D FLAIR with its gap); low resolution halves the grid at most (a 6 mm scan);
#: the bias field is weaker than the shared default because preprocessing already
#: divides out a 20 mm local-mean field, so only its residual reaches the network; noise
#: up to SD 0.08 of the brain median is an SNR of about 12, the low end of clinical
#: FLAIR; gamma 0.7-1.5 over the image's range makes the lesion/white-matter contrast
#: 0.8x-1.4x of the cohort's, and the histogram shift is rare because a strong one can
#: squeeze that contrast to nothing. Every transform keeps intensity order, so WMH
#: stay brighter than white matter on FLAIR (darker on T1).
WMH_ACQUISITION = AcquisitionAugment(
    bias_p=0.4, bias_coefficient=0.02, noise_p=0.6, noise_sd=0.08, rician_p=0.5,
    gamma_p=0.5, gamma=(0.7, 1.5), histogram_p=0.15, histogram_points=(5, 10),
    gibbs_p=0.2, gibbs_alpha=(0.0, 0.5), lowres_p=0.25, lowres_zoom=(0.5, 1.0),
    thick_p=0.3, thick_mm=(3.0, 6.0), scale=(1.0, 1.0))

#: Optimisation of a WMH network trained from scratch: Adam 3e-3 (the rate the first
#: shipped models were trained with), cosine decay to a tenth over the run, 4 subjects
#: per step (batch norm needs more than one), deterministic kernels.
WMH_OPTIM = OptimConfig(steps=400, lr=3e-3, schedule="cosine", min_lr_fraction=0.1,
                        batch_size=4, deterministic=True)


@dataclass(frozen=True)
class TrainConfig:
    """How to train a WMH network: optimisation (``optim``) and the task's own settings.

    Attributes:
        optim: steps, learning rate and schedule, subjects per step, seed, device,
            precision, checkpoint interval (:class:`~lesion_core.training.OptimConfig`).
        consistency_weight: lambda of the consistency term.
        total_weight: weight of the smooth-L1 total-score term (points of ARWMC).
        affine_probability: chance that a step's transform includes a small random
            affine (rotation <= ``max_rotation_deg``, scale within ``scale_range``).
        flip_probability: chance per axis of a flip.
        acquisition: acquisition randomization of the images the network is trained on
            (the transformed branch of the consistency pair, whose map must equal the
            moved map of the clean image; every image of the T1 mode).
        rating_on_transformed: also apply the rating loss to the transformed branch.
        freeze_rating_head: keep the ordinal head's cut points and slopes at their
            initial, volume-meaningful values (0.1 / 1 / 5 mL), so the only way to lower the
            rating loss is to move activation; a free head learns the rating distribution
            first and the map never has to explain anything (predicted totals collapse to
            the cohort mean).
        negative_weight: weight of the voxel negatives (regions rated 0 and everything
            outside the brain; :func:`~lesion_core.wmh.losses.localization_loss`).
        sparsity_weight: weight of the mean activation over the brain.
    """

    optim: OptimConfig = WMH_OPTIM
    consistency_weight: float = 1.0
    total_weight: float = 0.5
    affine_probability: float = 0.5
    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    flip_probability: float = 0.5
    acquisition: AcquisitionAugment = WMH_ACQUISITION
    rating_on_transformed: bool = True
    freeze_rating_head: bool = True
    negative_weight: float = 1.0
    sparsity_weight: float = 0.2


def task_fingerprint(config: DualTaskerConfig, train_config: TrainConfig,
                     subjects: Sequence[str], continued: bool) -> dict:
    """What decides a WMH training run's result besides its optimiser settings: the model
    configuration, the task's training settings, the subjects and whether it continues a
    given network. A checkpoint made with other values is refused (see
    :func:`lesion_core.training.run_training`)."""
    task = dataclasses.asdict(train_config)
    task.pop("optim")
    return {"model": dataclasses.asdict(config), "train": task, "subjects": list(subjects),
            "continued": bool(continued)}

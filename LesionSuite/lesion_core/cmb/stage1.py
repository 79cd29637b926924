"""Stage 1 of the CMB detector: a patch-trained 3D U-Net that finds candidate microbleeds.

Following SHIVA-CMB, the network sees the SWI / T2*-GRE magnitude on a 1 mm RAS grid,
normalised by the brain's 99th percentile (:func:`.candidates.preprocess_swi`). It is
trained on cubic patches (most centred near a microbleed or a mimic, so that the rare
positives and the hard negatives are both seen often) through the training engine
(:func:`lesion_core.training.run_training`), and applied to the whole brain with MONAI's
sliding-window inference. Its output is a probability map; the low threshold of
:class:`.candidates.CandidateConfig` turns it into candidates.

Layouts: volumes ``[i, j, k]`` along R, A, S at 1 mm; network input ``[N, 1, I, J, K]``,
output one logit channel ``[N, 1, I, J, K]`` (the probability is its sigmoid).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..baselines.masks import bounding_box
from ..progress import Progress
from ..training import OptimConfig, SampleContext, StepContext, TrainResult, autocast, run_training
from ..training.augment import AcquisitionAugment, Augmenter
from ..volume import Volume
from .candidates import CLIP_MAX, CandidateConfig, normalised_input
from .discriminator import weights_digest
from .hard_examples import HardExamplePools, hard_example_pools

STAGE1_NAME = "monai.UNet"


@dataclass(frozen=True)
class Stage1Config:
    """Architecture and inference of the stage 1 U-Net (saved in the bundle).

    Attributes:
        features: channels per U-Net level (the first is the full-resolution width).
        res_units: residual units per level.
        patch_size: edge (voxels = mm) of the cubic training patches (the scale the
            network has learnt; a fine-tune uses the same).
        inference_roi: edge (voxels) of the sliding-window tiles at inference.
        candidates: input grid, normalisation and candidate threshold.
    """

    features: tuple[int, ...] = (16, 32, 64)
    res_units: int = 1
    patch_size: int = 48
    inference_roi: int = 96
    candidates: CandidateConfig = field(default_factory=CandidateConfig)

    def network_args(self) -> dict[str, Any]:
        """JSON-able keyword arguments of the MONAI ``UNet``."""
        return {"spatial_dims": 3, "in_channels": 1, "out_channels": 1,
                "channels": [int(f) for f in self.features],
                "strides": [2] * (len(self.features) - 1),
                "num_res_units": int(self.res_units),
                # Batch norm: instance norm of the single output path would force every
                # patch, even one without a bleed, to have the same spread of logits.
                "norm": "batch"}


def swi_augment() -> AcquisitionAugment:
    """Acquisition randomization of stage 1 patches (normalised SWI / T2*-GRE magnitude,
    brain ~ 1, bleeds ~ 0.2-0.5, range [0, 1.5]).

    - bias field (p 0.5, up to the strong end of 3 T): SWI is often reconstructed without
      intensity correction, so multichannel-coil shading is common;
    - noise (p 0.6, SD up to 0.06, 70 % Rician): magnitude images have Rician noise, and
      a high-resolution SWI is noisy; 0.06 keeps a faint bleed's ~0.3 contrast visible;
    - gamma 0.75-1.35 (p 0.4): echo time, flip angle and the phase-mask weighting change
      the grey-white contrast, monotonically;
    - thick slices 1-3 mm (p 0.4): 3D SWI is acquired at 1-3 mm; thicker would erase the
      2 mm bleeds stage 1 must propose (2D T2*-GRE is thicker, and the cohort has it);
    - low resolution (p 0.15, zoom 0.6-1) and Gibbs ringing (p 0.1, alpha up to 0.3):
      coarser in-plane matrices and truncation at vessel edges;
    - scale 0.85-1.15: the brain percentile the image is divided by varies with the mask;
    - no histogram shift: it can squash the dark end where the bleeds are.
    """
    return AcquisitionAugment(bias_p=0.5, bias_coefficient=0.04, noise_p=0.6, noise_sd=0.06,
                              rician_p=0.7, gamma_p=0.4, gamma=(0.75, 1.35), histogram_p=0.0,
                              gibbs_p=0.1, gibbs_alpha=(0.0, 0.3), lowres_p=0.15,
                              lowres_zoom=(0.6, 1.0), thick_p=0.4, thick_mm=(1.0, 3.0),
                              scale=(0.85, 1.15))


@dataclass(frozen=True)
class Stage1TrainConfig:
    """How the stage 1 U-Net is trained (recorded in the training report, not the bundle).

    Attributes:
        positive_weight: cross-entropy weight of bleed voxels (:func:`stage1_loss`).
        near_cmb_fraction / near_mimic_fraction: share of patches centred within
            ``jitter_mm`` of a microbleed / a mimic voxel; the rest are anywhere in the brain.
        augment: acquisition randomization of each patch (:func:`swi_augment`), after
            random flips.
        hard_examples: centre the near-bleed and near-mimic patches by
            :mod:`.hard_examples` (bleeds the starting U-Net misses, places it fools)
            instead of uniformly over bleed / mimic voxels; needs a starting U-Net.
        hard_floor: share of each hard-example pool's weight spread uniformly.
        optim: steps, learning rate (cosine decay to 0), patches per step, seed, device,
            precision.
    """

    positive_weight: float = 500.0
    near_cmb_fraction: float = 0.5
    near_mimic_fraction: float = 0.25
    jitter_mm: float = 14.0
    augment: AcquisitionAugment = field(default_factory=swi_augment)
    hard_examples: bool = False
    hard_floor: float = 0.2
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        steps=1500, lr=4e-3, schedule="cosine", batch_size=4))


def build_stage1(config: Stage1Config = Stage1Config()) -> torch.nn.Module:
    """A freshly initialised stage 1 U-Net (logits out)."""
    from monai.networks.nets import UNet

    return UNet(**config.network_args())


@dataclass
class TrainingVolume:
    """One training image on the stage 1 grid (1 mm RAS), cropped to the head.

    ``image`` float32 normalised intensities; ``cmb``, ``mimics``, ``brain`` bool masks of
    the same shape ``[i, j, k]``; ``affine`` the voxel-to-RAS matrix of the crop.
    """

    image: np.ndarray
    cmb: np.ndarray
    mimics: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


def _on_grid(label: Volume | None, grid: Volume) -> np.ndarray:
    if label is None:
        return np.zeros(grid.shape, bool)
    as_int = Volume((np.asarray(label.array) > 0).astype(np.uint8), label.affine)
    return as_int.resample_to_grid(grid.affine, grid.shape, order=0, fill=0).array > 0


def training_volume(image: Volume, cmb: Volume, mimics: Volume | None = None,
                    config: CandidateConfig = CandidateConfig()) -> TrainingVolume:
    """Put an image and its truth (microbleed and mimic label maps, any grid) on the
    stage 1 grid. Reads ground truth: training data only."""
    pre, inside = normalised_input(image, config)
    cmb_mask, mimic_mask = _on_grid(cmb, pre), _on_grid(mimics, pre)
    # Crop to the brain plus the patch reach so the cohort fits in memory.
    box = tuple(slice(max(int(a.min()) - 24, 0), int(a.max()) + 25)
                for a in np.nonzero(inside | cmb_mask))
    affine = pre.affine.copy()
    affine[:3, 3] = pre.voxel_to_ras([s.start for s in box])
    return TrainingVolume(pre.array[box], cmb_mask[box], mimic_mask[box], inside[box], affine)


def _patch(array: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """``size``^3 crop whose centre voxel is ``centre``; zero outside the array."""
    out = np.zeros((size,) * 3, array.dtype)
    low = np.asarray(centre, int) - size // 2
    # A centre jittered past the edge may leave no overlap: an empty slice, not a wrap.
    src = tuple(slice(min(max(l, 0), n), max(min(l + size, n), 0))
                for l, n in zip(low, array.shape))
    dst = tuple(slice(s.start - l, s.stop - l) for s, l in zip(src, low))
    out[dst] = array[src]
    return out


class _VoxelList:
    """The voxels ``[n, 3]`` of one volume, drawn uniformly (the :class:`.hard_examples.
    WeightedPool` interface)."""

    def __init__(self, index: int, voxels: np.ndarray):
        self.index, self.voxels = index, voxels

    def __len__(self) -> int:
        return len(self.voxels)

    def draw(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        return self.index, self.voxels[rng.integers(len(self.voxels))]


class PatchSampler:
    """The engine's sample function for stage 1: batches ``(image, target)`` of
    ``[B, 1, P, P, P]`` patches from :class:`TrainingVolume` s (P = ``patch_size``), all
    randomness from the engine's NumPy generator. With ``pools`` the near-bleed and
    near-mimic centres come from them (:mod:`.hard_examples`)."""

    def __init__(self, volumes: Sequence[TrainingVolume], patch_size: int,
                 config: Stage1TrainConfig, spacing_mm: float = 1.0,
                 pools: HardExamplePools | None = None):
        self.volumes, self.patch_size, self.config = list(volumes), patch_size, config
        self.pools = pools
        self.cmb_voxels = [np.argwhere(v.cmb) for v in self.volumes]
        self.mimic_voxels = [np.argwhere(v.mimics) for v in self.volumes]
        self.brain_voxels = [np.argwhere(v.brain)[::7] for v in self.volumes]
        self.augmenter = Augmenter(config.augment, spacing_mm)

    def centre(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """A volume index and patch centre ``[i, j, k]``: within ``jitter_mm`` of a bleed
        or a mimic (by the shares of the config; uniformly over the drawn volume's voxels,
        or from the hard-example pools), else any brain voxel."""
        c = self.config
        index = int(rng.integers(len(self.volumes))) if self.pools is None else None
        near = ((self.pools.bleeds, self.pools.negatives) if self.pools is not None else
                (_VoxelList(index, self.cmb_voxels[index]),
                 _VoxelList(index, self.mimic_voxels[index])))
        u = rng.uniform()
        for share, pool in zip((c.near_cmb_fraction, c.near_mimic_fraction), near):
            if u < share and len(pool):
                jitter = rng.uniform(-c.jitter_mm, c.jitter_mm, 3)
                drawn, voxel = pool.draw(rng)
                return drawn, voxel + np.round(jitter).astype(int)
            u -= share
        if index is None:
            index = int(rng.integers(len(self.volumes)))
        pool = self.brain_voxels[index]
        return index, pool[rng.integers(len(pool))]

    def draw(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` patches and their bleed masks (float 0/1)."""
        size, images, targets = self.patch_size, [], []
        for _ in range(batch_size):
            index, centre = self.centre(rng)
            volume = self.volumes[index]
            image = _patch(volume.image, centre, size)
            target = _patch(volume.cmb, centre, size).astype(np.float32)
            flips = tuple(a for a in range(3) if rng.uniform() < 0.5)
            if flips:  # bleeds have no handedness: flips preserve the label
                image, target = np.flip(image, flips), np.flip(target, flips)
            tensor = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
            # Back to the range preprocessing gives, which is all inference ever sees.
            images.append(self.augmenter(tensor, rng).clamp_(0.0, CLIP_MAX))
            targets.append(torch.from_numpy(np.ascontiguousarray(target))[None])
        return torch.stack(images), torch.stack(targets)

    def __call__(self, ctx: SampleContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.draw(ctx.rng, ctx.batch_size)


def stage1_loss(logits: torch.Tensor, target: torch.Tensor, positive_weight: float
                ) -> torch.Tensor:
    """Dice (pooled over the batch, so a patch without a bleed does not divide by zero)
    plus binary cross-entropy with bleed voxels weighted ``positive_weight``.

    A bleed fills ~0.02 % of a 48^3 patch: unweighted cross-entropy (or focal loss) lets
    the network settle on "no bleed anywhere" for hundreds of steps, and Dice alone gives
    almost no gradient while the prediction is uniform. The weight makes a missed bleed
    voxel cost as much as hundreds of false background voxels, which is also the bias
    a high-sensitivity candidate stage wants.
    """
    from monai.losses import DiceLoss

    dice = DiceLoss(sigmoid=True, batch=True)(logits, target)
    weight = torch.tensor(float(positive_weight), device=logits.device)
    return dice + F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def train_stage1(volumes: Sequence[TrainingVolume], config: Stage1Config = Stage1Config(),
                 train: Stage1TrainConfig = Stage1TrainConfig(),
                 init: torch.nn.Module | None = None, checkpoint: str | Path | None = None,
                 progress: Progress | None = None, pools: HardExamplePools | None = None
                 ) -> tuple[torch.nn.Module, TrainResult]:
    """Train (or fine-tune ``init``, in place) the stage 1 U-Net of architecture
    ``config`` with :func:`stage1_loss` and ``train.optim`` (cosine decay by default).

    ``checkpoint``: this network's checkpoint folder (a rerun resumes). ``pools``: the
    hard-example pools of ``init`` when ``train.hard_examples`` (built here when None).
    Returns the network in eval mode on the CPU and the engine's :class:`TrainResult`.
    """
    if not volumes:
        raise ValueError("no training volumes")
    if train.hard_examples and pools is None:
        if init is None:
            raise ValueError("hard-example training needs a starting U-Net (init)")
        if progress is not None:
            progress.update(0.0, f"hard examples: stage 1 on {len(volumes)} training images")
        pools = hard_example_pools_of(init, volumes, config, train.hard_floor,
                                      train.optim.precision)
    sampler = PatchSampler(volumes, config.patch_size, train, config.candidates.spacing_mm,
                           pools)

    def loss(net: torch.nn.Module, batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        image, target = batch
        # Loss in fp32 whatever the autocast: the 500x weight and the Dice sums need it.
        return {"loss": stage1_loss(net(image).float(), target, train.positive_weight)}

    # A checkpoint must match the architecture, the sampling / loss / augmentation, the
    # training set (its volumes' shapes and bleed voxels) and the starting weights as well
    # as the optimiser.
    fingerprint = {"architecture": asdict(config),
                   "settings": {k: v for k, v in asdict(train).items() if k != "optim"},
                   "volumes": [[*v.image.shape, int(v.cmb.sum())] for v in volumes],
                   "init": weights_digest(init) if init is not None else None}
    return run_training(init if init is not None else (lambda: build_stage1(config)),
                        sampler, loss, train.optim, checkpoint_dir=checkpoint,
                        progress=progress, label="stage 1", fingerprint=fingerprint)


def hard_example_pools_of(net: torch.nn.Module, volumes: Sequence[TrainingVolume],
                          config: Stage1Config = Stage1Config(), floor: float = 0.2,
                          precision: str = "auto") -> HardExamplePools:
    """:func:`.hard_examples.hard_example_pools` of ``volumes`` from ``net``'s
    probability maps (:func:`stage1_probability` over each volume's brain)."""
    maps = (stage1_probability(net, Volume(tv.image, tv.affine), tv.brain, config,
                               precision).array for tv in volumes)
    return hard_example_pools(volumes, maps, floor)


def stage1_probability(net: torch.nn.Module, image: Volume, brain: np.ndarray,
                       config: Stage1Config = Stage1Config(), precision: str = "auto"
                       ) -> Volume:
    """Microbleed probability on the grid of ``image`` (the preprocessed 1 mm volume).

    Only the box around ``brain`` (bool, same grid) grown by 4 mm is run through the
    network, in ``inference_roi``^3 tiles with 25 % overlap blended by a Gaussian, under
    ``precision`` (``auto``: bf16 autocast where the hardware has it); voxels outside that
    box get 0.
    """
    from monai.inferers import sliding_window_inference

    probability = np.zeros(image.shape, np.float32)
    # The brain's bounding box grown by 4 mm (a dilated mask would cost a distance map).
    box = bounding_box(brain, np.ceil(4.0 / np.asarray(image.spacing)).astype(int))
    if box is None:
        return image.with_array(probability, kind="cmb_probability")
    tensor = torch.from_numpy(np.ascontiguousarray(image.array[box], np.float32))[None, None]
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        # 9 tiles per forward pass (a head's box is about 18: two passes): on 2 CPU cores
        # less than half the time of one tile per pass, the same values; ~0.5 GB more.
        with torch.no_grad(), autocast(precision, device):
            logits = sliding_window_inference(tensor.to(device), (config.inference_roi,) * 3, 9,
                                              net, overlap=0.25, mode="gaussian")
    finally:
        net.train(was_training)
    probability[box] = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
    return image.with_array(probability, kind="cmb_probability")

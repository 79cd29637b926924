"""Typed configurations of ICHWeakSeg: windows, slice grid, networks, CAM, refinement, training.

Units: Hounsfield units (HU) for intensities, millimetres for lengths, millilitres for
volumes. The working grid is a stack of axial slices on RAS-aligned axes (see
:mod:`lesion_core.ich.preprocess`); tensors on it are ``[S, C, H, W]`` with ``S`` the
axial slice (inferior to superior), ``H`` along R and ``W`` along A.

Per-slice outputs follow :data:`CLASSES`: index 0 is "any haemorrhage", then the five RSNA
subtypes in label-value order (:data:`lesion_core.labels.ICH_SUBTYPE_ORDER`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from ..jsonable import dataclass_from_json, json_safe
from ..labels import ICH_SUBTYPE_ORDER as SUBTYPES  # the five subtypes, label-value order
from ..training.augment import AcquisitionAugment
from ..training.config import OptimConfig

#: Per-slice classifier outputs: "any" haemorrhage first, then the subtypes.
CLASSES: tuple[str, ...] = ("any",) + SUBTYPES


@dataclass(frozen=True)
class Window:
    """A display window turned into one input channel: HU ``center +- width/2`` -> 0..1."""

    name: str
    center_hu: float
    width_hu: float

    def __post_init__(self) -> None:
        if self.width_hu <= 0:
            raise ValueError(f"window {self.name!r} needs a positive width")


#: Brain (blood stands out from grey/white matter), subdural (thin blood next to the
#: skull is not saturated by bone) and bone (fractures, calcification, skull partial volume).
DEFAULT_WINDOWS: tuple[Window, ...] = (Window("brain", 40.0, 80.0), Window("subdural", 80.0, 200.0),
                                       Window("bone", 600.0, 2800.0))


@dataclass(frozen=True)
class SliceGrid:
    """The axial working grid.

    Attributes:
        size: pixels per side in-plane (``H = W``); divisible by 8 for the U-Net.
        pixel_mm: in-plane pixel size (mm); 128 x 2 mm = 256 mm, a head CT field of view.
        slice_mm: a number resamples thinner CTs to slabs of this thickness (only when
            the CT's slices are thinner by 1.5x or more; slice labels then map many to
            one); ``None`` keeps the CT's own axial slices whatever their thickness.
            5 mm is the thickness head CT is read at: a 1 mm reconstruction (or a
            sagittal one, whose axial step is its in-plane pixel) would otherwise give
            the network ~180 thin, noisy slices that no 5 mm training scan resembles,
            and a whole-scan MIL step on them costs 5x more.
        min_slices: fewer axial slices are refused (the sequence model needs neighbours).
        head_hu: voxels above this (HU) are head; their centroid centres the field of view.
        skull_hu: bone threshold (HU) of the intracranial mask.
        brain_hu: a number moves every HU of the scan by one offset so that the median of
            its intracranial soft tissue (``soft_tissue_hu``) lands here. Scanners and
            reconstruction kernels differ in calibration by up to about 10 HU, which
            moves brain into the blood windows or blood out of them; brain parenchyma
            (mostly grey and white matter, ~30-35 HU in adults) is the reference every
            scan has. A 104 mL haemorrhage moved that median by 0.3 HU (measured against
            the same CT with the blood set to 30 HU). ``None`` keeps the HU as stored.
        soft_tissue_hu: the HU range (as stored) of the voxels whose median is measured.
    """

    size: int = 128
    pixel_mm: float = 2.0
    slice_mm: float | None = 5.0
    min_slices: int = 3
    head_hu: float = -300.0
    skull_hu: float = 300.0
    brain_hu: float | None = 32.0
    soft_tissue_hu: tuple[float, float] = (-20.0, 90.0)

    def __post_init__(self) -> None:
        if self.size % 8 or self.size < 16:
            raise ValueError(f"grid size {self.size} must be >= 16 and divisible by 8")
        if self.pixel_mm <= 0 or (self.slice_mm is not None and self.slice_mm <= 0):
            raise ValueError("pixel_mm and slice_mm must be positive")


@dataclass(frozen=True)
class ClassifierConfig:
    """The slice classifier (:class:`lesion_core.ich.classifier.ICHSliceClassifier`).

    Attributes:
        channels, strides: 2D encoder stages (MONAI residual units); the CAM has the
            resolution ``size / prod(strides)`` (16 x 16 on the default grid, 16 mm cells).
        gru_hidden, gru_layers: the bidirectional GRU over the slice sequence.
        dropout: before the per-slice linear head.
        context: ``False`` replaces the GRU by a per-slice layer of the same width.
        pooling: multiple-instance pooling of slice logits into scan logits: ``"lse"``
            (log-sum-exp, a smooth maximum) or ``"max"``.
        lse_r: sharpness of the log-sum-exp (large = max, small = mean).
    """

    channels: tuple[int, ...] = (16, 32, 64, 96)
    strides: tuple[int, ...] = (2, 2, 2, 1)
    gru_hidden: int = 64
    gru_layers: int = 1
    dropout: float = 0.1
    context: bool = True
    pooling: str = "lse"
    lse_r: float = 5.0

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.strides) or not self.channels:
            raise ValueError("channels and strides need the same, non-zero length")
        if self.pooling not in ("lse", "max"):
            raise ValueError(f"pooling must be 'lse' or 'max', got {self.pooling!r}")

    def network_args(self, in_channels: int) -> dict[str, Any]:
        """JSON-able keyword arguments of ``ICHSliceClassifier``."""
        return {"in_channels": int(in_channels), "n_classes": len(CLASSES),
                "channels": [int(c) for c in self.channels], "strides": [int(s) for s in self.strides],
                "gru_hidden": int(self.gru_hidden), "gru_layers": int(self.gru_layers),
                "dropout": float(self.dropout), "context": bool(self.context)}


@dataclass(frozen=True)
class CAMConfig:
    """Class activation maps (:mod:`lesion_core.ich.cam`).

    Attributes:
        target: the class (a name of :data:`CLASSES`) whose map is computed.
        min_probability: slices whose probability of ``target`` is below this get an
            all-zero map (the classifier says there is nothing to localise).
        normalise: ``"slice"`` divides each slice's map by its own maximum, ``"scan"`` by
            the scan's maximum (keeps weak slices weak).
        threshold: normalised CAM at or above this is the activated region.
        layer_stage: ``None``: Grad-CAM of the encoder's last maps (16 mm cells with the
            default classifier); ``k``: LayerCAM of the maps after encoder stage ``k``
            (1-based; 2 gives 8 mm cells), whose gradients run through the later stages,
            the pooling and the GRU (:func:`~lesion_core.ich.cam.grad_cam`).
    """

    target: str = "any"
    min_probability: float = 0.5
    normalise: str = "slice"
    threshold: float = 0.4
    layer_stage: int | None = None

    def __post_init__(self) -> None:
        if self.target not in CLASSES:
            raise ValueError(f"CAM target {self.target!r} is not one of {CLASSES}")
        if self.normalise not in ("slice", "scan"):
            raise ValueError("normalise must be 'slice' or 'scan'")
        if self.layer_stage is not None and int(self.layer_stage) < 1:
            raise ValueError("layer_stage counts encoder stages from 1")


@dataclass(frozen=True)
class RefineConfig:
    """Unsupervised refinement of the activated region into a pseudo-mask (HU, mm, mL).

    Attributes:
        region_margin_mm: the activated region is grown by this much first (a CAM cell is
            ~16 mm, coarser than a thin subdural).
        smooth_sigma_mm: Gaussian smoothing of the HU before clustering (noise).
        dense_hu, dense_margin_mm: denser is bone or calcification; voxels within the
            margin are its partial-volume edge (neither is blood).
        fit_range_hu: HU range of the voxels the mixture is fitted to (air, fat and dense
            voxels would only add components).
        init_means_hu, init_sd_hu: starting components of the 1-D Gaussian mixture:
            CSF/oedema, white matter, grey matter, blood.
        min_sd_hu: floor of a component's standard deviation (keeps EM from collapsing).
        blood_mean_hu: a component whose fitted mean lies in this range is blood; the
            lower end is replaced by ``median + blood_contrast_hu`` when that is set.
        blood_contrast_hu: blood components must lie this far above the median HU of the
            scan's intracranial voxels (within ``fit_range_hu``); ``None``: absolute range
            (see :mod:`lesion_core.ich.refine` for why and how it was chosen).
        blood_window_hu: an absolute window every kept voxel must also lie in.
        min_posterior: a voxel is blood when its blood posterior is at least this.
        opening_mm: in-plane opening radius (removes one-pixel partial-volume rims).
        min_volume_ml: smaller 3D components are dropped.
        min_fit_voxels: with fewer candidates the blood window alone decides.
    """

    region_margin_mm: float = 4.0
    smooth_sigma_mm: float = 1.0
    dense_hu: float = 120.0
    dense_margin_mm: float = 2.0
    fit_range_hu: tuple[float, float] = (-10.0, 120.0)
    init_means_hu: tuple[float, ...] = (10.0, 28.0, 40.0, 70.0)
    init_sd_hu: float = 10.0
    min_sd_hu: float = 3.0
    blood_mean_hu: tuple[float, float] = (48.0, 100.0)
    blood_contrast_hu: float | None = 10.0
    blood_window_hu: tuple[float, float] = (40.0, 100.0)
    min_posterior: float = 0.5
    opening_mm: float = 1.0
    min_volume_ml: float = 0.05
    min_fit_voxels: int = 30


@dataclass(frozen=True)
class GrowConfig:
    """Growth of the final mask into the connected blood around it (HU, mm), on the CT grid.

    The segmenter (trained on pseudo-masks that stop short of the haematoma's edge) finds
    the core of a bleed but under-covers it; the HU say where the blood goes on. Attributes:
        enabled: ``False`` keeps the segmenter's mask as it is.
        window_hu: smoothed HU, after the scan's calibration to ``SliceGrid.brain_hu``,
            that a grown voxel must lie in: from 12 HU above the brain median (grey matter
            reaches ~46, acute blood 50-90, subacute 40-60) up to blood that a thick slice
            averages with a little bone (each percent of bone adds ~15 HU).
        smooth_sigma_mm: in-plane Gaussian before the window (CT noise 3-9 HU).
        dense_hu, dense_margin_mm: denser voxels (bone, calcification) and this margin
            around them are never grown into; the margin is thin, as a subdural lies
            against the inner table. The window's top, ``dense_hu`` and the margin were
            chosen on 32 randomized validation subjects (``bench/ich_grow_tuning.py``):
            250 HU and 1 mm against 100 HU and 1.5 mm, Dice 0.567 -> 0.582, subdural and
            epidural subjects 0.545 -> 0.614, for 1.2 mL more on scans without blood.
        max_distance_mm: nothing further than this from the segmenter's mask is added.
        seed_probability: only components of the mask that hold a voxel of at least this
            segmenter probability are kept and grown (a hysteresis threshold, low end the
            segmenter's threshold): a false-positive seed on a mimic is grown too, and
            mimics rarely reach a confident probability. With 6 mm reach (was 0.5 and
            10 mm) chosen on 192 randomized validation scans, 33 without blood
            (``bench/ich_grow_tuning.py --family seeds``, 2026-12-05): Dice 0.521 ->
            0.549, 6.1 -> 2.0 mL per scan without blood. For a segmenter of its own,
            ``ich train --calibrate-seed-level`` sets it from validation image labels.
        inner_table_cam: where the class activation map reaches this value within
            ``inner_table_mm`` of bone, blood-like voxels (the window above, smoothed)
            seed growth too, on slices the classifier keeps: the segmenter learns from
            pseudo-masks that stay clear of bone, so it rarely seeds a thin subdural or
            epidural against the inner table (``None``: no such seeds).
        inner_table_mm: how far from bone (mm) those seeds may lie.
        inner_table_min_ml: smaller connected groups of such seeds are noise and dropped.
    """

    enabled: bool = True
    window_hu: tuple[float, float] = (44.0, 250.0)
    smooth_sigma_mm: float = 1.0
    dense_hu: float = 250.0
    dense_margin_mm: float = 1.0
    max_distance_mm: float = 6.0
    seed_probability: float = 0.98
    inner_table_cam: float | None = None
    inner_table_mm: float = 5.0
    inner_table_min_ml: float = 0.05


@dataclass(frozen=True)
class SubtypePlaceConfig:
    """Which subtypes a final component may be, by its place: the median distance (mm) of
    its voxels to bone (HU above ``SliceGrid.skull_hu``) on the CT grid.

    The classifier's subtype probabilities are per slice, so they cannot tell two bleeds
    on the same slices apart (an intraventricular bleed beside a subdural one was called
    subdural); the place can. Median distances on 160 randomized validation scans
    (seeds 100032-100191, model 2.0; 10th-90th percentiles): subdural 3.5-5.6 mm,
    epidural 4.0-6.2, subarachnoid 4.8-17.5, intraparenchymal 12-33, intraventricular
    31-48. So a component within ``extra_axial_mm`` may be subdural or epidural, one
    within ``deep_mm`` intraparenchymal or subarachnoid, one further intraventricular or
    intraparenchymal; the classifier picks among those. Named right there, of 193
    components on blood (and of their volume): classifier alone 0.35; limits 5 and
    20 mm 0.51 (0.51 of the volume); **7 and 20 mm 0.51 (0.66)**: a thick subdural's
    median reaches past 5 mm, so the wider limit names the large bleeds right.
    Beyond 20 mm the classifier still called nearly every bleed intraparenchymal: of the
    80 components there (48 intraventricular, 32 intraparenchymal) it named 12 right.
    Beyond ``ventricular_mm`` a component is taken as intraventricular: limits 30, 34,
    **36** and 40 mm name 66, 71, **71** (0.92 of their volume) and 62 right.

    Against the bone, the shape tells the two apart: an epidural is a lens, thick for its
    volume; a subdural a crescent, thin and spread. A component is epidural when its
    largest distance to bone (its thickness) is at least ``epidural_thickness_mm`` and
    thickness**3 / volume is at least ``epidural_compactness``. On the same 160 scans (59
    such components on blood: 37 subdural, 22 epidural; thickness 7-14 mm for subdurals,
    11-19 for epidurals; 10th-90th percentiles) the classifier named 39 right, the shape
    rule 53 (limits 10-11 mm and 0.05-0.06 gave 52-53).

    Attributes:
        enabled: ``False``: the classifier alone names the subtype (as before model 2.1).
        extra_axial_mm, deep_mm, ventricular_mm: the three distance limits.
        epidural_thickness_mm, epidural_compactness: the lens rule.
    """

    enabled: bool = True
    extra_axial_mm: float = 7.0
    deep_mm: float = 20.0
    ventricular_mm: float = 36.0
    epidural_thickness_mm: float = 11.0
    epidural_compactness: float = 0.05

    def candidates(self, distance_mm: float, thickness_mm: float = 0.0,
                   volume_ml: float = float("inf")) -> tuple[str, ...]:
        """The subtypes a component may be, from the median and the largest distance (mm)
        of its voxels to bone and its volume (mL)."""
        if distance_mm <= self.extra_axial_mm:
            lens = thickness_mm >= self.epidural_thickness_mm and (
                thickness_mm ** 3 / 1000.0 >= self.epidural_compactness * volume_ml)
            return ("epidural",) if lens else ("subdural",)
        if distance_mm <= self.deep_mm:
            return ("intraparenchymal", "subarachnoid")
        if distance_mm <= self.ventricular_mm:
            return ("intraventricular", "intraparenchymal")
        return ("intraventricular",)


@dataclass(frozen=True)
class SegmenterConfig:
    """The 2.5D segmenter: a MONAI 2D ``UNet`` on a slice and its neighbours.

    Attributes:
        context: neighbouring slices on each side given as extra channels (edge slices
            repeat), so the input has ``len(windows) * (2 * context + 1)`` channels.
        channels, num_res_units: U-Net levels (strides 2 between levels).
        threshold: probability at or above which a pixel is haemorrhage.
    """

    context: int = 1
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 2
    threshold: float = 0.5

    def network_args(self, n_windows: int) -> dict[str, Any]:
        """JSON-able keyword arguments of MONAI ``UNet`` (bundle name ``monai.UNet``)."""
        return {"spatial_dims": 2, "in_channels": int(n_windows * (2 * self.context + 1)),
                "out_channels": 1, "channels": [int(c) for c in self.channels],
                "strides": [2] * (len(self.channels) - 1),
                "num_res_units": int(self.num_res_units), "norm": "batch"}


@dataclass(frozen=True)
class ICHConfig:
    """The whole model: input windows and grid, networks, CAM and refinement."""
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    grid: SliceGrid = SliceGrid()
    classifier: ClassifierConfig = ClassifierConfig()
    cam: CAMConfig = CAMConfig()
    refine: RefineConfig = RefineConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    grow: GrowConfig = GrowConfig()
    subtype_place: SubtypePlaceConfig = SubtypePlaceConfig()

    def __post_init__(self) -> None:
        levels = 2 ** (len(self.segmenter.channels) - 1)
        if self.grid.size % levels:
            raise ValueError(f"grid size {self.grid.size} must be divisible by {levels}")


#: Training-time acquisition randomization for CT, applied to HU before windowing (so
#: every window channel sees the same scanner). Each scan (or slice with its neighbours)
#: is one image ``[slices, H, W]`` whose slices are channels: one draw per scan, and
#: nothing mixes slices, so a slice label stays true. Chosen for HU, not MR:
#: a bias field of 0.97-1.07 over the field of view (coefficient 0.01; multiplies HU,
#: i.e. acts about water: brain +-2 HU, blood +-5 HU, like residual cupping and scatter);
#: HU scale 0.97-1.03 and offset +-5 HU (calibration slope and offset between vendors);
#: Gaussian noise with an SD up to 6 HU on the 2 mm grid (dose; CT noise is not Rician);
#: in-plane low resolution (zoom 0.5-1: a softer kernel or a coarser matrix). No gamma,
#: histogram shift or Gibbs ringing: they would change what a HU value means, and blood
#: is recognised by its HU. No thick-slice blur across slices: slice labels are per
#: working slice, and blur would carry blood into slices labelled negative (the cohort
#: itself varies the slice thickness).
CT_AUGMENT = AcquisitionAugment(
    bias_p=0.4, bias_coefficient=0.01, noise_p=0.5, noise_sd=6.0, rician_p=0.0,
    gamma_p=0.0, histogram_p=0.0, gibbs_p=0.0, lowres_p=0.25, lowres_zoom=(0.5, 1.0),
    thick_p=0.0, scale=(0.97, 1.03), offset=(-5.0, 5.0))

#: Optimisation shared by both networks' defaults: Adam at 1e-3 (what the first shipped
#: model used, constant), now decaying along a cosine to 5 % so that long runs settle;
#: 20 warm-up steps keep the first updates of a fresh GRU small.
_OPTIM = OptimConfig(steps=300, lr=1e-3, schedule="warmup_cosine", warmup_steps=20,
                     min_lr_fraction=0.05, deterministic=True)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """How the classifier learns from image-level labels (task settings; the
    optimisation settings are ``optim``).

    Attributes:
        labels: ``"auto"`` uses slice labels where given and scan labels where given;
            ``"slice"`` only slice labels; ``"scan"`` only scan labels (multiple-instance
            learning through the pooling of :class:`ClassifierConfig`).
        max_slices: slice-labelled scans are cut to a random run of this many contiguous
            slices per step (memory); scan-labelled ones are always whole (the bleed may
            be anywhere). ``None``: always whole.
        scan_weight: weight of the scan-level (MIL) loss next to the slice loss.
        balance: weight positives by negatives/positives per class (capped at 10).
        flip_probability: chance of a left-right flip per scan and step.
        augment: acquisition randomization of each scan's HU (``None``: none).
        optim: steps, learning rate, batch size (scans per step), seed, device, precision.
    """

    labels: str = "auto"
    max_slices: int | None = 24
    scan_weight: float = 1.0
    balance: bool = True
    flip_probability: float = 0.5
    augment: AcquisitionAugment | None = CT_AUGMENT
    optim: OptimConfig = replace(_OPTIM, batch_size=2)

    def __post_init__(self) -> None:
        if self.labels not in ("auto", "slice", "scan"):
            raise ValueError("labels must be 'auto', 'slice' or 'scan'")


@dataclass(frozen=True)
class SegmenterTrainConfig:
    """How the segmenter learns from (pseudo-)masks: ``optim.batch_size`` slices per
    step, a ``positive_fraction`` of them drawn from slices whose mask is not empty, each
    flipped left-right with ``flip_probability`` and randomized by ``augment`` (HU of the
    slice and its neighbours; ``None``: none)."""

    positive_fraction: float = 0.5
    flip_probability: float = 0.5
    augment: AcquisitionAugment | None = CT_AUGMENT
    optim: OptimConfig = replace(_OPTIM, batch_size=8)
    #: Empty the target on slices and scans whose image-level label says "no haemorrhage"
    #: (what the CAM lit there is a mimic, and the segmenter should learn it as such).
    label_cleaning: bool = True
    #: Rounds of self-training after the first fit: the segmenter's own mask on each
    #: training stack, grown into the connected blood (``ICHConfig.grow``) and cleaned
    #: by the labels, united with the pseudo-mask, is the next target; each round
    #: continues from the current weights for ``optim.steps`` steps.
    self_training_rounds: int = 0
    #: The CAM the pseudo-masks are made from, whatever CAM the model shows
    #: (``CAMConfig.layer_stage``): ``None`` Grad-CAM of the classifier's last stage,
    #: ``k`` LayerCAM of stage ``k``. Stage 2's pseudo-masks are nearer the truth, but
    #: trained a worse segmenter (docs/ich.md, step 4).
    pseudo_mask_layer_stage: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The training stages of :func:`lesion_core.ich.train.train`."""
    classifier: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    segmenter: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)


def config_to_dict(config: ICHConfig) -> dict[str, Any]:
    """JSON form of an :class:`ICHConfig` (tuples become lists), for model bundles."""
    return json_safe(dataclasses.asdict(config))


def config_from_dict(data: dict[str, Any]) -> ICHConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise ``TypeError``."""
    data = dict(data)
    parts = {"grid": SliceGrid, "classifier": ClassifierConfig, "cam": CAMConfig,
             "refine": RefineConfig, "segmenter": SegmenterConfig, "grow": GrowConfig,
             "subtype_place": SubtypePlaceConfig}
    kwargs: dict[str, Any] = {k: dataclass_from_json(cls, data.pop(k))
                              for k, cls in parts.items() if k in data}
    if "windows" in data:
        kwargs["windows"] = tuple(Window(**w) for w in data.pop("windows"))
    if data:
        raise TypeError(f"unknown ICH configuration keys: {sorted(data)}")
    return ICHConfig(**kwargs)

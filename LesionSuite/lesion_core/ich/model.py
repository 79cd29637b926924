"""ICHWeakSeg models: the slice classifier and the segmenter in one bundle (saved by the
model itself, :class:`~lesion_core.tasks.TaskModel`; loaded by
:func:`lesion_core.tasks.load_model`).

An ICH bundle (task ``"ich"``, :mod:`lesion_core.bundle`: safetensors, allow-listed
classes, no pickle) holds two networks: ``"classifier"``
(``lesion_suite.ICHSliceClassifier``: per-slice probabilities, subtypes and the CAM) and
``"segmenter"`` (MONAI ``UNet``, the 2.5D segmenter trained on the pseudo-masks). A
segmentation-only bundle (the fully supervised low-data baseline of the benchmark) has no
classifier. ``extra["config"]`` holds the whole :class:`~.config.ICHConfig` (windows,
grid, networks, CAM, refinement) plus ``"thresholds"`` (:class:`ICHThresholds`) and
``"combination"`` (how the final mask is made, :data:`COMBINATIONS`), so prediction needs
nothing but the folder. The shipped default lives in ``Models/ich_weakseg_cam``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..bundle import BundleMetadata, NetworkSpec
from ..labels import ICH_SUBTYPES
from ..tasks import ModelCard, TaskModel, get_task, load_model
from .config import SUBTYPES, ICHConfig, config_from_dict, config_to_dict

#: The task's identity, declared once in :mod:`lesion_core.ich.task` (read here through the
#: registry): its bundle kind and shipped model folder.
_TASK = get_task("ich")
TASK = _TASK.name
DEFAULT_MODEL = _TASK.default_models[TASK]
#: The model card's description of a model trained from image-level labels.
DESCRIPTION = ("ICHWeakSeg: slice classifier with a bidirectional GRU (image-level labels), "
               "Grad-CAM refined in HU into pseudo-masks, 2.5D U-Net trained on them")
CLASSIFIER_NAME = "lesion_suite.ICHSliceClassifier"
SEGMENTER_NAME = "monai.UNet"
#: How the final mask is made: the segmenter's mask alone, or its union with the
#: pseudo-mask that CAM + HU refinement give on the scan itself (see
#: :mod:`lesion_core.ich.predict`).
COMBINATIONS = _TASK.combinations


@dataclass(frozen=True)
class ICHThresholds:
    """Decision thresholds on classifier probabilities (0-1).

    Attributes:
        slice: a CT slice is "haemorrhage present" when its any-ICH probability is at or
            above this.
        scan: the scan is positive when its multiple-instance pooled any-ICH probability
            is at or above this.
        subtypes: one per subtype (:data:`~.config.SUBTYPES` order): a subtype is named for
            a component, and for the scan, only when its probability reaches this.
    """

    slice: float = 0.5
    scan: float = 0.5
    subtypes: tuple[float, ...] = (0.5,) * len(SUBTYPES)

    def __post_init__(self) -> None:
        if len(self.subtypes) != len(SUBTYPES):
            raise ValueError(f"need {len(SUBTYPES)} subtype thresholds, got {len(self.subtypes)}")

    def as_dict(self, config: ICHConfig | None = None) -> dict[str, Any]:
        """JSON form; with ``config`` also the CAM and segmenter thresholds (for summaries)."""
        out: dict[str, Any] = {"slice": float(self.slice), "scan": float(self.scan),
                               "subtypes": dict(zip(SUBTYPES, map(float, self.subtypes)))}
        if config is not None:
            out["cam"] = float(config.cam.threshold)
            out["segmenter"] = float(config.segmenter.threshold)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ICHThresholds":
        subtypes = data.get("subtypes", cls.subtypes)
        if isinstance(subtypes, dict):
            subtypes = [subtypes[k] for k in SUBTYPES]
        return cls(float(data.get("slice", 0.5)), float(data.get("scan", 0.5)),
                   tuple(float(v) for v in subtypes))


@dataclass
class ICHModel(TaskModel):
    """An ICH model. ``classifier`` is ``None`` for a segmentation-only bundle;
    ``metadata`` is ``None`` for a model not saved yet (training evaluates it first), which
    has the ``card`` it will be saved with."""

    metadata: BundleMetadata | None
    classifier: torch.nn.Module | None
    segmenter: torch.nn.Module
    config: ICHConfig
    thresholds: ICHThresholds = field(default_factory=ICHThresholds)
    combination: str = "segmenter"
    card: ModelCard | None = None

    def bundle_contents(self, card: ModelCard) -> tuple[BundleMetadata, dict]:
        """The bundle of this model: ``segmenter`` and (when there is one) ``classifier``,
        and in ``extra["config"]`` the config, thresholds and combination."""
        config = self.config
        n_windows = len(config.windows)
        networks = {"segmenter": NetworkSpec(SEGMENTER_NAME,
                                             config.segmenter.network_args(n_windows))}
        modules = {"segmenter": self.segmenter}
        if self.classifier is not None:
            networks["classifier"] = NetworkSpec(CLASSIFIER_NAME,
                                                 config.classifier.network_args(n_windows))
            modules["classifier"] = self.classifier
        metadata = card.bundle_metadata(
            TASK, input_modality="CT",
            # Slices: the CT's own unless grid.slice_mm is set (the third entry is then
            # nominal).
            spacing_mm=(config.grid.pixel_mm, config.grid.pixel_mm,
                        config.grid.slice_mm or config.grid.pixel_mm),
            networks=networks,
            intensity_normalisation={"method": "HU windows to 0..1, one channel each",
                                     "windows": [dataclasses.asdict(w) for w in config.windows]},
            labels=list(ICH_SUBTYPES),
            extra={"config": model_config_dict(config, self.thresholds, self.combination)})
        return metadata, modules


def model_config_dict(config: ICHConfig, thresholds: ICHThresholds, combination: str) -> dict:
    """``extra["config"]`` of a bundle: the ICHConfig fields plus thresholds and combination."""
    if combination not in COMBINATIONS:
        raise ValueError(f"combination must be one of {COMBINATIONS}, got {combination!r}")
    return {**config_to_dict(config), "thresholds": thresholds.as_dict(),
            "combination": combination}


def model_from_bundle(loaded) -> ICHModel:
    """The :class:`ICHModel` of a verified bundle (see :func:`lesion_core.tasks.load_model`)."""
    data = dict(loaded.metadata.extra["config"])
    thresholds = ICHThresholds.from_dict(data.pop("thresholds", {}))
    combination = str(data.pop("combination", "segmenter"))
    if combination not in COMBINATIONS:
        raise ValueError(f"unknown combination {combination!r}")
    nets = loaded.networks
    return ICHModel(loaded.metadata, nets.get("classifier"), nets["segmenter"],
                    config_from_dict(data), thresholds, combination)


def load_ich_model(folder: str | Path | None = None,
                   device: str | torch.device | None = None) -> ICHModel:
    """Load an ICH bundle (default: the shipped one) through
    :func:`lesion_core.tasks.load_model`."""
    return load_model(_TASK, folder, device)


def save_ich_model(folder: str | Path, model: ICHModel, name: str = DEFAULT_MODEL,
                   version: str = "1.0", description: str = "", training: dict | None = None,
                   evaluation: dict | None = None, overwrite: bool = False) -> BundleMetadata:
    """Write ``model`` (its networks, config, thresholds and combination) as a bundle with
    the card these arguments make."""
    card = ModelCard(name, version, description, dict(training or {}), dict(evaluation or {}))
    return dataclasses.replace(model, card=card).save(folder, overwrite)

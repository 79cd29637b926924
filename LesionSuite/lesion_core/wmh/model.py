"""WMH models: the DualTasker (FLAIR, bundle kind ``"wmh"``) and the T1 mode (bundle kind
``"wmh_t1"``); a model saves itself (:class:`~lesion_core.tasks.TaskModel`) and is loaded by
:func:`lesion_core.tasks.load_model`.

A WMH bundle holds one network, ``"net"``, and in ``extra["config"]`` the full
:class:`~lesion_core.wmh.config.DualTaskerConfig` (working grid, normalisation, gate,
calibrated thresholds), so prediction needs nothing but the folder. The shipped defaults
live in ``Models/wmh_flair_dualtasker`` and ``Models/wmh_t1_thickslice``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..bundle import BundleMetadata, NetworkSpec
from ..jsonable import json_safe
from ..labels import WMH
from ..networks import name_of_network
from ..tasks import ModelCard, TaskModel, get_task, load_model
from .config import DualTaskerConfig, SegmentThresholds

#: The task's identity, declared once in :mod:`lesion_core.wmh.task` (read here through the
#: registry): its two bundle kinds, their modalities and shipped model folders.
_TASK = get_task("wmh")
FLAIR_TASK, T1_TASK = _TASK.bundle_kinds
MODALITY = dict(zip(_TASK.bundle_kinds, _TASK.modalities))
DEFAULT_MODELS = dict(_TASK.default_models)


def config_to_dict(config: DualTaskerConfig) -> dict[str, Any]:
    """JSON form of a config (tuples become lists)."""
    return json_safe(dataclasses.asdict(config))


def config_from_dict(data: dict[str, Any]) -> DualTaskerConfig:
    """Rebuild a config from :func:`config_to_dict` output (unknown keys are refused)."""
    data = dict(data)
    thresholds = SegmentThresholds(**data.pop("thresholds", {}))
    for key in ("shape", "features", "regions"):
        if key in data:
            data[key] = tuple(data[key])
    return DualTaskerConfig(thresholds=thresholds, **data)


@dataclass
class WMHModel(TaskModel):
    """A WMH model: its network (eval mode once loaded) and configuration, with the metadata
    it was loaded with (None until saved) or the card it will be saved with.

    ``kind``: :data:`FLAIR_TASK` (the DualTasker) or :data:`T1_TASK` (the T1 mode).
    """

    metadata: BundleMetadata | None
    net: torch.nn.Module
    config: DualTaskerConfig
    card: ModelCard | None = None
    kind: str = FLAIR_TASK

    @property
    def task(self) -> str:
        return self.kind

    @property
    def is_t1(self) -> bool:
        return self.kind == T1_TASK

    @property
    def modality(self) -> str:
        return MODALITY[self.kind]

    def bundle_contents(self, card: ModelCard) -> tuple[BundleMetadata, dict]:
        """The bundle of this model: one network, ``"net"``, and the whole configuration
        in ``extra["config"]``."""
        class_name = name_of_network(self.net)
        if class_name is None:
            raise ValueError(f"{type(self.net).__name__} is not an allow-listed network")
        config = self.config
        args = t1_network_args(config) if self.is_t1 else config.network_args()
        metadata = card.bundle_metadata(
            self.kind, input_modality=self.modality, spacing_mm=(config.spacing_mm,) * 3,
            networks={"net": NetworkSpec(class_name, args)},
            intensity_normalisation={"method": "divide by brain percentile, zero outside "
                                               "brain",
                                     "percentile": config.normalisation_percentile},
            labels=[WMH], extra={"config": config_to_dict(config)})
        return metadata, {"net": self.net}


def model_from_bundle(loaded) -> WMHModel:
    """The :class:`WMHModel` of a verified bundle (see :func:`lesion_core.tasks.load_model`)."""
    return WMHModel(loaded.metadata, loaded.networks["net"],
                    config_from_dict(loaded.metadata.extra["config"]),
                    kind=loaded.metadata.task)


def load_wmh_model(folder: str | Path | None = None, t1: bool = False,
                   device: str | torch.device | None = None) -> WMHModel:
    """Load a WMH bundle (default: the shipped one of the mode) through
    :func:`lesion_core.tasks.load_model`; a folder of any WMH mode is accepted."""
    return load_model(_TASK, folder, device, T1_TASK if t1 else FLAIR_TASK)


def save_wmh_model(folder: str | Path, net: torch.nn.Module, config: DualTaskerConfig,
                   t1: bool = False, name: str | None = None, version: str = "1.0",
                   description: str = "", training: dict | None = None,
                   evaluation: dict | None = None, overwrite: bool = False) -> BundleMetadata:
    """Write a WMH bundle (``net`` is the DualTaskerNet or the T1 U-Net)."""
    kind = T1_TASK if t1 else FLAIR_TASK
    card = ModelCard(name or DEFAULT_MODELS[kind], version, description, dict(training or {}),
                     dict(evaluation or {}))
    return WMHModel(None, net, config, card, kind).save(folder, overwrite=overwrite)


def t1_network_args(config: DualTaskerConfig) -> dict[str, Any]:
    """Arguments of the T1 mode's MONAI ``UNet`` (one channel in, one logit out)."""
    return {"spatial_dims": 3, "in_channels": 1, "out_channels": 1,
            "channels": [int(f) for f in config.features],
            "strides": [2] * (len(config.features) - 1), "num_res_units": int(config.res_units),
            "norm": str(config.norm)}


def build_t1_network(config: DualTaskerConfig) -> torch.nn.Module:
    """A fresh T1-mode U-Net (logits; the WMH probability is their sigmoid)."""
    from monai.networks.nets import UNet

    return UNet(**t1_network_args(config))

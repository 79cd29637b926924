"""WMH model bundles: the DualTasker (FLAIR, task ``"wmh"``) and the T1 mode (task
``"wmh_t1"``), saved and loaded through :mod:`lesion_core.bundle`.

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

from ..bundle import BundleMetadata, NetworkSpec, default_models_dir, load_bundle, save_bundle
from ..errors import ModelBundleError
from ..jsonable import json_safe
from ..labels import WMH
from ..networks import name_of_network
from .config import DualTaskerConfig, SegmentThresholds

FLAIR_TASK, T1_TASK = "wmh", "wmh_t1"
DEFAULT_MODELS = {FLAIR_TASK: "wmh_flair_dualtasker", T1_TASK: "wmh_t1_thickslice"}
MODALITY = {FLAIR_TASK: "FLAIR", T1_TASK: "T1"}


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
class WMHModel:
    """A loaded WMH model: its metadata, network (eval mode) and configuration."""

    metadata: BundleMetadata
    net: torch.nn.Module
    config: DualTaskerConfig

    @property
    def task(self) -> str:
        return self.metadata.task

    @property
    def is_t1(self) -> bool:
        return self.metadata.task == T1_TASK

    @property
    def modality(self) -> str:
        return self.metadata.input_modality

    @property
    def model_id(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version


def default_model_folder(t1: bool = False) -> Path:
    """The shipped model folder of a mode (it may be absent in a partial checkout)."""
    return default_models_dir() / DEFAULT_MODELS[T1_TASK if t1 else FLAIR_TASK]


def load_wmh_model(folder: str | Path | None = None, t1: bool = False,
                   device: str | torch.device | None = None) -> WMHModel:
    """Load a WMH bundle (default: the shipped one of the mode). Raises
    :class:`ModelBundleError` when the folder is not a WMH model."""
    folder = Path(folder) if folder is not None else default_model_folder(t1)
    loaded = load_bundle(folder, device=device)
    meta = loaded.metadata
    if meta.task not in (FLAIR_TASK, T1_TASK) or "net" not in loaded.networks:
        raise ModelBundleError(f"this is a {meta.task!r} model, not a WMH model",
                               "Choose a WMH model folder (task wmh or wmh_t1)", source=folder)
    try:
        config = config_from_dict(meta.extra["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelBundleError(f"the model's configuration is missing or invalid ({exc})",
                               "Re-copy the model folder or retrain it", source=folder) from exc
    return WMHModel(meta, loaded.networks["net"], config)


def save_wmh_model(folder: str | Path, net: torch.nn.Module, config: DualTaskerConfig,
                   t1: bool = False, name: str | None = None, version: str = "1.0",
                   description: str = "", training: dict | None = None,
                   evaluation: dict | None = None, overwrite: bool = False) -> BundleMetadata:
    """Write a WMH bundle (``net`` is the DualTaskerNet or the T1 U-Net)."""
    task = T1_TASK if t1 else FLAIR_TASK
    class_name = name_of_network(net)
    if class_name is None:
        raise ValueError(f"{type(net).__name__} is not an allow-listed network")
    args = config.network_args() if not t1 else t1_network_args(config)
    meta = BundleMetadata(
        name=name or DEFAULT_MODELS[task], task=task, version=version,
        input_modality=MODALITY[task], spacing_mm=(config.spacing_mm,) * 3,
        networks={"net": NetworkSpec(class_name, args)},
        intensity_normalisation={"method": "divide by brain percentile, zero outside brain",
                                 "percentile": config.normalisation_percentile},
        labels=[WMH], description=description, training=dict(training or {}),
        evaluation=dict(evaluation or {}), extra={"config": config_to_dict(config)})
    return save_bundle(folder, meta, {"net": net}, overwrite=overwrite)


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

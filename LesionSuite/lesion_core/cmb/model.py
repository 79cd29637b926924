"""CMB models: one bundle holding the three stages of the detector (saved by the model
itself, :class:`~lesion_core.tasks.TaskModel`; loaded by :func:`lesion_core.tasks.load_model`).

A CMB bundle (task ``"cmb"``) holds three networks, ``"stage1"`` (the candidate U-Net),
``"student"`` (the distilled discriminator that runs at prediction) and ``"teacher"``
(kept so that a retrain can distil again and the benchmark can compare the two), and in
``extra["config"]`` the :class:`CMBConfig`: the stage 1 architecture and candidate
threshold, the stage 2 threshold, the clean-up rules, and the sequences it was trained on.
The shipped default lives in ``Models/cmb_shiva_distilled``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..bundle import BundleMetadata, NetworkSpec
from ..errors import InvalidImageError
from ..jsonable import dataclass_from_json, json_safe
from ..labels import CMB
from ..tasks import ModelCard, TaskModel, get_task, load_model
from .candidates import CandidateConfig
from .cleanup import CleanupConfig
from .discriminator import (DEFAULT_STUDENT_CHANNELS, PATCH_SIZE, STUDENT_NAME, TEACHER_NAME,
                            student_args, teacher_args)
from .stage1 import STAGE1_NAME, Stage1Config

#: The task's identity, declared once in :mod:`lesion_core.cmb.task` (read here through the
#: registry): its bundle kind, shipped model folder and the sequences a CMB model can be
#: trained on (the magnitude image of each).
_TASK = get_task("cmb")
TASK = _TASK.name
DEFAULT_MODEL = _TASK.default_models[TASK]
SEQUENCES = _TASK.modalities
#: The model card's description of a CMB model trained from labelled images.
DESCRIPTION = ("SHIVA-CMB-style candidate U-Net, student discriminator distilled from a "
               "teacher, morphological clean-up")


@dataclass(frozen=True)
class CMBConfig:
    """Everything prediction needs besides the weights.

    Attributes:
        stage1: U-Net architecture, tiling and the candidate threshold
            (``stage1.candidates.threshold``, set for high sensitivity).
        stage2_threshold: student probability (flip-averaged) at or above which a
            candidate is kept.
        cleanup: the stage 3 rules.
        sequences: the sequences the model was trained on; others are refused unless the
            caller says otherwise.
        patch_size: edge (voxels at 1 mm) of the stage 2 patches.
        student_channels: widths of the student's strided stages (its architecture).
    """

    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2_threshold: float = 0.5
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    sequences: tuple[str, ...] = ("SWI",)
    patch_size: int = PATCH_SIZE
    student_channels: tuple[int, ...] = DEFAULT_STUDENT_CHANNELS


def config_to_dict(config: CMBConfig) -> dict[str, Any]:
    return json_safe(dataclasses.asdict(config))


#: Training settings that bundles saved before the training engine kept in
#: ``extra.config.stage1``; they say nothing about the architecture and are dropped.
LEGACY_TRAINING_KEYS = ("steps", "batch_size", "lr", "positive_weight", "seed",
                        "near_cmb_fraction", "near_mimic_fraction", "jitter_mm")


def config_from_dict(data: dict[str, Any]) -> CMBConfig:
    """Rebuild a :class:`CMBConfig` from :func:`config_to_dict` output (also that of a
    bundle saved with training settings in its stage 1 config)."""
    data = dict(data)
    stage1 = {k: v for k, v in dict(data.pop("stage1", {})).items()
              if k not in LEGACY_TRAINING_KEYS}
    candidates = CandidateConfig(**stage1.pop("candidates", {}))
    stage1["features"] = tuple(stage1.get("features", Stage1Config.features))
    return CMBConfig(stage1=Stage1Config(candidates=candidates, **stage1),
                     cleanup=dataclass_from_json(CleanupConfig, data.pop("cleanup", {})),
                     sequences=tuple(data.pop("sequences", ("SWI",))),
                     student_channels=tuple(data.pop("student_channels",
                                                     DEFAULT_STUDENT_CHANNELS)), **data)


@dataclass
class CMBModel(TaskModel):
    """A CMB model: the three networks (eval mode once loaded) and the config, with the
    metadata it was loaded with (None until saved: calibration runs it before) or the card
    it will be saved with. ``teacher`` is None when a bundle was saved without it."""

    metadata: BundleMetadata | None
    stage1: torch.nn.Module
    student: torch.nn.Module
    teacher: torch.nn.Module | None
    config: CMBConfig
    card: ModelCard | None = None

    def check_sequence(self, sequence: str, allow_other: bool = False, source=None) -> None:
        """Refuse an image of a sequence the model was not trained on (SWI vs T2*-GRE
        differ in blooming and contrast), unless ``allow_other``."""
        if sequence not in SEQUENCES:
            raise InvalidImageError(f"unknown CMB sequence {sequence!r}",
                                    f"give the sequence as one of {', '.join(SEQUENCES)}",
                                    source=source)
        if sequence not in self.config.sequences and not allow_other:
            raise InvalidImageError(
                f"the model {self.model_id} was trained on {', '.join(self.config.sequences)}"
                f" images, not {sequence}",
                "use a model trained on this sequence, or allow the mismatch explicitly "
                "(--allow-modality-mismatch) and review every result", source=source)

    def bundle_contents(self, card: ModelCard) -> tuple[BundleMetadata, dict]:
        """The bundle of this model: ``stage1``, ``student`` and (when there is one)
        ``teacher``, and the :class:`CMBConfig` in ``extra["config"]``."""
        config = self.config
        networks = {"stage1": NetworkSpec(STAGE1_NAME, config.stage1.network_args()),
                    "student": NetworkSpec(STUDENT_NAME, student_args(config.student_channels))}
        modules = {"stage1": self.stage1, "student": self.student}
        if self.teacher is not None:
            networks["teacher"] = NetworkSpec(TEACHER_NAME, teacher_args())
            modules["teacher"] = self.teacher
        candidates = config.stage1.candidates
        metadata = card.bundle_metadata(
            TASK, input_modality="/".join(config.sequences),
            spacing_mm=(candidates.spacing_mm,) * 3, networks=networks,
            intensity_normalisation={"method": "divide by brain percentile, clip",
                                     "percentile": candidates.normalisation_percentile},
            labels=[CMB], extra={"config": config_to_dict(config)})
        return metadata, modules


def model_from_bundle(loaded) -> CMBModel:
    """The :class:`CMBModel` of a verified bundle (see :func:`lesion_core.tasks.load_model`)."""
    nets = loaded.networks
    return CMBModel(loaded.metadata, nets["stage1"], nets["student"], nets.get("teacher"),
                    config_from_dict(loaded.metadata.extra["config"]))


def load_cmb_model(folder: str | Path | None = None,
                   device: str | torch.device | None = None) -> CMBModel:
    """Load a CMB bundle (default: the shipped one) through
    :func:`lesion_core.tasks.load_model`."""
    return load_model(_TASK, folder, device)


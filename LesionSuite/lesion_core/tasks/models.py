"""What every task's model shares: its card, saving itself, and the one bundle loader.

A task's model (``WMHModel``, ``CMBModel``, ``ICHModel``) is its networks in eval mode, its
configuration and either the :class:`~lesion_core.bundle.BundleMetadata` it was loaded
with or, for a model just trained (``fit`` / ``finetune``), the :class:`ModelCard` it will
be saved with. :class:`TaskModel` gives them ``model_id``, ``version`` and :meth:`save`;
each model says only how its networks and configuration become a bundle
(:meth:`TaskModel.bundle_contents`).

:func:`load_model` is the one way a model folder is loaded for a task: the folder's task is
checked before its weights are read (a task no registered task saves, or a model of another
task, is one clear error naming the folder and what to choose), then the bundle is verified
and loaded (:func:`lesion_core.bundle.load_bundle`), and a configuration the task cannot
rebuild is a :class:`~lesion_core.errors.ModelBundleError` too, never a ``KeyError`` from
deep inside.
Importing this module imports no torch; loading and saving do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelBundleError
from .registry import Task, bundle_kinds, get_task

if TYPE_CHECKING:  # torch is imported when a model is loaded or saved, not before
    from ..bundle import BundleMetadata


def next_version(version: str) -> str:
    """``"1.0"`` -> ``"1.1"``: a fine-tuned model keeps its name and major version."""
    major, _, minor = (version or "1.0").partition(".")
    return f"{major}.{int(minor or 0) + 1}" if (minor or "0").isdigit() else version + ".1"


@dataclass
class ModelCard:
    """What a saved model says about itself besides its networks and configuration.

    Attributes:
        name: the model's name (also its usual folder name).
        version: ``"1.0"`` for a new model; a fine-tune counts up (:func:`next_version`).
        description: one or two sentences on the method.
        training: how it was trained (data, settings, each run's steps, time and losses).
        evaluation: how it did (filled by an evaluation with ``--record``).
    """

    name: str
    version: str = "1.0"
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, metadata: "BundleMetadata") -> "ModelCard":
        """The card a loaded model was saved with."""
        return cls(metadata.name, metadata.version, metadata.description,
                   dict(metadata.training), dict(metadata.evaluation))

    def fine_tuned(self, training: dict[str, Any]) -> "ModelCard":
        """The card of a model fine-tuned from this one: same name and description, the
        next version, the fine-tune's ``training`` report and no evaluation yet."""
        return ModelCard(self.name, next_version(self.version), self.description, training)

    def bundle_metadata(self, task: str, **contents: Any) -> "BundleMetadata":
        """The bundle metadata of this card for bundle kind ``task`` (``contents``: the
        model's input modality, spacing, networks, normalisation, labels and extra)."""
        from ..bundle import BundleMetadata

        return BundleMetadata(name=self.name, task=task, version=self.version,
                              description=self.description, training=dict(self.training),
                              evaluation=dict(self.evaluation), **contents)


class TaskModel:
    """Mixed into each task's model dataclass, which has the fields ``metadata``
    (``BundleMetadata`` when loaded, None before it is saved) and ``card`` (the
    :class:`ModelCard` to save it with; None for a loaded model: its metadata's card)."""

    metadata: "BundleMetadata | None"
    card: ModelCard | None

    @property
    def model_id(self) -> str:
        """The model's name (``"unsaved"`` while it is still being trained)."""
        if self.metadata is not None:
            return self.metadata.name
        return self.card.name if self.card is not None else "unsaved"

    @property
    def version(self) -> str:
        if self.metadata is not None:
            return self.metadata.version
        return self.card.version if self.card is not None else ""

    def current_card(self) -> ModelCard:
        """The card this model is saved with: its own, else the one it was loaded with."""
        if self.card is not None:
            return self.card
        if self.metadata is None:
            raise ValueError("a model without metadata needs a card to be saved")
        return ModelCard.of(self.metadata)

    def bundle_contents(self, card: ModelCard) -> tuple["BundleMetadata", dict]:
        """The bundle metadata (from ``card``) and the networks by name (each task's model
        says how its networks and configuration are stored)."""
        raise NotImplementedError

    def save(self, folder: str | Path, overwrite: bool = False) -> "BundleMetadata":
        """Write this model and its card as a model folder (:func:`lesion_core.bundle.save_bundle`:
        an existing model is replaced only with ``overwrite``); returns the stored metadata."""
        from ..bundle import save_bundle

        metadata, networks = self.bundle_contents(self.current_card())
        return save_bundle(folder, metadata, networks, overwrite=overwrite)


def read_model_metadata(task: Task, folder: str | Path):
    """The metadata of a model folder of ``task`` (torch-free: before any weight is read).

    Raises:
        ModelBundleError: the folder is missing or incomplete, its metadata is invalid, or
            it holds a model of another task.
    """
    from ..bundle_metadata import read_metadata

    metadata = read_metadata(folder, known_tasks=bundle_kinds())
    if metadata.task not in task.bundle_kinds:
        raise ModelBundleError(
            f"this is a {metadata.task!r} model, not {task.article} {task.title} model",
            f"Choose {task.article} {task.title} model folder (task "
            f"{' or '.join(task.bundle_kinds)})", source=folder)
    return metadata


def load_model(task: Task | str, folder: str | Path | None = None, device=None,
               kind: str | None = None):
    """Load a model folder of ``task`` (a :class:`~.contract.Task` or its name).

    Args:
        folder: the model folder; None: the shipped model of ``kind``.
        device: where the networks go (a name, a ``torch.device``, or None for the CPU).
        kind: the bundle kind whose shipped model ``folder=None`` means (default: the
            task's first); a given folder may hold any kind of the task.

    Raises:
        ModelBundleError: the folder is missing, incomplete, altered, of another task, or
            its configuration cannot be rebuilt; the message names the folder and the fix.
    """
    from ..bundle import load_bundle

    task = get_task(task) if isinstance(task, str) else task
    folder = Path(folder) if folder is not None else task.default_model_folder(kind)
    read_model_metadata(task, folder)
    loaded = load_bundle(folder, device=device)
    missing = [name for name in task.required_networks if name not in loaded.networks]
    if missing:
        raise ModelBundleError(f"the model has no {', '.join(missing)} network",
                               "Re-copy the model folder or retrain it", source=folder)
    try:
        return task.model_from_bundle(loaded)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelBundleError(f"the model's configuration is missing or invalid ({exc})",
                               "Re-copy the model folder or retrain it", source=folder) from exc

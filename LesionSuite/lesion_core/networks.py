"""The allow-list of network classes that a model bundle may name.

A bundle's ``metadata.json`` names each network by a key of this registry (for example
``"monai.UNet"``) plus keyword arguments. The key is only ever looked up here: nothing
read from a file is imported or evaluated, so a bundle cannot make LesionSuite run code
that is not already part of it.

MONAI networks are listed by a fixed dotted path and imported on first use (importing
MONAI takes seconds). LesionSuite's own networks add themselves with
:func:`register_network`::

    @register_network("lesion_suite.CMBStudent")
    class CMBStudent(torch.nn.Module):
        ...

Project names start with ``lesion_suite.``; MONAI names with ``monai.``.

The arguments are checked against plausible bounds
(:func:`lesion_core.network_args.check_network_args`) before any network is built;
:mod:`lesion_core.bundle` then compares the parameters the arguments make with those the
weights file holds before any real tensor is allocated.
"""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

import torch

from .errors import ModelBundleError

#: MONAI classes allowed in bundles: registry name -> (module, class name). Fixed in code.
_MONAI_CLASSES: dict[str, tuple[str, str]] = {
    f"monai.{cls}": ("monai.networks.nets", cls)
    for cls in ("UNet", "BasicUNet", "BasicUNetPlusPlus", "DynUNet", "SegResNet",
                "AttentionUnet", "UNETR", "SwinUNETR", "FlexibleUNet", "DenseNet121",
                "DenseNet169", "ResNet", "EfficientNetBN", "Classifier", "Regressor")
}

_REGISTRY: dict[str, type[torch.nn.Module]] = {}

M = TypeVar("M", bound=type)


def register_network(name: str) -> Callable[[M], M]:
    """Class decorator that allows ``name`` in bundles for the decorated ``nn.Module``.

    Registering the same class twice under one name is harmless (module reloads);
    a different class under a taken name raises ``ValueError``.
    """
    if not name or name.startswith("monai."):
        raise ValueError(f"network name {name!r} is empty or uses the reserved 'monai.' prefix")

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise TypeError(f"{cls!r} is not a torch.nn.Module subclass")
        previous = _REGISTRY.get(name)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise ValueError(f"network name {name!r} is already taken by {previous!r}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def network_names() -> list[str]:
    """Every name a bundle may use, sorted."""
    return sorted(set(_REGISTRY) | set(_MONAI_CLASSES))


def get_network_class(name: str, source: str | None = None) -> type[torch.nn.Module]:
    """The class registered as ``name``; :class:`ModelBundleError` for any other name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, str) and name in _MONAI_CLASSES:
        module_name, class_name = _MONAI_CLASSES[name]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ModelBundleError(
                f"network class {name!r} is not available in the installed MONAI ({exc})",
                "Install the MONAI version listed in the LesionSuite requirements",
                source=source) from exc
        _REGISTRY[name] = cls
        return cls
    _import_project_networks()
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise ModelBundleError(
        f"network class {name!r} is not one LesionSuite allows",
        "Use a model folder made by this version of LesionSuite (allowed: "
        f"{', '.join(network_names())}), or update LesionSuite", source=source)


def name_of_network(module: torch.nn.Module) -> str | None:
    """The registry name of ``module``'s class, or ``None`` when it is not allowed."""
    cls = type(module)
    _import_project_networks()
    for name, registered in _REGISTRY.items():
        if registered is cls:
            return name
    for name, (_, class_name) in _MONAI_CLASSES.items():
        if class_name == cls.__name__ and cls.__module__.startswith("monai."):
            if get_network_class(name) is cls:
                return name
    return None


#: Project modules whose import registers networks with :func:`register_network`. They are
#: fixed names in code (never read from a file); add a task's network module here.
PROJECT_NETWORK_MODULES: tuple[str, ...] = ("lesion_core.wmh.network", "lesion_core.ich.classifier")


def _import_project_networks() -> None:
    """Import the project's network modules so that their classes are registered."""
    for module_name in PROJECT_NETWORK_MODULES:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a real missing dependency: do not hide it
                raise

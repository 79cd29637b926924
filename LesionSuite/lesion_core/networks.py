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

The arguments are checked against plausible bounds (:func:`check_network_args`) before
any network is built: a ``metadata.json`` edited by hand or damaged on a disk could
otherwise ask torch for a negative number of channels (an obscure RuntimeError) or for
200,000 of them (terabytes of memory). :mod:`lesion_core.bundle` then compares the
parameters the arguments make with those the weights file holds before any real tensor
is allocated.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable, TypeVar

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

#: Plausible whole-number ranges of constructor arguments, by argument name, whatever the
#: class (each integer of a list, or of a list of lists, counts). Far wider than any
#: LesionSuite model (16-128 channels, strides 1-2, kernels 3, 1-2 units per level), far
#: narrower than what exhausts a machine.
_CHANNELS = (1, 1024)
_STRIDES = (1, 8)
_KERNELS = (1, 15)
_COUNTS = (0, 64)
ARG_BOUNDS: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("channels", "features", "in_channels", "out_channels",
                     "n_input_channels", "block_inplanes", "classes", "num_classes",
                     "n_classes", "out_classes", "gru_hidden", "feature_size",
                     "init_filters", "filters", "init_features", "growth_rate", "bn_size",
                     "in_shape", "img_size"), _CHANNELS),
    **dict.fromkeys(("hidden_size", "mlp_dim"), (1, 8192)),  # transformers (UNETR)
    **dict.fromkeys(("strides", "stride", "conv1_t_stride", "upsample_kernel_size"),
                    _STRIDES),
    **dict.fromkeys(("kernel_size", "up_kernel_size", "conv1_t_size", "patch_size"),
                    _KERNELS),
    **dict.fromkeys(("num_res_units", "res_units", "layers", "gru_layers", "num_layers",
                     "blocks_down", "blocks_up", "depths", "num_heads", "n_regions",
                     "subunits"), _COUNTS),
    "spatial_dims": (1, 3),
}
#: Arguments that are a probability: 0 <= p < 1.
FRACTION_ARGS = ("dropout", "dropout_prob", "dropout_rate", "drop_rate", "attn_drop_rate",
                 "dropout_path_rate")
#: The longest list an argument may hold (levels of a U-Net, stages of a ResNet), and how
#: deep lists may nest (DynUNet: one kernel size list per level).
MAX_LIST_LENGTH = 16
MAX_LIST_DEPTH = 3
#: What to do about arguments out of bounds: they were never saved by LesionSuite.
CORRUPT_FIX = ("the model folder was altered or is corrupt: install it again (or copy the "
               "whole folder again), or re-train the model")

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


def check_network_args(net: str, class_name: str, args: dict[str, Any],
                       source: str | None = None) -> None:
    """Refuse constructor ``args`` outside plausible bounds before a network is built.

    Every number must be finite and every list at most :data:`MAX_LIST_LENGTH` long (nested
    at most :data:`MAX_LIST_DEPTH` deep); arguments named in :data:`ARG_BOUNDS` must be
    whole numbers in their range, those of :data:`FRACTION_ARGS` in [0, 1). ``None`` and
    text are left to the class. Each violation is one :class:`ModelBundleError` naming
    ``source`` (the ``metadata.json``) and the argument.
    """
    def bad(what: str) -> ModelBundleError:
        return ModelBundleError(f"network {net!r} ({class_name}) has {what}", CORRUPT_FIX,
                                source=source)

    for key, value in args.items():
        _check_value(key, value, bad)


def _check_value(key: str, value: Any, bad: Callable[[str], ModelBundleError],
                 depth: int = 0) -> None:
    """:func:`check_network_args` for one argument (``depth``: list nesting so far)."""
    if isinstance(value, dict):  # e.g. a norm's options: its own names, same rules
        for inner_key, inner in value.items():
            _check_value(str(inner_key), inner, bad, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_LENGTH:
            raise bad(f"{key} = a list of {len(value)} items (at most {MAX_LIST_LENGTH})")
        if depth >= MAX_LIST_DEPTH:
            raise bad(f"{key} = lists nested more than {MAX_LIST_DEPTH} deep")
        for item in value:
            _check_value(key, item, bad, depth + 1)
        return
    if value is None or isinstance(value, str):
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and not math.isfinite(value):
        raise bad(f"{key} = {value}, not a finite number")
    if key in ARG_BOUNDS:
        low, high = ARG_BOUNDS[key]
        if not (is_number and float(value).is_integer() and low <= value <= high):
            raise bad(f"{key} = {value!r}, outside the whole numbers {low}-{high}")
    elif key in FRACTION_ARGS:
        if not (is_number and 0 <= value < 1):
            raise bad(f"{key} = {value!r}, not a fraction from 0 to below 1")


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

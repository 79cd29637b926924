"""Model bundles: a folder with ``metadata.json`` and ``model.safetensors``.

``metadata.json`` says what the model is for (task, input modality, voxel spacing,
intensity normalisation, label names and codes), how it was made (training data, seeds,
command), how well it did (evaluation figures), and how to rebuild it: ``networks`` maps a
network name to ``{"class": <allow-listed name>, "args": {...}}``. One bundle may hold
several networks (the CMB model: candidate U-Net, student and teacher); their weights
share one safetensors file, each key prefixed by its network name (``"student.fc.weight"``).
The metadata is read and checked without torch (:mod:`lesion_core.bundle_metadata`).
The file's sha256 is kept in the metadata and checked before loading, classes come only
from the allow-list in :mod:`lesion_core.networks`, and weights are read with safetensors,
never with pickle. Field names follow the MONAI bundle ``metadata.json`` where they fit.

Where bundles live (the shipped ``Models`` folder, a user's own) is
:mod:`lesion_core.model_folders`.

This layer sits below the tasks and knows none: which ``task`` values are valid is the
task registry's word (:func:`lesion_core.tasks.bundle_kinds`), passed in as
``known_tasks`` by the readers that face a user (the task loader, the model lists).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch.overrides import TorchFunctionMode

from . import __version__
from .atomic import atomic_write, atomic_write_bytes
from .bundle_metadata import (FORMAT_VERSION, METADATA_FILE, WEIGHTS_FILE, BundleMetadata,
                              NetworkSpec, now_utc, read_metadata)
from .device import select_device
from .errors import ModelBundleError
from .network_args import CORRUPT_FIX
from .networks import get_network_class, name_of_network

@dataclass
class LoadedBundle:
    """A bundle ready for inference: its metadata and its networks in eval mode."""

    metadata: BundleMetadata
    networks: dict[str, torch.nn.Module]
    device: torch.device


def save_bundle(folder: str | Path, metadata: BundleMetadata,
                networks: dict[str, torch.nn.Module], overwrite: bool = False) -> BundleMetadata:
    """Write ``networks`` and ``metadata`` as a model folder; return the stored metadata.

    Each network (DDP / compiled wrappers are unwrapped) must be an instance of the class
    its spec names, and the spec's arguments must rebuild the same parameters, so a bundle
    that saves also loads. Weights are written first, then ``metadata.json`` with their
    checksum, both atomically; an existing bundle is replaced only with ``overwrite=True``.
    """
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    if set(networks) != set(metadata.networks):
        raise ModelBundleError(
            f"networks {sorted(networks)} do not match metadata networks "
            f"{sorted(metadata.networks)}", "Pass one module per network named in the "
            "metadata", source=folder)
    if meta_path.exists() and not overwrite:
        raise ModelBundleError("a model is already saved in this folder",
                               "Choose a new folder, or pass overwrite=True", source=folder)
    tensors: dict[str, torch.Tensor] = {}
    for net, module in networks.items():
        module = _unwrap(module)
        spec = metadata.networks[net]
        _check_rebuildable(net, spec, module, folder)
        for key, value in module.state_dict().items():
            tensors[f"{net}.{key}"] = value.detach().to("cpu").contiguous().clone()
    import monai
    from safetensors.torch import save_file

    stored = dataclasses.replace(metadata, lesion_suite_version=__version__,
                                 monai_version=monai.__version__,
                                 pytorch_version=torch.__version__.split("+")[0],
                                 created=now_utc(), format_version=FORMAT_VERSION)
    try:
        text = json.dumps(stored.to_dict(), indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ModelBundleError(f"the metadata cannot be stored as JSON ({exc})",
                               "Use only strings, numbers, lists and dicts in args, "
                               "training, evaluation and extra", source=folder) from exc
    stored = BundleMetadata.from_dict(json.loads(text), source=meta_path)  # validate first
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp),
                                                metadata={"format": "pt"}))
    stored.weights_sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    atomic_write_bytes(meta_path, json.dumps(stored.to_dict(), indent=2,
                                             ensure_ascii=False).encode("utf-8"))
    stored.folder = folder
    return stored


def record_evaluation(folder: str | Path, evaluation: dict[str, Any]) -> BundleMetadata:
    """Replace the ``evaluation`` entry of a saved bundle's metadata (e.g. the benchmark's
    figures after it ran), atomically; the weights and their checksum are untouched."""
    meta = read_metadata(folder)
    meta.evaluation = dict(evaluation)
    try:
        text = json.dumps(meta.to_dict(), indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ModelBundleError(f"the evaluation cannot be stored as JSON ({exc})",
                               "Pass only strings, numbers, lists and dicts",
                               source=folder) from exc
    atomic_write_bytes(Path(folder) / METADATA_FILE, text.encode("utf-8"))
    return read_metadata(folder)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain network inside DataParallel / DistributedDataParallel / torch.compile."""
    while True:
        if isinstance(module, (torch.nn.DataParallel,
                               torch.nn.parallel.DistributedDataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), torch.nn.Module):
            module = module._orig_mod
        else:
            return module


def _check_rebuildable(net: str, spec: NetworkSpec, module: torch.nn.Module,
                       folder: Path) -> None:
    """Refuse to save what :func:`load_bundle` could not rebuild."""
    actual = name_of_network(module)
    if actual != spec.class_name:
        raise ModelBundleError(
            f"network {net!r} is a {type(module).__name__} (allow-list name {actual}), but "
            f"the metadata says {spec.class_name!r}",
            "Set the metadata class to the network's registered name, or register the "
            "class with lesion_core.networks.register_network", source=folder)
    try:
        with _on_meta():
            rebuilt = _build(net, spec, folder)
    except (NotImplementedError, RuntimeError):  # a constructor that needs real tensors
        rebuilt = _build(net, spec, folder)
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        raise ModelBundleError(f"the arguments of network {net!r} rebuild a different "
                               "network", "Store the exact arguments the network was "
                               "built with", source=folder)


#: The in-place random fills of weight initialisation (``torch.nn.init``).
_RANDOM_FILLS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.bernoulli_,
                           torch.Tensor.exponential_, torch.Tensor.log_normal_,
                           torch.Tensor.cauchy_, torch.Tensor.geometric_, torch.Tensor.random_})


class _SkipRandomFills(TorchFunctionMode):
    """Inside, :data:`_RANDOM_FILLS` return their tensor untouched."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RANDOM_FILLS:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _on_meta() -> Iterator[None]:
    """Build networks on the ``meta`` device (shapes only: no memory, no init cost). The
    random fills of their initialisation are skipped: on ``meta`` they compute nothing, and
    the meta kernel of ``normal_`` imports TorchDynamo at its first call (~1 s)."""
    with torch.device("meta"), _SkipRandomFills():
        yield


def _build(net: str, spec: NetworkSpec, source: Path) -> torch.nn.Module:
    cls = get_network_class(spec.class_name, source=str(source))
    try:
        return cls(**spec.args)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise ModelBundleError(f"network {net!r} cannot be built from its arguments ({exc})",
                               "Re-copy the model folder or retrain the model",
                               source=source) from exc


def _check_size(net: str, spec: NetworkSpec, state: dict[str, torch.Tensor],
                folder: Path) -> None:
    """Refuse metadata whose network would not be the one the weights file holds, before
    its real tensors are allocated: the network is built on the ``meta`` device (shapes
    only, no memory) and its parameter count compared with the file's. A constructor that
    needs real tensors is skipped here (its arguments are bounded, and
    ``load_state_dict`` compares the shapes)."""
    # Imported outside the meta context: tensors a module makes when imported must be real.
    import monai.networks.nets  # noqa: F401  (what every allowed network builds on)

    get_network_class(spec.class_name, source=str(folder / METADATA_FILE))
    try:
        with _on_meta():
            shapes = {k: tuple(v.shape) for k, v in
                      _build(net, spec, folder / METADATA_FILE).state_dict().items()}
    except (NotImplementedError, RuntimeError):
        return
    described = sum(math.prod(s) for s in shapes.values())
    held = sum(v.numel() for v in state.values())
    if described != held:
        raise ModelBundleError(
            f"the weights of network {net!r} do not fit its architecture ({spec.class_name} "
            f"as described has {described:,} parameters, {WEIGHTS_FILE} holds {held:,})",
            CORRUPT_FIX, source=folder / METADATA_FILE)


def load_bundle(folder: str | Path, device: str | torch.device | None = None,
                only: Iterable[str] | None = None) -> LoadedBundle:
    """Verify, rebuild and load a model folder.

    Args:
        folder: the model folder.
        device: where to put the networks; ``None`` means CPU (pass
            :func:`lesion_core.device.select_device` for the GPU).
        only: load just these networks (e.g. the CMB student without its teacher).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    meta = read_metadata(folder)
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelBundleError("there is no model.safetensors in the model folder",
                               "Copy the whole model folder, or retrain the model",
                               source=folder)
    data = weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.weights_sha256:
        raise ModelBundleError("the weights do not match the checksum in metadata.json (the "
                               "file was changed or copied incompletely)",
                               "Re-copy the model folder or retrain the model", source=weights)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelBundleError(f"the weights file cannot be read ({exc})",
                               "Re-copy the model folder or retrain the model",
                               source=weights) from exc
    names = list(meta.networks) if only is None else list(only)
    unknown = [n for n in names if n not in meta.networks]
    if unknown:
        raise ModelBundleError(f"the model has no network {', '.join(unknown)}",
                               f"Choose from {', '.join(meta.networks)}", source=folder)
    stray = {k.split(".", 1)[0] for k in tensors} - set(meta.networks)
    if stray:
        raise ModelBundleError(f"the weights hold networks {sorted(stray)} that the metadata "
                               "does not describe", "Re-copy the model folder", source=weights)
    dev = select_device(device) if device is not None else torch.device("cpu")
    loaded: dict[str, torch.nn.Module] = {}
    for net in names:
        state = {k[len(net) + 1:]: v for k, v in tensors.items() if k.startswith(net + ".")}
        _check_size(net, meta.networks[net], state, folder)
        module = _build(net, meta.networks[net], folder / METADATA_FILE)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelBundleError(f"the weights of network {net!r} do not fit its "
                                   f"architecture ({str(exc).splitlines()[0]})",
                                   "Re-copy the model folder or retrain the model",
                                   source=weights) from exc
        loaded[net] = module.eval().to(dev)
    return LoadedBundle(meta, loaded, dev)


def list_bundles(root: str | Path, task: str | None = None,
                 problems: list[ModelBundleError] | None = None,
                 known_tasks: Iterable[str] | None = None) -> list[BundleMetadata]:
    """The models in the sub-folders of ``root`` (sorted by folder name).

    Folders with neither bundle file are ignored; a folder that looks like a model but
    cannot be read (or, with ``known_tasks``, is of another task) is skipped with a
    warning and its error appended to ``problems``. Weights are not hashed here (that
    happens in :func:`load_bundle`).
    """
    root = Path(root)
    found: list[BundleMetadata] = []
    for sub in sorted(root.iterdir()) if root.is_dir() else []:
        if not sub.is_dir() or sub.name.startswith(".") or not (
                (sub / METADATA_FILE).exists() or (sub / WEIGHTS_FILE).exists()):
            continue
        try:
            meta = read_metadata(sub, known_tasks=known_tasks)
            if not (sub / WEIGHTS_FILE).is_file():
                raise ModelBundleError("there is no model.safetensors in the model folder",
                                       "Copy the whole model folder", source=sub)
        except ModelBundleError as exc:
            warnings.warn(f"skipping model folder: {exc}", stacklevel=2)
            if problems is not None:
                problems.append(exc)
            continue
        if task is None or meta.task == task:
            found.append(meta)
    return found

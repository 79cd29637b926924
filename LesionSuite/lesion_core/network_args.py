"""Plausible bounds of the constructor arguments a model bundle names (torch-free).

A ``metadata.json`` edited by hand or damaged on a disk could otherwise ask torch for a
negative number of channels (an obscure RuntimeError) or for 200,000 of them (terabytes
of memory): :func:`check_network_args` refuses such arguments when the metadata is read,
before anything is built. It needs no torch, so a model folder's metadata can be read and
checked before torch is imported (the command line does, while torch loads on another
thread; the Slicer hub lists models before torch is installed).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .errors import ModelBundleError

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

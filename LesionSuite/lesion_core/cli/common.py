"""Helpers shared by the task commands (``cmb``, ``ich``): model and output options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import LesionSuiteError, ModelBundleError

T = TypeVar("T")


def model_options(parser: argparse.ArgumentParser) -> None:
    """``--model DIR`` (default: the shipped model) and ``--device``."""
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the shipped one)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default %(default)s)")


def shipped_or_given(folder: str | None, default_folder: Path, load: Callable[..., T],
                     device: str, what: str, command: str) -> T:
    """``load(folder, device=device)``; a missing shipped model (``folder`` None) is one
    clear error naming ``command``, the way to train one."""
    if folder is None and not default_folder.is_dir():
        raise ModelBundleError(f"the shipped {what} model is not installed",
                               f"pass --model DIR (a model trained with `{command}`)",
                               source=default_folder)
    return load(folder, device=device)


def refuse_saved_model(out: str, overwrite: bool, error: type[LesionSuiteError]) -> None:
    """Refuse to train into a folder that already holds a model (checked before the long
    run, not when saving after it), unless ``overwrite``."""
    if (Path(out) / "metadata.json").exists() and not overwrite:
        raise error("a model is already saved in this folder",
                    "choose a new --out folder, or add --overwrite", out)

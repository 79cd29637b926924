"""Helpers shared by the task commands (``wmh``, ``cmb``, ``ich``): model, output and
training options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from ..errors import LesionSuiteError, ModelBundleError

if TYPE_CHECKING:  # the CLI starts without importing torch
    from ..training import OptimConfig

T = TypeVar("T")


def model_options(parser: argparse.ArgumentParser) -> None:
    """``--model DIR`` (default: the shipped model), ``--device`` and ``--precision``."""
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the shipped one)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default %(default)s)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on GPUs and CPUs with bf16 units, else fp32")


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


def training_options(parser: argparse.ArgumentParser, steps_help: str = "optimiser steps"
                     ) -> None:
    """The optimisation options every ``train`` command shares (defaults: the task's own
    :class:`~lesion_core.training.OptimConfig`, applied by :func:`optim_config`)."""
    group = parser.add_argument_group("optimisation")
    group.add_argument("--steps", type=int, help=f"{steps_help} (default: the task's)")
    group.add_argument("--lr", type=float, help="peak learning rate (default: the task's)")
    group.add_argument("--batch-size", type=int, help="samples per step (default: the task's)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    group.add_argument("--device", default="auto",
                       help="auto, cpu, cuda, cuda:N or mps (default %(default)s)")
    group.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="auto: bf16 autocast on GPUs and CPUs with bf16 units, else fp32")
    group.add_argument("--checkpoint", metavar="DIR",
                       help="keep resumable checkpoints here; rerunning the same command "
                            "resumes from the last one")
    group.add_argument("--checkpoint-minutes", type=float, default=5.0,
                       help="minutes between checkpoints (default %(default)s)")


def optim_config(args: argparse.Namespace, defaults: "OptimConfig") -> "OptimConfig":
    """``defaults`` with what the command line of :func:`training_options` set."""
    from dataclasses import replace

    given = {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size}
    return replace(defaults, **{k: v for k, v in given.items() if v is not None},
                   seed=args.seed, device=args.device, precision=args.precision,
                   checkpoint_every_s=60.0 * args.checkpoint_minutes)

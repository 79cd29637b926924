"""The options every task command shares, and one policy for them.

* ``--device`` and ``--precision`` mean the same in every verb: where the networks run and
  in which precision (predict and evaluate: the model is loaded there; train: every network
  trains there, a model to start from is read on the CPU and moved). The device is checked
  before any long work starts, so a wrong name is one line, not a failure after minutes.
* ``--model DIR`` (predict, evaluate) and ``--init DIR`` (train) default to the shipped
  model; a missing shipped model is one clear error saying what to pass.
* ``train`` takes the optimisation options of :func:`training_options`, whose values
  (:class:`~lesion_core.tasks.TrainSettings`) each task applies onto its networks' own
  defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CommandError, ModelBundleError
from ..tasks import TrainSettings

if TYPE_CHECKING:  # the CLI starts without importing torch
    from ..tasks import Task
    from ..training import OptimConfig

PRECISIONS = ("auto", "fp32", "bf16")


def compute_options(parser) -> None:
    """``--device`` and ``--precision`` (a parser or an argument group)."""
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 autocast on GPUs and CPUs with bf16 units, else fp32")


def model_options(parser: argparse.ArgumentParser) -> None:
    """``--model DIR`` (default: the shipped model), ``--device`` and ``--precision``."""
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the shipped one)")
    compute_options(parser)


def training_options(parser: argparse.ArgumentParser, steps_help: str = "optimiser steps"
                     ) -> None:
    """The optimisation options every ``train`` command shares (defaults: the task's own
    :class:`~lesion_core.training.OptimConfig`, applied by :func:`optim_config`)."""
    group = parser.add_argument_group("optimisation")
    group.add_argument("--steps", type=int, help=f"{steps_help} (default: the task's)")
    group.add_argument("--lr", type=float, help="peak learning rate (default: the task's)")
    group.add_argument("--batch-size", type=int, help="samples per step (default: the task's)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    compute_options(group)
    group.add_argument("--checkpoint", metavar="DIR",
                       help="keep resumable checkpoints here; rerunning the same command "
                            "resumes from the last one")
    group.add_argument("--checkpoint-minutes", type=float, default=5.0,
                       help="minutes between checkpoints (default %(default)s)")


def optim_config(args: argparse.Namespace, defaults: "OptimConfig") -> "OptimConfig":
    """``defaults`` with what the command line of :func:`training_options` set."""
    return TrainSettings.from_args(args).optim(defaults)


def check_device(name: str):
    """The ``torch.device`` called ``name``; an unknown or absent device is one clear
    error (:class:`~lesion_core.device.DeviceError`)."""
    from ..device import select_device

    return select_device(name)


def check_device_now(name: str):
    """``name`` itself for ``auto`` and ``cpu``, which are always there (and need no torch
    yet: it may be imported on another thread); any other name checked now, as
    :func:`check_device`."""
    return name if name.strip().lower() in ("auto", "cpu") else check_device(name)


def check_steps(settings: TrainSettings) -> None:
    if settings.steps is not None and settings.steps < 1:
        raise CommandError(f"--steps {settings.steps} is not a positive number",
                           "give at least 1 step")


def refuse_saved_model(out: str, overwrite: bool) -> None:
    """Refuse to train into a folder that already holds a model (checked before the long
    run, not when saving after it), unless ``overwrite``."""
    if (Path(out) / "metadata.json").exists() and not overwrite:
        raise CommandError("a model is already saved in this folder",
                           "choose a new --out folder, or add --overwrite", out)


def check_model_folder(task: "Task", folder: str | None, kind: str, verb: str,
                       option: str = "--model") -> Path:
    """The folder of the model a command runs (``folder`` None: the shipped one of
    ``kind``), checked without torch, so that a wrong folder is one line at once.

    A missing shipped model is one clear error naming ``option`` and the command that
    trains one; a model of another kind of the task (WMH: FLAIR vs T1) is refused with the
    task's advice for ``verb``.
    """
    from ..tasks.models import read_model_metadata

    default = task.default_model_folder(kind)
    if folder is None and not default.is_dir():
        raise ModelBundleError(f"the shipped {task.kind_label(kind)} model is not installed",
                               f"pass {option} DIR (a model trained with `lesion-suite "
                               f"{task.name} train`)", source=default)
    path = Path(folder) if folder is not None else default
    have = read_model_metadata(task, path).task
    if have != kind:
        problem, fix = task.kind_mismatch(have, kind, verb)
        raise ModelBundleError(problem, fix, source=path)
    return path


def load_model(task: "Task", folder: str | None, device, kind: str, verb: str,
               option: str = "--model"):
    """The model a command runs, its folder checked first (:func:`check_model_folder`)."""
    return task.load_model(check_model_folder(task, folder, kind, verb, option),
                           device=device, kind=kind)

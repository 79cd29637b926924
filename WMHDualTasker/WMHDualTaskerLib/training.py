"""Fine-tuning the FLAIR DualTasker from a reader's ratings, in a child process.

The GUI's "Train from my ratings" runs ``lesion-suite wmh train --feedback STORE --init
MODEL --out NEW [--steps N]`` (through ``python -m lesion_core``, with machine-readable
progress lines) via :class:`LesionSuiteLib.child_process.ChildProcess`: training takes
minutes, must never run on the GUI thread, and Cancel must end the whole process tree.
The command reads the ratings with :func:`lesion_core.wmh.reader_ratings.rows_from_feedback`
(the images each case names in its ``case.json``) and writes a new model folder; the
model it started from is never changed.
"""

from __future__ import annotations

from pathlib import Path

from lesion_core.errors import LesionSuiteError, ModelBundleError
from LesionSuiteLib import user_folders
from LesionSuiteLib.child_process import (ChildProcess, child_env, device_arguments,
                                          lesion_core_command)


def training_command(feedback_root: str | Path, init_model: str | Path,
                     out_folder: str | Path, steps: int | None = None,
                     device: str | None = None, python: str | None = None) -> list[str]:
    """``[python, -m, lesion_core, --progress-lines, wmh, train, --feedback, STORE, --init,
    MODEL, --out, NEW(, --steps, N)(, --device, D)]``.

    ``python`` defaults to ``PythonSlicer`` inside Slicer. ``device`` is a torch device or
    its name; the command takes ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` becomes
    ``cuda``, anything else ``auto``); None leaves the command's default (``auto``).
    """
    args = ["--progress-lines", "wmh", "train", "--feedback", str(feedback_root),
            "--init", str(init_model), "--out", str(out_folder)]
    if steps:
        args += ["--steps", str(int(steps))]
    return lesion_core_command(args + device_arguments(device), python)


def start_training(feedback_root: str | Path, init_model: str | Path | None = None,
                   out_folder: str | Path | None = None, steps: int | None = None,
                   device: str | None = None) -> tuple[ChildProcess, Path]:
    """Start fine-tuning from the FLAIR ratings in ``feedback_root``.

    Args:
        init_model: the model to start from (default: the shipped FLAIR model).
        out_folder: where the new model goes (default: :func:`new_model_folder`).
        steps: training steps (default: the command's own).
        device: where to train (see :func:`training_command`).

    Returns:
        the running child and the folder the new model will be written to.

    Raises:
        LesionSuiteError: no FLAIR case of the store has a rating yet.
        ModelBundleError: the model to start from does not exist.
    """
    from lesion_core.wmh.model import default_model_folder
    from lesion_core.wmh.reader_ratings import rows_from_feedback

    if not rows_from_feedback(feedback_root, "FLAIR"):
        raise LesionSuiteError("no FLAIR case in the feedback folder has a rating yet",
                               "Rate at least one case in the FLAIR mode, then train",
                               source=feedback_root)
    init = Path(init_model) if init_model else default_model_folder(False)
    if not init.is_dir():
        raise ModelBundleError("the model to start from does not exist",
                               "Choose a FLAIR WMH model folder", source=init)
    out = Path(out_folder) if out_folder else new_model_folder()
    argv = training_command(feedback_root, init, out, steps, device)
    return ChildProcess(argv, env=child_env()), out


def default_feedback_root() -> Path:
    """Where the reader's ratings are kept unless the user picks another folder:
    ``feedback/wmh`` beside the user models folder (``~/.lesion-suite`` by default)."""
    return user_folders.default_feedback_root("wmh")


def new_model_folder(base: str | Path | None = None) -> Path:
    """A new, not yet existing folder ``wmh_flair_reader_<date-time>`` for a fine-tuned
    model, in ``base`` (default: the user models folder, where the hub lists models)."""
    return user_folders.new_model_folder("wmh_flair_reader", base)

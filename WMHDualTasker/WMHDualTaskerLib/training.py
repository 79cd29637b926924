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

import os
from datetime import datetime
from pathlib import Path

from lesion_core.errors import LesionSuiteError, ModelBundleError
from LesionSuiteLib.child_process import ChildProcess, lesion_core_command


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
    if device is not None:
        kind = str(device).split(":", 1)[0].strip().lower()
        args += ["--device", kind if kind in ("auto", "cpu", "cuda") else "auto"]
    return lesion_core_command(args, python)


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
    from lesion_core.bundle import user_models_dir

    return Path(user_models_dir()).parent / "feedback" / "wmh"


def new_model_folder(base: str | Path | None = None) -> Path:
    """A new, not yet existing folder for a fine-tuned model, named by date and time,
    in ``base`` (default: the user models folder, where the hub lists models)."""
    from lesion_core.bundle import user_models_dir

    base = Path(base) if base else Path(user_models_dir())
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = base / f"wmh_flair_reader_{stamp}", 1
    while folder.exists():
        n += 1
        folder = base / f"wmh_flair_reader_{stamp}-{n}"
    return folder


def child_env() -> dict[str, str]:
    """``PYTHONPATH`` for child processes, so that they import this ``lesion_core``
    (Slicer's ``PythonSlicer`` does not put the extension's module folders on its path)."""
    import lesion_core

    root = str(Path(lesion_core.__file__).resolve().parent.parent)
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}

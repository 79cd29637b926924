"""Retraining the CMB detector from a reader's decisions, in a child process.

The GUI's "Retrain from my decisions" runs ``lesion-suite cmb train --feedback STORE --init
MODEL --out NEW [--stage1]`` (through ``python -m lesion_core``, with machine-readable
progress lines) via :class:`LesionSuiteLib.child_process.ChildProcess`: training takes
minutes, must never run on the GUI thread, and Cancel must end the whole process tree.
The command fine-tunes stage 2 (and stage 1 with ``--stage1``) from the points
:func:`lesion_core.cmb.reader_decisions.training_points` reads from the store (accepted and
added: microbleed; rejected: not) and writes a new model folder; the model it started from
is never changed.
"""

from __future__ import annotations

from pathlib import Path

from lesion_core.errors import LesionSuiteError, ModelBundleError
from LesionSuiteLib import user_folders
from LesionSuiteLib.child_process import ChildProcess, child_env, lesion_core_command


def training_command(feedback_root: str | Path, init_model: str | Path,
                     out_folder: str | Path, stage1: bool = False,
                     python: str | None = None) -> list[str]:
    """``[python, -m, lesion_core, --progress-lines, cmb, train, --feedback, STORE, --init,
    MODEL, --out, NEW(, --stage1)]``; ``python`` defaults to ``PythonSlicer`` inside
    Slicer. (The fine-tune is small and runs on the CPU.)
    """
    args = ["--progress-lines", "cmb", "train", "--feedback", str(feedback_root),
            "--init", str(init_model), "--out", str(out_folder)]
    if stage1:
        args.append("--stage1")
    return lesion_core_command(args, python)


def start_training(feedback_root: str | Path, init_model: str | Path | None = None,
                   out_folder: str | Path | None = None, stage1: bool = False
                   ) -> tuple[ChildProcess, Path]:
    """Start retraining from the decisions in ``feedback_root``.

    Args:
        init_model: the model to start from (default: the shipped one,
            :func:`lesion_core.cmb.model.default_model_folder`).
        out_folder: where the new model goes (default: :func:`new_model_folder`).
        stage1: also fine-tune stage 1 (the candidate U-Net), not only stage 2.

    Returns:
        the running child and the folder the new model will be written to.

    Raises:
        LesionSuiteError: the store holds no decision yet.
        FeedbackStoreError: a case names no image or its image is gone.
        ModelBundleError: the model to start from does not exist.
    """
    from lesion_core.cmb.model import default_model_folder
    from lesion_core.cmb.reader_decisions import training_points

    if not training_points(feedback_root):
        raise LesionSuiteError("the feedback folder holds no CMB decision yet",
                               "Accept, reject or add microbleeds in at least one case, "
                               "then retrain", source=feedback_root)
    init = Path(init_model) if init_model else default_model_folder()
    if not init.is_dir():
        raise ModelBundleError("the model to start from does not exist",
                               "Choose a CMB model folder", source=init)
    out = Path(out_folder) if out_folder else new_model_folder()
    argv = training_command(feedback_root, init, out, stage1)
    return ChildProcess(argv, env=child_env()), out


def default_feedback_root() -> Path:
    """Where the reader's decisions are kept unless the user picks another folder:
    ``feedback/cmb`` beside the user models folder (``~/.lesion-suite`` by default)."""
    return user_folders.default_feedback_root("cmb")


def new_model_folder(base: str | Path | None = None) -> Path:
    """A new folder ``cmb_reader_<date-time>`` for a retrained model, in ``base``
    (default: the user models folder, where the hub lists models)."""
    return user_folders.new_model_folder("cmb_reader", base)

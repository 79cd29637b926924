"""Retraining the ICH classifier from a reader's slice labels, in a child process.

The GUI's "Retrain classifier from my labels" runs ``lesion-suite ich train --feedback
STORE --init MODEL --out NEW`` (through ``python -m lesion_core``, with machine-readable
progress lines) via :class:`LesionSuiteLib.child_process.ChildProcess`: training takes
minutes, must never run on the GUI thread, and Cancel must end the whole process tree.
The command reads the store only through
:func:`lesion_core.ich.reader_labels.weak_scans_from_store` (each labelled slice: any
haemorrhage and, where marked, its subtypes), fine-tunes the slice classifier and writes a
new model folder; the pseudo-masks and the segmenter of the model it starts from are kept
as they are, and that model itself is never changed.
"""

from __future__ import annotations

from pathlib import Path

from lesion_core.errors import LesionSuiteError, ModelBundleError
from LesionSuiteLib import user_folders
from LesionSuiteLib.child_process import ChildProcess, child_env, lesion_core_command


def training_command(feedback_root: str | Path, init_model: str | Path,
                     out_folder: str | Path, python: str | None = None) -> list[str]:
    """``[python, -m, lesion_core, --progress-lines, ich, train, --feedback, STORE, --init,
    MODEL, --out, NEW]``; ``python`` defaults to ``PythonSlicer`` inside Slicer."""
    return lesion_core_command(["--progress-lines", "ich", "train", "--feedback",
                                str(feedback_root), "--init", str(init_model), "--out",
                                str(out_folder)], python)


def start_training(feedback_root: str | Path, init_model: str | Path | None = None,
                   out_folder: str | Path | None = None) -> tuple[ChildProcess, Path]:
    """Start retraining from the slice labels in ``feedback_root``.

    Args:
        init_model: the model to start from (default: the shipped one,
            :func:`lesion_core.ich.model.default_model_folder`).
        out_folder: where the new model goes (default: :func:`new_model_folder`).

    Returns:
        the running child and the folder the new model will be written to.

    Raises:
        LesionSuiteError: the store holds no slice label yet.
        ModelBundleError: the model to start from does not exist.
    """
    from lesion_core.ich.reader_labels import labelled_cases

    if not labelled_cases(feedback_root):
        raise LesionSuiteError("the feedback folder holds no ICH slice label yet",
                               "Mark slices haemorrhage or no haemorrhage in at least one "
                               "case, then retrain", source=feedback_root)
    if init_model:
        init = Path(init_model)
    else:  # torch is installed by now (the GUI checks the dependencies first)
        from lesion_core.ich.model import default_model_folder

        init = default_model_folder()
    if not init.is_dir():
        raise ModelBundleError("the model to start from does not exist",
                               "Choose an ICH model folder", source=init)
    out = Path(out_folder) if out_folder else new_model_folder()
    argv = training_command(feedback_root, init, out)
    return ChildProcess(argv, env=child_env()), out


def default_feedback_root() -> Path:
    """Where the reader's slice labels are kept unless the user picks another folder:
    ``feedback/ich`` beside the user models folder (``~/.lesion-suite`` by default)."""
    return user_folders.default_feedback_root("ich")


def new_model_folder(base: str | Path | None = None) -> Path:
    """A new folder ``ich_reader_<date-time>`` for a retrained model, in ``base``
    (default: the user models folder, where the hub lists models)."""
    return user_folders.new_model_folder("ich_reader", base)

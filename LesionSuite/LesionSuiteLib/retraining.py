"""Fine-tuning a task's model from the reader's work, in a child process: one spec per task.

Each task module's "Train from my ratings" / "Retrain from my decisions" / "Retrain
classifier from my labels" runs ``lesion-suite <task> train --feedback STORE --init MODEL
--out NEW [task options] [--device D]`` (through ``python -m lesion_core``, with
machine-readable progress lines) via :class:`~LesionSuiteLib.child_process.ChildProcess`:
training takes minutes, must never run on the GUI thread, and Cancel must end the whole
process tree. The command reads the reader's work from the feedback store and writes a
new model folder; the model it started from is never changed.

A task declares a :class:`Retraining`: its command-line name, how to tell that the store
holds something to learn from and, where they are not the task's defaults, its shipped
model, what a model to start from is called and the name of its new model folders. The
functions are the task package's, named by :class:`~.later.Later` so that they are
imported only when training starts: the package needs what the hub installs, and the
module must load before that. The device is the hub's choice for every task, passed to
the command as given (it takes ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from lesion_core.errors import LesionSuiteError, ModelBundleError

from . import user_folders
from .child_process import ChildProcess, child_env, command_options, lesion_core_command
from .later import Later


@dataclass(frozen=True)
class Retraining:
    """How one task fine-tunes its model from the feedback store.

    Attributes:
        task: the command line's task (``wmh``, ``cmb``, ``ich``), also the name of the
            task's feedback folder (``feedback/<task>`` beside the user models folder).
        has_feedback: ``has_feedback(store_folder)``: what the store holds to train from
            (anything true when there is something).
        no_feedback: ``(problem, fix)`` of the error when it holds nothing.
        shipped_model: ``shipped_model()``: the default model folder to start from
            (default: the task's shipped model, :meth:`lesion_core.tasks.Task.
            default_model_folder`).
        model_kind: what a model folder to start from must hold, in the error's fix
            ("Choose a <model_kind> model folder"; default: the task in capitals).
        new_model_stem: the start of new model folders' names (``<stem>_<date>-<time>``;
            default ``<task>_reader``).
    """

    task: str
    has_feedback: Callable[[Path], Any]
    no_feedback: tuple[str, str]
    shipped_model: Callable[[], Path] | None = None
    model_kind: str = ""
    new_model_stem: str = ""

    def __post_init__(self) -> None:
        # Set once here (the spec is frozen), so every later use sees the final values.
        defaults = {"shipped_model": Later(__name__, "shipped_model_of", self.task),
                    "model_kind": self.task.upper(), "new_model_stem": f"{self.task}_reader"}
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)

    def command(self, feedback_root: str | Path, init_model: str | Path,
                out_folder: str | Path, options: Mapping[str, object] | None = None,
                device=None, python: str | None = None) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines, TASK, train, --feedback, STORE,
        --init, MODEL, --out, NEW, *options(, --device, D)]``.

        ``options``: the task's own options as ``{flag: value}`` (see
        :func:`~LesionSuiteLib.child_process.command_options`). ``device``: a torch device
        or its name (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``), passed as given:
        the command checks it before the training starts; None leaves the command's
        default (``auto``). ``python`` defaults to ``PythonSlicer`` inside Slicer.
        """
        args = ["--progress-lines", self.task, "train", "--feedback", str(feedback_root),
                "--init", str(init_model), "--out", str(out_folder),
                *command_options({**(options or {}), "--device": device})]
        return lesion_core_command(args, python)

    def start(self, feedback_root: str | Path, init_model: str | Path | None = None,
              out_folder: str | Path | None = None,
              options: Mapping[str, object] | None = None, device=None
              ) -> tuple[ChildProcess, Path]:
        """Start :meth:`command` in a child process.

        Args:
            init_model: the model to start from (default: the shipped one).
            out_folder: where the new model goes (default: :meth:`new_model_folder`).
            options, device: as for :meth:`command`.

        Returns:
            the running child and the folder the new model will be written to.

        Raises:
            LesionSuiteError: the store holds nothing to train from yet.
            FeedbackStoreError: a case names no image or its image is gone (CMB).
            ModelBundleError: the model to start from does not exist.
        """
        if not self.has_feedback(Path(feedback_root)):
            problem, fix = self.no_feedback
            raise LesionSuiteError(problem, fix, source=feedback_root)
        init = Path(init_model) if init_model else self.shipped_model()
        if not init.is_dir():
            raise ModelBundleError("the model to start from does not exist",
                                   f"Choose a {self.model_kind} model folder", source=init)
        out = Path(out_folder) if out_folder else self.new_model_folder()
        argv = self.command(feedback_root, init, out, options, device)
        return ChildProcess(argv, env=child_env()), out

    def default_feedback_root(self) -> Path:
        """Where the reader's work is kept unless the user picks another folder:
        ``feedback/<task>`` beside the user models folder (``~/.lesion-suite`` by
        default)."""
        return user_folders.default_feedback_root(self.task)

    def new_model_folder(self, base: str | Path | None = None) -> Path:
        """A new, not yet existing folder ``<new_model_stem>_<date>-<time>`` for a
        fine-tuned model, in ``base`` (default: the user models folder, where the hub
        lists models)."""
        return user_folders.new_model_folder(self.new_model_stem, base)


def shipped_model_of(task: str) -> Path:
    """The shipped model folder of ``task`` (its task contract's default kind)."""
    from lesion_core.tasks import get_task

    return get_task(task).default_model_folder()

"""The task contract: what every lesion task (WMH, CMB, ICH, and any later one) provides.

A task is one object, a subclass of :class:`Task` registered in :mod:`lesion_core.tasks`.
Its attributes say what it is (name, modalities, bundle kinds, shipped models, output
files, the options of its commands); its methods are the verbs that the command line, the
Slicer modules and the benchmark call without knowing the task:

==========================  =================================================================
models                      :meth:`Task.load_model` (the generic loader), :meth:`model_from_bundle`,
                            :meth:`default_model_folder`; a model saves itself
                            (:class:`~.models.TaskModel`)
predict                     :meth:`read_input` (torch-free checks), :meth:`check_model`,
                            :meth:`predict`, :meth:`write_outputs`, :meth:`read_outputs`
                            (torch-free), :meth:`prediction_lines`; is the input a head
                            scan: :meth:`head_image`, :meth:`brain_volume`
                            (:mod:`lesion_core.head_check`)
evaluate                    :meth:`read_cohort`, :meth:`evaluate` (one
                            :class:`~.reports.EvaluationReport`), :meth:`summary_lines`
train                       :meth:`check_training`, :meth:`training_data`, :meth:`fit` and
                            :meth:`finetune` (an unsaved model and its report),
                            :meth:`training_line`
==========================  =================================================================

Options: a task declares the options of its commands as data (:class:`Option`, by verb in
:attr:`Task.options`); the command line adds them to its parsers and passes their values to
the verbs as keyword arguments named after each option's ``dest`` (``--known-transform`` ->
``known_transform``). Every verb takes ``**options`` and uses the ones it knows, so a verb's
signature is the same for every task. Importing a task module must not import torch (the
command line builds its parser from the registry before any model is needed): the verbs
import their task's modules when they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from .outputs import OutputFiles
from .settings import TrainSettings

#: The verbs of ``lesion-suite <task>``.
VERBS = ("predict", "train", "evaluate")


@dataclass(frozen=True)
class Option:
    """One command-line option of a task's verb: ``argparse`` flags and keywords.

    ``source=True`` puts it among the verb's data sources, of which a ``train`` command
    takes exactly one (with ``--feedback``, which every task has).
    """

    flags: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: bool = False

    @property
    def dest(self) -> str:
        """The keyword the verbs receive its value under."""
        if "dest" in self.settings:
            return self.settings["dest"]
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_")


def option(*flags: str, source: bool = False, **settings: Any) -> Option:
    """An :class:`Option` written as ``argparse.add_argument`` is called."""
    return Option(tuple(flags), settings, source)


class Task:
    """Base class of a task (one instance each, registered in :mod:`lesion_core.tasks`).

    Subclasses set the class attributes and implement the verbs; the defaults here are
    what most tasks need. Every path argument may be a ``str`` or a ``Path``.
    """

    #: Command name, the prefix of its bundle kinds and of its output folder (``"wmh"``).
    name: ClassVar[str] = ""
    #: How messages name it (``"WMH"``), with its article (``"a"`` or ``"an"``).
    title: ClassVar[str] = ""
    article: ClassVar[str] = "a"
    #: One line for ``lesion-suite --help``, and one per verb.
    help: ClassVar[str] = ""
    verb_help: ClassVar[Mapping[str, str]] = {}
    #: Image modalities a model of the task reads.
    modalities: ClassVar[tuple[str, ...]] = ()
    #: The ``task`` values of its bundles' metadata (the first is the default kind), the
    #: shipped model folder of each kind, and the networks every bundle must hold.
    bundle_kinds: ClassVar[tuple[str, ...]] = ()
    default_models: ClassVar[Mapping[str, str]] = {}
    required_networks: ClassVar[tuple[str, ...]] = ()
    #: The files ``predict`` writes, and the torch-free reader of each table or document
    #: among them (images are returned as paths).
    output_files: ClassVar[OutputFiles] = OutputFiles({})
    output_readers: ClassVar[Mapping[str, Callable[[Path], Any]]] = {}
    #: The key figures of one prediction for a cohort table (``lesion-suite batch``):
    #: column -> (role of a table or document among :attr:`output_readers`, its key).
    key_figures: ClassVar[Mapping[str, tuple[str, str]]] = {}
    #: ``(name, help)`` of the positional argument of ``predict`` and of ``evaluate``.
    input_argument: ClassVar[tuple[str, str]] = ("image", "the image")
    cohort_argument: ClassVar[tuple[str, str]] = ("cohort", "a synthetic cohort folder")
    #: The task's own options, by verb.
    options: ClassVar[Mapping[str, tuple[Option, ...]]] = {}
    #: What ``--steps`` counts in this task's ``train``.
    steps_help: ClassVar[str] = "optimiser steps"
    #: The modality family of the input (``"MR"`` or ``"CT"``) for the head checks; None:
    #: the input is not a head scan and is not judged as one.
    head_modality: ClassVar[str | None] = None
    #: What ``evaluate`` scores against (kept with a recorded evaluation).
    evaluation_truth: ClassVar[str] = "the cohort's truth (evaluation only)"

    # ------------------------------------------------------------------ models
    def kind(self, **options: Any) -> str:
        """The bundle kind a command's options ask for (default: the first)."""
        return self.bundle_kinds[0]

    def kind_label(self, kind: str) -> str:
        """How messages name a model of ``kind`` (``"FLAIR WMH"``)."""
        return self.title

    def kind_mismatch(self, have: str, want: str, verb: str) -> tuple[str, str]:
        """``(problem, fix)`` when a model of kind ``have`` was given where ``want`` was
        asked for (tasks with one kind never see it)."""
        return (f"this is a {self.kind_label(have)} model, not a {self.kind_label(want)} one",
                f"choose a {self.kind_label(want)} model")

    def default_model_folder(self, kind: str | None = None) -> Path:
        """The shipped model folder of ``kind`` (it may be absent in a partial checkout)."""
        from ..model_folders import default_models_dir

        return default_models_dir() / self.default_models[kind or self.bundle_kinds[0]]

    def model_from_bundle(self, loaded) -> Any:
        """The task's model from a verified :class:`~lesion_core.bundle.LoadedBundle`
        (``KeyError``/``TypeError``/``ValueError`` for a configuration it cannot use)."""
        raise NotImplementedError

    def load_model(self, folder: str | Path | None = None, device=None,
                   kind: str | None = None) -> Any:
        """:func:`~.models.load_model` for this task."""
        from .models import load_model

        return load_model(self, folder, device, kind)

    # ----------------------------------------------------------------- predict
    def read_input(self, path: str | Path, **options: Any) -> Any:
        """Read and check what ``predict`` runs on, before torch is imported (a wrong file
        fails at once, in one line). ``series`` (an option every task's ``predict`` has)
        picks one series of a DICOM folder that holds several."""
        raise NotImplementedError

    def head_image(self, inputs: Any) -> Any:
        """The image (a :class:`~lesion_core.volume.Volume`) in what :meth:`read_input`
        returned, judged by :func:`lesion_core.head_check.image_findings`."""
        return inputs

    def brain_volume(self, prediction: Any) -> tuple[float | None, str]:
        """``(mL, what)``: the volume of the brain (or intracranial) mask the prediction
        made, judged by :func:`lesion_core.head_check.brain_findings`."""
        return getattr(prediction, "brain_ml", None), "brain"

    def check_model(self, model: Any, path: str | Path, **options: Any) -> None:
        """Refuse a model that cannot run on this input with these options (before it
        predicts: :func:`~.cases.run_case` calls it). Default: nothing to check."""

    def prepare(self, inputs: Any, progress=None, **options: Any) -> Any:
        """What :meth:`read_input` returned with the model-free work of :meth:`predict`
        done (e.g. registration), so that it runs while the model loads
        (:class:`~.cases.ModelLoading`); it must not import torch. Default: nothing to do."""
        return inputs

    def predict(self, inputs: Any, model: Any, progress=None, precision: str = "auto",
                **options: Any) -> Any:
        """Run ``model`` on what :meth:`read_input` (or :meth:`prepare`) returned."""
        raise NotImplementedError

    def write_outputs(self, prediction: Any, folder: str | Path,
                      image_path: str | None = None, **options: Any) -> dict[str, Path]:
        """Write :attr:`output_files` into ``folder``; role -> path written."""
        raise NotImplementedError

    def read_outputs(self, folder: str | Path, stem: str | None = None,
                     **options: Any) -> dict[str, Any]:
        """What :meth:`write_outputs` wrote, checked and without torch: role -> the parsed
        table or document, or the path of an image (a missing file, or a folder whose
        writing was killed half way, is one clear error)."""
        from ..output_folder import check_complete
        from .outputs import FileCheck

        check_complete(folder, self.rerun_fix)
        out = {}
        for role, path in self.output_files.paths(folder, stem).items():
            if role in self.output_readers:
                out[role] = self.output_readers[role](path)
            elif path.is_file():
                out[role] = path
            else:
                raise FileCheck(f"the {role} file", self.rerun_fix).error(
                    f"the {role} file is missing", path)
        return out

    @property
    def rerun_fix(self) -> str:
        """What to do about a damaged output folder."""
        return f"Run lesion-suite {self.name} predict again to write the output folder anew"

    def prediction_lines(self, prediction: Any, model: Any, image_path: str) -> list[str]:
        """What ``predict`` prints about a result (the files written follow)."""
        return [f"{image_path}: model {model.model_id} {model.version}"]

    # ---------------------------------------------------------------- evaluate
    def read_cohort(self, source: str | Path, **options: Any) -> list:
        """The cases of a cohort (checked before a model is loaded)."""
        raise NotImplementedError

    def evaluate(self, model: Any, source: str | Path, progress=None,
                 precision: str = "auto", **options: Any):
        """Score ``model`` on the cohort at ``source``: an
        :class:`~.reports.EvaluationReport`."""
        raise NotImplementedError

    def summary_lines(self, report) -> list[str]:
        """The cohort summary as lines of text."""
        raise NotImplementedError

    # ------------------------------------------------------------------- train
    def check_training(self, settings: TrainSettings, feedback: str | None = None,
                       init: str | None = None, **options: Any) -> None:
        """Refuse options that do not fit together, before anything is read."""

    def training_data(self, settings: TrainSettings, **options: Any) -> Any:
        """Read and check the data a whole training (:meth:`fit`) learns from."""
        raise NotImplementedError

    def fit(self, data: Any, settings: TrainSettings, progress=None, init: Any = None,
            **options: Any) -> tuple[Any, dict]:
        """Train a model from :meth:`training_data` (``init``: a loaded model to go on
        from, where the task can): ``(unsaved model with its card, report)``."""
        raise NotImplementedError

    def finetune(self, model: Any, store: str | Path, settings: TrainSettings,
                 progress=None, **options: Any) -> tuple[Any, dict]:
        """Fine-tune ``model`` on a reader's decisions in a feedback store:
        ``(unsaved model with its card, report)``."""
        raise NotImplementedError

    def training_line(self, report: dict) -> str:
        """One line of facts about a training run (its report)."""
        return ""

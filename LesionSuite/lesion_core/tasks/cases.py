"""One case through a task's ``predict``: the steps every caller runs the same way.

``lesion-suite <task> predict`` runs one case; a batch over a cohort runs many with one
model. Both go through :func:`prepare_case` (torch-free: the input read and checked, also as
a head scan of the task's kind, :mod:`lesion_core.head_check`) and :func:`run_case` (the
task's model-free preparation, :meth:`Task.prepare`, then the prediction, its brain mask
checked, the files published into the output folder all together or not at all,
:func:`~lesion_core.output_folder.publish`). A single case can pass a :class:`ModelLoading`
instead of a model: importing torch and MONAI and building the networks take seconds, which
then pass on another thread while the case is prepared. ``force`` reports a
result on an image the checks refuse, marked out of distribution. ``dicom`` also writes the
result as a DICOM SEG and SR referencing the source series (:mod:`lesion_core.dicom_export`),
published with the other files; :func:`check_dicom_export` refuses a non-DICOM input first.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .contract import Task


@dataclass
class PreparedCase:
    """A case ready to predict: its image path, what :meth:`Task.read_input` returned and
    the head-check findings so far (non-empty only when forced)."""

    image_path: str
    inputs: Any
    findings: list[str]


def prepare_case(task: Task, image_path: str | Path, series: str | None = None,
                 force: bool = False, **options: Any) -> PreparedCase:
    """Read and check one input (one clear error for a bad one), before a model is needed."""
    inputs = task.read_input(image_path, series=series, **options)
    return PreparedCase(str(image_path), inputs, _judge_image(task, inputs, str(image_path), force))


def check_dicom_export(image_path: str | Path) -> None:
    """Refuse ``--dicom`` for an input that is not a DICOM series (one CommandError),
    before anything is read."""
    from ..dicom_export.export import check_dicom_input

    check_dicom_input(image_path)


class ModelLoading:
    """``load()`` run on a background thread, started at once; :meth:`result` waits for it.

    The thread is a daemon: a process that stops on a bad input does not wait for torch to
    finish importing. The loader's error is raised again by :meth:`result`, in the caller's
    thread, so it reaches the user as the same one line."""

    def __init__(self, load: Callable[[], Any]):
        self._model: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(load,), daemon=True,
                                        name="lesion-suite-model-loading")
        self._thread.start()

    def _run(self, load: Callable[[], Any]) -> None:
        try:
            self._model = load()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._model


def run_case(task: Task, case: PreparedCase, model: Any, out: str | Path, progress=None,
             precision: str = "auto", force: bool = False, dicom: bool = False,
             **options: Any) -> tuple[Any, dict[str, Path]]:
    """Predict ``case`` with ``model`` (a model, or a :class:`ModelLoading` waited for after
    :meth:`Task.prepare`) and publish its files into ``out``; returns the prediction and
    role -> path of each file written. The model is checked against the case's options
    (:meth:`Task.check_model`) before it predicts. ``dicom``: also the DICOM SEG and SR
    (roles ``dicom_seg``, ``dicom_sr``), written inside the same publish."""
    from ..output_folder import publish

    files = _dicom_source_files(task, case) if dicom else None  # refused before predicting
    inputs = task.prepare(case.inputs, progress, **options)
    if isinstance(model, ModelLoading):
        model = model.result()
    task.check_model(model, case.image_path, **options)
    prediction = task.predict(inputs, model, progress, precision, **options)
    prediction = _judge_brain(task, prediction, case.findings, case.image_path, force)
    source = str(Path(case.image_path).resolve())

    def write(folder: Path) -> dict[str, Path]:
        paths = task.write_outputs(prediction, folder, source, **options)
        if files is not None:
            paths = {**paths, **_write_dicom(task, prediction, paths, files, folder, options)}
        return paths

    return prediction, publish(out, write)


def _dicom_source_files(task: Task, case: PreparedCase) -> list[str]:
    """The input series' files in slice order (one clear error for a non-DICOM input)."""
    from ..dicom_export.export import source_files

    return source_files(task.head_image(case.inputs))


def _write_dicom(task: Task, prediction: Any, paths: dict[str, Path], files: list[str],
                 folder: Path, options: dict) -> dict[str, Path]:
    """The SEG and SR of ``prediction``, from the summary just written (so the SR's
    figures are the JSON's), named after the task's stem."""
    from ..dicom_export.export import SUMMARY_ROLES, export_case

    return export_case(task.name, prediction.labels, paths[SUMMARY_ROLES[task.name]], files,
                       folder, options.get("stem") or task.name)


def out_of_distribution_lines(prediction: Any) -> list[str]:
    """The lines that mark a forced result (none for an ordinary one)."""
    return [f"OUT OF DISTRIBUTION (--force): {finding}"
            for finding in getattr(prediction, "out_of_distribution", ())]


def _head_fix(task: Task) -> str:
    return (f"give a whole-head {task.head_modality} scan of the kind the model reads "
            "(and check the voxel size in its header)")


def _judge_image(task: Task, inputs: Any, image_path: str, force: bool) -> list[str]:
    """The head checks of the input image: refused unless ``force``; the findings go on to
    mark the result."""
    from .. import head_check

    if task.head_modality is None:
        return []
    findings = head_check.image_findings(task.head_image(inputs), task.head_modality)
    return list(head_check.refuse_unless_forced(findings, image_path, force, _head_fix(task)))


def _judge_brain(task: Task, prediction: Any, findings: list[str], image_path: str,
                 force: bool) -> Any:
    """The prediction, refused when its brain mask's volume is implausible (unless
    ``force``), marked with every finding when forced."""
    from .. import head_check

    if task.head_modality is None:
        return prediction
    brain_ml, what = task.brain_volume(prediction)
    findings = findings + head_check.brain_findings(brain_ml, what)
    marks = head_check.refuse_unless_forced(findings, image_path, force, _head_fix(task))
    return dataclasses.replace(prediction, out_of_distribution=marks) if marks else prediction

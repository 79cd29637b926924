"""A task prediction running in a child process, followed from the GUI without blocking it.

Shared by the task modules (WMH DualTasker, CMB Detector, ...). The child is the command
line, ``python -m lesion_core --progress-lines --error-json FILE <task> predict IMAGE --out
DIR ...``: the GUI runs the same code as a user at the terminal, reads its progress lines,
re-raises its user error as the same class and reads its output files back.

Why a child process and not a Python thread: inside the Slicer application the main
thread holds Python's global interpreter lock while Qt waits for events, so a Python worker
thread only advances while the GUI happens to run Python code; a child process runs at full
speed whatever the GUI does. It also makes Cancel immediate (the whole process tree ends,
even inside code without cancel points), and a crash of torch cannot take Slicer down. The
price is writing the image to a temporary folder and reading the outputs back.

Plain Python (no qt, no slicer): the widget calls :meth:`BackgroundPrediction.poll` from a
timer, then the task Logic's ``finish_prediction`` on the GUI thread, which creates the
nodes (MRML must only be touched from the GUI thread).

Layout of a work folder: ``input.nii.gz`` (the input volume in its local voxel-to-RAS
geometry), ``out/`` (the command's ``--out``), ``error.json`` (its ``--error-json``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from lesion_core.errors import (EXIT_CANCELLED, EXIT_USER_ERROR, InvalidImageError,
                                OperationCancelled, error_from_json)
from lesion_core.volume import Volume

from .child_process import ChildProcess, FinishedEvent, LogEvent, ProgressEvent

#: In the work folder: the child's input, its user error (re-raised here as the same
#: class) and its outputs.
INPUT_FILE = "input.nii.gz"
ERROR_FILE = "error.json"
OUT_DIR = "out"
#: Largest geometry difference (mm, any affine entry) between the input and an image read
#: back from NIfTI; the header stores the affine in float32, so a few micrometres differ.
GRID_TOLERANCE_MM = 1e-3

T = TypeVar("T")


#: The end of an out-of-distribution warning (:func:`out_of_distribution_warning`).
OUT_OF_DISTRIBUTION_CAUTION = "Treat this result with caution."


def out_of_distribution_findings(summary: dict) -> tuple[str, ...]:
    """The ``out_of_distribution`` findings of a prediction's summary: one sentence each on
    why the input did not look like a head scan of the task's kind, written when the user
    insisted (``predict --force``). Empty when the checks found nothing, and for results
    written before the checks existed (no key)."""
    value = summary.get("out_of_distribution") if isinstance(summary, dict) else None
    if not value:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(str(finding).strip() for finding in value if str(finding).strip())


def out_of_distribution_warning(findings) -> str:
    """``"Out of distribution: <finding>; <finding>. Treat this result with caution."``, or
    ``""`` when there is no finding."""
    findings = [str(f).strip().rstrip(".") for f in findings or () if str(f).strip()]
    if not findings:
        return ""
    return f"Out of distribution: {'; '.join(findings)}. {OUT_OF_DISTRIBUTION_CAUTION}"


class SummaryFacts:
    """Model facts read from a prediction's ``summary`` dict (``model``, ``model_version``,
    ``modality``, ``out_of_distribution``); mixed into the classes that carry one."""

    summary: dict

    @property
    def model_id(self) -> str:
        return str(self.summary.get("model", ""))

    @property
    def model_version(self) -> str:
        return str(self.summary.get("model_version", ""))

    @property
    def modality(self) -> str:
        return str(self.summary.get("modality", ""))

    @property
    def out_of_distribution(self) -> tuple[str, ...]:
        """Why the input did not look like a head scan the model reads, one finding each,
        when the user asked for a result anyway (:func:`out_of_distribution_findings`);
        empty for a normal result and for one written before the checks existed."""
        return out_of_distribution_findings(self.summary)

    def summary_text(self, text: str) -> str:
        """The result summary a panel shows: ``text``, after the out-of-distribution
        warning on a line of its own when the result has findings
        (:func:`out_of_distribution_warning`)."""
        warning = out_of_distribution_warning(self.out_of_distribution)
        return f"{warning}\n{text}" if warning else text


def file_stem(name: str) -> str:
    """A node name made safe as the start of a file name (letters, digits, ``-_.``)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return stem or "volume"


def read_on_grid(path: str | Path, grid: Volume) -> Volume:
    """An output image read from ``path`` and put back on ``grid`` (the input image)
    exactly: NIfTI keeps the affine in float32, and outputs must share the input's
    geometry bit for bit. Raises ``InvalidImageError`` naming the file when it lies on
    another grid (outputs made from another image)."""
    from lesion_core import io as lesion_io

    return put_on_grid(lesion_io.read_volume(path), grid, path)


def put_on_grid(volume: Volume, grid: Volume, source=None) -> Volume:
    """``volume``'s voxels with ``grid``'s geometry exactly, when both lie on the same grid
    (shape equal, affines within :data:`GRID_TOLERANCE_MM`); ``InvalidImageError`` naming
    ``source`` otherwise. For images that went through a NIfTI file (float32 affine)."""
    if volume.shape[:3] != grid.shape[:3] or not np.allclose(
            volume.affine, grid.affine, rtol=0, atol=GRID_TOLERANCE_MM):
        raise InvalidImageError(f"this output lies on another voxel grid than the input "
                                f"({volume.shape[:3]} vs {grid.shape[:3]})",
                                "Use the outputs computed from this very image, or run the "
                                "prediction on it again", source=source)
    return grid.with_array(np.asarray(volume.array))


def start_in_work_folder(image: Volume, prefix: str,
                         start: Callable[[Path, Path], T]) -> T:
    """Write ``image`` to ``<new temporary folder>/input.nii.gz`` and return
    ``start(work_folder, input_path)``; the folder is removed again if that fails (a full
    disk must not leave files behind)."""
    from lesion_core import io as lesion_io

    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        lesion_io.write_volume(image, work / INPUT_FILE)
        return start(work, work / INPUT_FILE)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


class BackgroundPrediction:
    """One running prediction: ``poll()`` for progress, ``cancel()``, then ``outputs()``.

    Args:
        argv: the ``lesion-suite <task> predict`` command line, its outputs in
            ``work_dir/out`` and its error file ``work_dir/error.json``.
        work_dir: the temporary folder holding the input and the outputs; removed by
            :meth:`cleanup`.
        grid: the input image as given to the child; the outputs are put back on its grid.
        input_node: the volume node the results belong to.
        env: environment additions for the child (e.g. ``PYTHONPATH``).
        task: the task's name in messages ("the WMH prediction failed ...").
        read_outputs: ``read_outputs(out_dir, grid)``, the task's outputs read back from
            the child's files, on the input's grid.
        finish_options: keyword arguments for the Logic's node building when the job is
            finished (e.g. the feedback store whose reader mask a result shows).
    """

    def __init__(self, argv: Sequence[str], work_dir: Path, grid: Volume, input_node=None,
                 env: dict[str, str] | None = None, task: str = "LesionSuite",
                 read_outputs: Callable[[Path, Volume], Any] | None = None,
                 finish_options: dict[str, Any] | None = None):
        self.work_dir = Path(work_dir)
        self.out_dir = self.work_dir / OUT_DIR
        self.grid = grid
        self.input_node = input_node
        self.task = task
        self.finish_options = dict(finish_options or {})
        self.fraction = 0.0
        self.message = "starting"
        self.returncode: int | None = None
        self._read_outputs = read_outputs
        self._child = ChildProcess(argv, env=env)

    @property
    def done(self) -> bool:
        """The child ended and all its output was read (after a :meth:`poll`)."""
        return self.returncode is not None

    @property
    def cancelled(self) -> bool:
        return self._child.cancelled

    def poll(self) -> tuple[float, str]:
        """Read the child's new output; returns (fraction 0..1 done, what runs now)."""
        for event in self._child.poll():
            if isinstance(event, ProgressEvent):
                self.fraction, self.message = event.fraction, event.message
            elif isinstance(event, FinishedEvent):
                self.returncode = event.returncode
            elif isinstance(event, LogEvent) and event.line.strip():
                self.message = event.line.strip()[:200]
        return self.fraction, self.message

    def wait(self, timeout: float | None = None) -> int:
        """Block until the child ends (scripts and tests; the GUI polls instead)."""
        self._child.wait(timeout)
        while not self.done:
            self.poll()
        return int(self.returncode)

    def cancel(self) -> None:
        """Stop the child and its descendants at once (returns when they are gone)."""
        self._child.cancel()

    def log_tail(self, lines: int = 20) -> str:
        return self._child.log_tail(lines)

    def read_outputs(self) -> Any:
        """The task's outputs from :attr:`out_dir`, on :attr:`grid`."""
        if self._read_outputs is None:
            raise NotImplementedError(f"the {self.task} job was given no output reader")
        return self._read_outputs(self.out_dir, self.grid)

    def outputs(self) -> Any:
        """The prediction, once :attr:`done`; raises the child's error otherwise.

        Raises:
            OperationCancelled: the run was cancelled.
            LesionSuiteError (or the subclass the child raised): a user error, e.g. a CT
                given as an MR image or a missing model.
            RuntimeError: the child crashed (a bug); the message ends with its log.
        """
        if not self.done:
            raise RuntimeError(f"the {self.task} prediction is still running")
        if self.cancelled or self.returncode == EXIT_CANCELLED:
            raise OperationCancelled(f"the {self.task} prediction was cancelled")
        error_file = self.work_dir / ERROR_FILE
        if self.returncode == EXIT_USER_ERROR and error_file.is_file():
            raise error_from_json(error_file.read_text(encoding="utf-8"))
        if self.returncode != 0:
            raise RuntimeError(f"the {self.task} prediction failed (exit code "
                               f"{self.returncode}):\n{self.log_tail()}")
        return self.read_outputs()

    def finish(self, add_nodes: Callable[[Any, Any], T]) -> T:
        """``add_nodes(input_node, outputs)`` for a finished job (GUI thread); the work
        folder is removed whatever happens. Raises what :meth:`outputs` raises, and
        ``InvalidImageError`` when the input node left the scene during the run."""
        try:
            outputs = self.outputs()
            node = self.input_node
            if node is None or node.GetScene() is None:
                raise InvalidImageError("the input volume was removed during the run",
                                        "Load it again and apply")
            return add_nodes(node, outputs)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Remove the temporary folder (the child is cancelled first if still running)."""
        if self._child.running:
            self._child.cancel()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def run_to_end(job: BackgroundPrediction, finish: Callable[[BackgroundPrediction], T],
               progress=None, timeout: float | None = None) -> T:
    """Wait for a started job, then ``finish(job)`` (the Logic's ``finish_prediction``):
    what a Logic's blocking ``run`` does for scripts and the Python console.

    ``progress``: a :class:`lesion_core.progress.Progress`, updated from the child's
    progress lines; its ``cancel()`` stops the child (``OperationCancelled``).
    ``timeout``: seconds before the child is cancelled (None: no limit). The work folder
    is removed whatever happens.
    """
    started = time.monotonic()
    try:
        while not job.done:
            fraction, message = job.poll()
            if progress is not None:
                progress.update(fraction, message)
                if progress.cancelled:
                    job.cancel()
            if timeout is not None and time.monotonic() - started > timeout:
                job.cancel()
                raise OperationCancelled(f"the {job.task} prediction ran over {timeout} s")
            time.sleep(0.05)
    except BaseException:
        job.cleanup()
        raise
    return finish(job)


@contextmanager
def all_or_none(scene):
    """``with all_or_none(scene) as created:`` append each node added in the block to
    ``created``; if the block raises, those nodes are removed from ``scene`` again, so a
    failure half-way leaves the scene as it was."""
    created: list = []
    try:
        yield created
    except BaseException:
        for node in created:
            if node is not None and node.GetScene() is scene:
                scene.RemoveNode(node)
        raise


def place_with_input(nodes, input_node, attributes: dict[str, str]) -> None:
    """Tag result ``nodes`` (``attributes``, e.g. the model and the input node ID) and put
    each transformable one under ``input_node``'s parent transform, so outputs made in the
    input's local coordinates lie on it and move with it."""
    parent = input_node.GetParentTransformNode()
    for node in nodes:
        for key, value in attributes.items():
            node.SetAttribute(key, str(value))
        if parent is not None and node.IsA("vtkMRMLTransformableNode"):
            node.SetAndObserveTransformNodeID(parent.GetID())


def remove_nodes(nodes) -> None:
    """Remove each of ``nodes`` (None entries skipped) from the scene that holds it."""
    for node in nodes:
        scene = node.GetScene() if node is not None else None
        if scene is not None:
            scene.RemoveNode(node)

"""A WMH prediction running in a child process, followed from the GUI without blocking it.

The child is the command line, ``python -m lesion_core --progress-lines --error-json FILE
wmh predict ...`` (built by :meth:`WMHDualTaskerLogic.prediction_command`): the GUI runs
the same code as a user at the terminal, reads its progress lines, re-raises its user
error as the same class and reads its output files back.

Why a child process and not a Python thread: inside the Slicer application the main
thread holds Python's global interpreter lock while Qt waits for events, so a Python worker
thread only advances while the GUI happens to run Python code (a timer, a mouse move); a
child process runs at full speed whatever the GUI does. It also makes Cancel immediate
(:meth:`ChildProcess.cancel` ends the whole process tree, even in the middle of the
registration, which has no cancel points), and a crash of torch cannot take Slicer down.
The price is writing the image to a temporary folder and reading the outputs back
(about a second) and loading the model in the child (a few seconds).

Plain Python (no qt, no slicer): the widget calls :meth:`BackgroundPrediction.poll` from a
timer, then :meth:`WMHDualTaskerLogic.finish_prediction` on the GUI thread, which creates
the nodes (MRML must only be touched from the GUI thread).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from lesion_core.errors import (EXIT_CANCELLED, EXIT_USER_ERROR, OperationCancelled,
                                error_from_json)
from lesion_core.volume import Volume
from LesionSuiteLib.child_process import ChildProcess, FinishedEvent, LogEvent, ProgressEvent

from .outputs import WMHOutputs

#: In the work folder: the child's user error (``lesion-suite --error-json``), re-raised
#: here as the same class.
ERROR_FILE = "error.json"
#: In the work folder: the child's outputs (``lesion-suite wmh predict --out``).
OUT_DIR = "out"


class BackgroundPrediction:
    """One running prediction: ``poll()`` for progress, ``cancel()``, then ``outputs()``.

    Args:
        argv: the ``lesion-suite wmh predict`` command line (from
            ``WMHDualTaskerLogic.prediction_command``), its outputs in ``work_dir/out``
            and its error file ``work_dir/error.json``.
        work_dir: the temporary folder holding the input and the outputs; removed by
            :meth:`cleanup`.
        grid: the input image as given to the child; the outputs are put back on its grid.
        input_node: the volume node the results belong to.
        env: environment additions for the child (e.g. ``PYTHONPATH``).
    """

    def __init__(self, argv: Sequence[str], work_dir: Path, grid: Volume, input_node=None,
                 env: dict[str, str] | None = None):
        self.work_dir = Path(work_dir)
        self.out_dir = self.work_dir / OUT_DIR
        self.grid = grid
        self.input_node = input_node
        self.fraction = 0.0
        self.message = "starting"
        self.returncode: int | None = None
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

    def outputs(self) -> WMHOutputs:
        """The prediction, once :attr:`done`; raises the child's error otherwise.

        Raises:
            OperationCancelled: the run was cancelled.
            LesionSuiteError (or the subclass the child raised): a user error, e.g. a CT
                given as FLAIR or a missing model.
            RuntimeError: the child crashed (a bug); the message ends with its log.
        """
        if not self.done:
            raise RuntimeError("the prediction is still running")
        if self.cancelled or self.returncode == EXIT_CANCELLED:
            raise OperationCancelled("the WMH prediction was cancelled")
        error_file = self.work_dir / ERROR_FILE
        if self.returncode == EXIT_USER_ERROR and error_file.is_file():
            raise error_from_json(error_file.read_text(encoding="utf-8"))
        if self.returncode != 0:
            raise RuntimeError(f"the WMH prediction failed (exit code {self.returncode}):\n"
                               f"{self.log_tail()}")
        return WMHOutputs.read(self.out_dir, self.grid)

    def cleanup(self) -> None:
        """Remove the temporary folder (the child is cancelled first if still running)."""
        if self._child.running:
            self._child.cancel()
        shutil.rmtree(self.work_dir, ignore_errors=True)

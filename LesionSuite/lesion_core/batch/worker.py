"""One batch worker process: the model loaded once, then one case after another.

Each case goes through exactly what ``lesion-suite <task> predict`` runs:
:func:`~lesion_core.tasks.cases.prepare_case` (read and check the input, also as a head
scan), :meth:`~lesion_core.tasks.Task.check_model`, and
:func:`~lesion_core.tasks.cases.run_case` (predict, check the brain mask, publish the files
into ``OUT/<case_id>/`` all together or not at all). The worker then reads the task's key
figures back from the files just written and returns a
:class:`~lesion_core.batch.records.CaseRecord`; a user error
(:class:`~lesion_core.errors.LesionSuiteError`) makes a failed record, anything else a
crashed one (with its traceback), and the worker goes on with the next case.

The worker is a child of the batch's process: when that process dies (even by SIGKILL) the
worker exits at once rather than finish a case that the next run will redo.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import LesionSuiteError, error_to_json, internal_error_line
from .cohort import BatchCase
from .records import CRASHED, DONE, FAILED, CaseRecord, now_iso

@dataclass(frozen=True)
class WorkerSetup:
    """What every worker of a batch needs (sent to each spawned process, so picklable).

    Attributes:
        task: the task's registered name.
        out: the batch's output folder (each case writes into ``out/<case_id>``).
        load_model: a module-level callable (or a partial of one) that returns the loaded
            model; it raises a user error for a bad ``--model`` or ``--device``.
        options: the task's predict options (keyword -> value), the same for every case.
        force: report results on images the head checks refuse (marked out of distribution).
        dicom: also write each case's DICOM SEG and SR (a case that is not a DICOM series
            fails with the reason).
        precision: ``auto``, ``fp32`` or ``bf16``.
        threads: torch threads of this worker (the machine's cores split between workers).
    """

    task: str
    out: str
    load_model: Callable[[], Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    force: bool = False
    precision: str = "auto"
    threads: int = 1
    dicom: bool = False


class CaseRunner:
    """A worker's task and model; :meth:`run` runs one case and never raises for it."""

    def __init__(self, setup: WorkerSetup):
        import torch

        from ..tasks import get_task

        torch.set_num_threads(max(1, int(setup.threads)))
        self.setup = setup
        self.task = get_task(setup.task)
        self.model = setup.load_model()

    def run(self, case: BatchCase) -> CaseRecord:
        from ..tasks.cases import check_dicom_export, prepare_case, run_case

        setup, task = self.setup, self.task
        record = CaseRecord(case.case_id, case.path, DONE, series=case.series,
                            worker_pid=os.getpid())
        began = time.monotonic()
        try:
            if setup.dicom:
                check_dicom_export(case.path)
            prepared = prepare_case(task, case.path, case.series, setup.force, **setup.options)
            folder = Path(setup.out) / case.case_id
            prediction, _ = run_case(task, prepared, self.model, folder, None, setup.precision,
                                     setup.force, setup.dicom, **setup.options)
            record.out_of_distribution = list(getattr(prediction, "out_of_distribution", ()))
            record.figures = key_figures(task, folder, setup.options)
        except LesionSuiteError as exc:
            record.status, record.error = FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: recorded, the batch goes on
            record.status, record.error = CRASHED, internal_error_line(exc)
            record.details = traceback.format_exc()
        record.seconds = round(time.monotonic() - began, 3)
        record.finished = now_iso()
        record.worker_peak_mb = peak_memory_mb()
        return record


def key_figures(task, folder: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """The task's key figures of the case in ``folder``, read back from its files."""
    paths = task.output_files.paths(folder, options.get("stem"))
    documents: dict[str, Any] = {}
    figures = {}
    for column, (role, key) in task.key_figures.items():
        if role not in documents:
            documents[role] = task.output_readers[role](paths[role])
        figures[column] = documents[role].get(key)
    return figures


def peak_memory_mb() -> float | None:
    """This process's peak resident memory (MB), where the platform reports it."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def worker_main(setup: WorkerSetup, connection) -> None:
    """The body of a worker process: messages on ``connection`` (a duplex pipe end).

    Sends ``("ready", pid)`` once the model is loaded (or ``("setup_error", json)`` for a
    user error, ``("setup_crash", line)`` for anything else, then ends), then answers each
    :class:`BatchCase` it receives with ``("record", CaseRecord)``; ``None`` or a closed
    pipe ends it.
    """
    _exit_with_parent()
    try:
        runner = CaseRunner(setup)
    except LesionSuiteError as exc:
        connection.send(("setup_error", error_to_json(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported by the batch as an internal error
        connection.send(("setup_crash", internal_error_line(exc) + "\n" + traceback.format_exc()))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            case = connection.recv()
        except (EOFError, OSError):
            return
        if case is None:
            return
        connection.send(("record", runner.run(case)))


def _exit_with_parent() -> None:
    """End this process as soon as the batch's process is gone: an orphan must not go on
    publishing a case that the next run (which has no record of it) runs again."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

"""K worker processes that take cases one at a time, and survive each other's deaths.

Workers are spawned (not forked: a fork of a process whose torch/OpenMP threads have run
can hang, and CUDA cannot be forked), each loads the model once
(:class:`~lesion_core.batch.worker.CaseRunner`) and then receives one case at a time over
its own pipe, so a free worker always takes the next case and no case waits behind a slow
one. When a worker process dies in a case (a segmentation fault, the kernel's
out-of-memory killer), that case is recorded as crashed, a new worker takes its place and
the batch goes on; a worker that cannot load the model stops the batch with its error.

Ctrl-C is the batch's to handle: workers ignore SIGINT and are stopped with SIGTERM, which
:func:`~lesion_core.output_folder.publish` holds back while it moves a case's files into
place.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

from ..errors import error_from_json
from .cohort import BatchCase
from .records import CRASHED, CaseRecord, now_iso
from .worker import WorkerSetup, worker_main

#: Seconds a finished worker gets to exit by itself, and a stopped one after SIGTERM.
_EXIT_GRACE_S = 10.0


class WorkerStartError(RuntimeError):
    """A worker could not load the model for an internal reason (its traceback follows)."""


@dataclass
class _Slot:
    """One worker process, its end of the pipe, and the case it runs (None: idle)."""

    process: Any
    connection: Any
    case: BatchCase | None = None
    ready: bool = False
    released: bool = False  # told to end: no more cases


class WorkerPool:
    """Runs cases in ``workers`` spawned processes set up by ``setup``."""

    def __init__(self, setup: WorkerSetup, workers: int):
        self.setup = setup
        self.workers = max(1, int(workers))
        self.context = multiprocessing.get_context("spawn")

    def run(self, cases: Sequence[BatchCase], started: Callable[[BatchCase], None],
            finished: Callable[[CaseRecord], None]) -> None:
        """Run every case; ``started(case)`` as each is sent to a worker and
        ``finished(record)`` as each ends (in the calling process, in completion order).

        Raises:
            LesionSuiteError: a worker refused the model or device (the same error).
            WorkerStartError: a worker failed to start for another reason.
        """
        queue = deque(cases)
        slots = [self._start() for _ in range(min(self.workers, len(queue)))]
        try:
            # Released workers (no case left for them) end by themselves; _stop joins them.
            while any(not slot.released for slot in slots):
                wait([s.connection for s in slots] + [s.process.sentinel for s in slots],
                     timeout=1.0)
                for slot in list(slots):
                    self._drain(slot, queue, started, finished)
                    if slot.process.is_alive():
                        continue
                    # What it sent just before it ended (its last record) is still in the pipe.
                    self._drain(slot, queue, started, finished, assign=False)
                    slots.remove(slot)
                    slot.connection.close()
                    if slot.case is not None:  # died inside a case: the case is recorded
                        finished(_died(slot))
                        slot.case = None
                    elif not slot.ready:
                        raise WorkerStartError(
                            f"a batch worker ended while loading the model (exit code "
                            f"{slot.process.exitcode})")
                    if queue and len(slots) < self.workers:
                        slots.append(self._start())
        except BaseException:
            _stop(slots, graceful=False)
            raise
        _stop(slots, graceful=True)

    def _start(self) -> _Slot:
        mine, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(target=_worker_entry, args=(self.setup, theirs),
                                       name="lesion-suite-batch-worker")
        process.start()
        theirs.close()  # the child holds its end; ours must not keep EOF from showing
        return _Slot(process, mine)

    def _drain(self, slot: _Slot, queue: deque, started, finished, assign: bool = True
               ) -> None:
        """Handle every message the worker has sent, giving it its next case unless not
        ``assign`` (it has ended)."""
        while True:
            try:
                if not slot.connection.poll():
                    return
                kind, value = slot.connection.recv()
            except (EOFError, OSError):
                return
            if kind == "setup_error":
                raise error_from_json(value)
            if kind == "setup_crash":
                raise WorkerStartError(f"a batch worker could not start: {value}")
            if kind == "record":
                slot.case = None
                finished(value)
            slot.ready = True
            if assign:
                self._assign(slot, queue, started)

    @staticmethod
    def _assign(slot: _Slot, queue: deque, started) -> None:
        if slot.case is not None or slot.released:
            return
        case = queue.popleft() if queue else None
        try:
            slot.connection.send(case)
        except (OSError, ValueError):  # the worker is gone: the case waits for another
            if case is not None:
                queue.appendleft(case)
            return
        if case is None:
            slot.released = True
        else:
            slot.case = case
            started(case)


def _worker_entry(setup: WorkerSetup, connection) -> None:
    # Ctrl-C reaches the whole process group; the batch stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_main(setup, connection)


def _died(slot: _Slot) -> CaseRecord:
    case = slot.case
    code = slot.process.exitcode
    how = (f"was killed by signal {-code}" if code is not None and code < 0
           else f"ended with exit code {code}")
    return CaseRecord(case.case_id, case.path, CRASHED, series=case.series,
                      error=f"the worker process {how} while running this case (out of "
                            "memory, or a crash in a library)",
                      finished=now_iso(), worker_pid=slot.process.pid)


def _stop(slots: list[_Slot], graceful: bool) -> None:
    """End the workers: let released ones exit, terminate the others."""
    for slot in slots:
        if not graceful and slot.process.is_alive():
            slot.process.terminate()
    for slot in slots:
        slot.process.join(_EXIT_GRACE_S)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
        slot.connection.close()

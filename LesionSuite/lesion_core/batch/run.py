"""A batch run: this shard's cases, those still to do, the workers, the records, the summary.

:func:`run_batch` resumes by design: a case whose record says done (and whose folder is
still there) is skipped; a failed or crashed case is skipped too unless ``retry_failed``
(or its input path changed); every other case runs. Records are written as cases end, so
a run killed at any moment loses only the cases in flight, and the summary CSV is written
from all the shard's records at the end (also after Ctrl-C, with the cases not run marked
pending).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .cohort import BatchCase
from .pool import WorkerPool
from .records import CRASHED, DONE, FAILED, PENDING, BatchState, CaseRecord
from .shard import Shard
from .summary import summary_path, write_summary
from .worker import WorkerSetup


@dataclass(frozen=True)
class BatchPlan:
    """One batch run.

    Attributes:
        setup: what every worker needs (task, output folder, model loader, options).
        figure_columns: the task's key-figure columns of the summary.
        settings: what the results depend on (model, options, precision): kept in the
            output folder, and a rerun with others is refused.
        workers: worker processes (cases run in parallel).
        shard: the part of the cohort this run takes.
        retry_failed: run failed and crashed cases again.
    """

    setup: WorkerSetup
    figure_columns: tuple[str, ...] = ()
    settings: Mapping[str, object] = field(default_factory=dict)
    workers: int = 1
    shard: Shard = Shard()
    retry_failed: bool = False


@dataclass
class BatchOutcome:
    """How a run went: the shard's cases by status, what this run did, and where the
    summary is. ``seconds`` is this run's wall time; ``peak_mb`` the largest worker
    peak resident memory reported in this run (MB)."""

    cases: int
    counts: dict[str, int]
    skipped: int
    ran: int
    seconds: float
    peak_mb: float | None
    summary: Path

    @property
    def cases_per_minute(self) -> float | None:
        return 60.0 * self.ran / self.seconds if self.ran and self.seconds > 0 else None


def threads_per_worker(workers: int, environ: Mapping[str, str] | None = None) -> int:
    """The torch threads of each of ``workers`` processes: the cores this process may use
    split between them, at most ``OMP_NUM_THREADS`` when that is set."""
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, workers))
    cap = environ.get("OMP_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        threads = min(threads, int(cap))
    return threads


def pending_cases(cases: Sequence[BatchCase], state: BatchState, retry_failed: bool
                  ) -> tuple[list[BatchCase], dict[str, CaseRecord]]:
    """The cases to run, and the records of those that are not run again."""
    todo, kept = [], {}
    for case in cases:
        record = state.read(case.case_id)
        same_input = record is not None and (record.path, record.series) == (case.path,
                                                                              case.series)
        if same_input and (state.is_done(record)
                           or (record.status in (FAILED, CRASHED) and not retry_failed)):
            kept[case.case_id] = record
        else:
            todo.append(case)
    return todo, kept


def run_batch(cases: Sequence[BatchCase], plan: BatchPlan,
              on_record: Callable[[CaseRecord, int, int], None] | None = None,
              on_start: Callable[[int, int], None] | None = None) -> BatchOutcome:
    """Run this shard's cases of ``cases`` that are not finished yet.

    ``on_start(to_run, skipped)`` is called once the cases to run are known, and
    ``on_record(record, finished, to_run)`` as each case ends.

    Raises:
        CommandError: the output folder's results were made with other settings.
        LesionSuiteError: the workers cannot load the model (a bad ``--model`` or device).
    """
    began = time.monotonic()
    out = Path(plan.setup.out)
    mine = plan.shard.select(cases)
    state = BatchState(out, plan.shard.label)
    state.create()
    state.check_settings(plan.settings)
    todo, records = pending_cases(mine, state, plan.retry_failed)
    skipped = len(records)
    if on_start is not None:
        on_start(len(todo), skipped)
    ran: list[CaseRecord] = []

    def started(case: BatchCase) -> None:
        state.log("start", case.case_id)

    def finished(record: CaseRecord) -> None:
        state.write(record)  # the case's "done" marker: written after its files
        state.log(record.status, record.case_id, seconds=record.seconds)
        records[record.case_id] = record
        ran.append(record)
        if on_record is not None:
            on_record(record, len(ran), len(todo))

    summary = summary_path(out, plan.shard.label)
    try:
        if todo:
            WorkerPool(plan.setup, plan.workers).run(todo, started, finished)
    finally:
        rows = [records.get(c.case_id) or CaseRecord(c.case_id, c.path, PENDING, c.series)
                for c in mine]
        write_summary(summary, rows, plan.figure_columns)
    counts = {status: 0 for status in (DONE, FAILED, CRASHED)}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    peaks = [r.worker_peak_mb for r in ran if r.worker_peak_mb is not None]
    return BatchOutcome(len(mine), counts, skipped, len(ran), time.monotonic() - began,
                        max(peaks) if peaks else None, summary)

"""What a batch knows about its cases, kept on disk so that a rerun resumes.

Layout of an output folder ``OUT``:

* ``OUT/<case_id>/``: the task's files of one case, published all together or not at all
  (:func:`~lesion_core.output_folder.publish`);
* ``OUT/.batch/cases/<case_id>.json``: the case's :class:`CaseRecord` (done, failed or
  crashed, with its one-line error and seconds), written atomically *after* the case's
  files were published. A done record is the case's "done" marker: a case without one (it
  was running when the batch was killed) is run again, and its files replaced;
* ``OUT/.batch/settings.json``: the model and options the folder's results were made with;
  a rerun with others is refused, so one folder never mixes two models;
* ``OUT/.batch/events[.shard-I-of-N].jsonl``: one line per case started, done or failed,
  with the time and the worker's process id (an audit trail; nothing reads it to resume).

Only the batch's main process writes here (workers send their records back), and shards
have disjoint cases, so no two processes write the same file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..atomic import append_line, atomic_write_bytes
from ..errors import CommandError
from ..output_folder import WRITING_MARKER

#: The state folder inside the output folder (a case id never starts with a dot).
STATE_FOLDER = ".batch"
#: Case statuses: done; failed (a user error: bad input, refused by the head check);
#: crashed (an internal error or the worker process died); pending (not run yet).
DONE, FAILED, CRASHED, PENDING = "done", "failed", "crashed", "pending"


@dataclass
class CaseRecord:
    """How one case went.

    Attributes:
        case_id, path, series: the case (:class:`~lesion_core.batch.cohort.BatchCase`).
        status: :data:`DONE`, :data:`FAILED`, :data:`CRASHED` (or :data:`PENDING` in a
            summary row of a case not run yet).
        error: the one-line error of a failed or crashed case.
        seconds: wall time of the case in its worker (s), reading to publishing.
        figures: the task's key figures (:attr:`~lesion_core.tasks.Task.key_figures`).
        out_of_distribution: the head-check findings a forced result is marked with.
        finished: when the case ended (ISO 8601, UTC).
        worker_pid: the worker process that ran it.
        worker_peak_mb: that worker's peak resident memory so far (MB; None where the
            platform does not say).
        details: the traceback of a crash (the record only, not the summary).
    """

    case_id: str
    path: str
    status: str
    series: str | None = None
    error: str = ""
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    out_of_distribution: list[str] = field(default_factory=list)
    finished: str = ""
    worker_pid: int | None = None
    worker_peak_mb: float | None = None
    details: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CaseRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BatchState:
    """The records, settings and events of one output folder (see the module notes)."""

    def __init__(self, out: str | Path, shard_label: str = ""):
        self.out = Path(out)
        self.folder = self.out / STATE_FOLDER
        self.cases = self.folder / "cases"
        self.events = self.folder / (f"events.{shard_label}.jsonl" if shard_label
                                     else "events.jsonl")

    def create(self) -> None:
        self.cases.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ records
    def record_path(self, case_id: str) -> Path:
        return self.cases / f"{case_id}.json"

    def read(self, case_id: str) -> CaseRecord | None:
        """The case's record; None when it has none or an unreadable one (then it runs
        again, as a case that never finished)."""
        try:
            data = json.loads(self.record_path(case_id).read_text(encoding="utf-8"))
            return CaseRecord.from_dict(data)
        except (OSError, ValueError, TypeError):
            return None

    def write(self, record: CaseRecord) -> None:
        """Keep ``record`` (atomically: a kill leaves the old record or the new one)."""
        data = json.dumps(asdict(record), indent=1, default=str).encode()
        atomic_write_bytes(self.record_path(record.case_id), data)

    def is_done(self, record: CaseRecord | None) -> bool:
        """A done record whose case folder is still there and whole."""
        if record is None or record.status != DONE:
            return False
        folder = self.out / record.case_id
        return folder.is_dir() and not (folder / WRITING_MARKER).exists()

    # ----------------------------------------------------------------- settings
    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Keep ``settings`` for the folder, or refuse them when the folder holds results
        made with others (one :class:`~lesion_core.errors.CommandError`). Settings that
        made no record yet (a run that stopped on a wrong ``--model``) are replaced."""
        path = self.folder / "settings.json"
        wanted = json.loads(json.dumps(settings, default=str))
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            kept = None
        except (OSError, ValueError):
            kept = None  # damaged: this run's settings replace it
        if kept is not None and kept != wanted and self._has_records():
            differ = sorted(k for k in set(kept) | set(wanted) if kept.get(k) != wanted.get(k))
            raise CommandError(
                f"the results in this folder were made with other settings "
                f"({', '.join(differ)}: {', '.join(f'{kept.get(k)!r}' for k in differ)})",
                "rerun with the same model and options to resume, or give a new --out",
                self.out)
        if kept != wanted:
            atomic_write_bytes(path, json.dumps(wanted, indent=1, sort_keys=True).encode())

    def _has_records(self) -> bool:
        return next(self.cases.glob("*.json"), None) is not None

    # ------------------------------------------------------------------- events
    def log(self, event: str, case_id: str, **extra: Any) -> None:
        """Append one event line (time, event, case, process id and ``extra``)."""
        line = {"time": round(time.time(), 3), "event": event, "case_id": case_id,
                "pid": os.getpid(), **extra}
        append_line(self.events, (json.dumps(line, default=str) + "\n").encode())

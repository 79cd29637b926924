"""The cohort summary CSV of a batch, and the merge of several shards' summaries.

One row per case: ``case_id``, ``path``, ``status`` (done, failed, crashed or pending),
``error`` (one line), ``seconds`` (the case's wall time in its worker), the task's key
figures (:attr:`~lesion_core.tasks.Task.key_figures`: WMH ``lesion_ml``, ``brain_ml``,
``arwmc_total``; CMB ``cmb_count``; ICH ``present``, ``volume_ml``, ``subtypes``,
``scan_probability``) and ``out_of_distribution`` (the findings a ``--force`` result is
marked with). A batch writes ``OUT/batch_summary.csv``, a shard
``OUT/batch_summary.shard-I-of-N.csv``; both are rebuilt from the case records at the end of
every run, so a resumed run's summary has every row. Lists are joined with ``;``, true/false
is written 1/0, a figure a case lacks is empty.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..atomic import atomic_write_bytes
from ..errors import CommandError
from .records import DONE, CaseRecord

SUMMARY_NAME = "batch_summary.csv"
FIRST_COLUMNS = ("case_id", "path", "status", "error", "seconds")
LAST_COLUMNS = ("out_of_distribution",)
_SHARD_FILE = re.compile(r"^batch_summary\.shard-(\d+)-of-(\d+)\.csv$")


def summary_path(out: str | Path, shard_label: str = "") -> Path:
    """Where a batch (or the shard ``shard_label``) writes its summary in ``out``."""
    name = f"batch_summary.{shard_label}.csv" if shard_label else SUMMARY_NAME
    return Path(out) / name


def cell(value: Any) -> str:
    """A figure as CSV text (see the module notes)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def summary_row(record: CaseRecord) -> dict[str, str]:
    row = {"case_id": record.case_id, "path": record.path, "status": record.status,
           "error": record.error, "seconds": f"{record.seconds:.2f}" if record.seconds else ""}
    row.update({name: cell(value) for name, value in record.figures.items()})
    row["out_of_distribution"] = "; ".join(record.out_of_distribution)
    return row


def write_summary(path: str | Path, records: Iterable[CaseRecord],
                  figure_columns: Sequence[str]) -> Path:
    """Write one row per record, sorted by case id (atomically)."""
    rows = [summary_row(r) for r in sorted(records, key=lambda r: r.case_id)]
    return _write_rows(Path(path), rows, FIRST_COLUMNS + tuple(figure_columns) + LAST_COLUMNS)


def _write_rows(path: Path, rows: list[dict[str, str]], columns: Sequence[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


@dataclass
class MergeResult:
    """A merged summary: where it went, its rows by status and the shard files read."""

    path: Path
    counts: dict[str, int]
    shards: list[Path]


def merge_summaries(outs: Sequence[str | Path], into: str | Path | None = None,
                    allow_missing: bool = False) -> MergeResult:
    """Merge the shard summaries found in ``outs`` (output folders; shards that shared one
    folder, or each its own) into one CSV: ``into``, by default the first folder's
    ``batch_summary.csv``. A case in two shard files (the cohort changed between runs)
    keeps its done row.

    Raises:
        CommandError: no shard summary was found, shards of different N were found, or a
            shard's summary is missing (unless ``allow_missing``).
    """
    found: dict[int, Path] = {}
    counts: set[int] = set()
    for out in outs:
        folder = Path(out)
        if not folder.is_dir():
            raise CommandError("this is not a batch output folder", "give the --out folder "
                               "of the shards", folder)
        for path in sorted(folder.iterdir()):
            match = _SHARD_FILE.match(path.name)
            if match:
                found[int(match.group(1))] = path
                counts.add(int(match.group(2)))
    if not found:
        raise CommandError("no shard summary (batch_summary.shard-I-of-N.csv) was found",
                           "run `lesion-suite batch ... --shard I/N` first, into this folder",
                           Path(outs[0]))
    if len(counts) > 1:
        raise CommandError(f"the folders hold shards of different sizes "
                           f"(N = {', '.join(map(str, sorted(counts)))})",
                           "merge the shards of one split only (delete the old summaries)",
                           Path(outs[0]))
    total = counts.pop()
    missing = [i for i in range(total) if i not in found]
    if missing and not allow_missing:
        raise CommandError(f"the summaries of shard(s) {', '.join(map(str, missing))} of "
                           f"{total} are missing",
                           "run those shards first, or add --allow-missing to merge the others",
                           Path(outs[0]))
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    for index in sorted(found):
        header, shard_rows = _read_rows(found[index])
        columns += [c for c in header if c not in columns]
        for row in shard_rows:
            kept = rows.get(row["case_id"])
            if kept is None or kept.get("status") != DONE:
                rows[row["case_id"]] = row
    path = Path(into) if into is not None else summary_path(outs[0])
    ordered = [rows[k] for k in sorted(rows)]
    _write_rows(path, ordered, columns)
    tally: dict[str, int] = {}
    for row in ordered:
        tally[row.get("status", "")] = tally.get(row.get("status", ""), 0) + 1
    return MergeResult(path, tally, [found[i] for i in sorted(found)])


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"the shard summary cannot be read ({exc})",
                           "rerun that shard: its summary is rebuilt from its records",
                           path) from exc
    if "case_id" not in header:
        raise CommandError("the shard summary has no case_id column",
                           "rerun that shard: its summary is rebuilt from its records", path)
    return header, rows

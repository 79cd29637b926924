"""The CSV tables a user gives for training or evaluation (ratings, weak labels,
thick-slice labels, cohort tables) and the ``targets.json`` of a synthetic subject: read
as rows of text (or one JSON object), and the files they name checked, or one clear error
naming the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from .errors import CohortError, CommandError, LesionSuiteError


def read_csv_records(path: str | Path, error: type[LesionSuiteError] = CohortError,
                     fix: str = "give a CSV file with a header row and one row per case"
                     ) -> list[dict[str, str]]:
    """The rows of the CSV file at ``path`` as ``{column: text}``, in file order. A file
    that is missing, is not CSV text (a binary file), is empty or has no row under its
    header raises ``error`` (a :class:`LesionSuiteError`) with ``fix``: every table is
    read for its rows, so none is refused later, after a long start."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            records = list(reader)
            columns = reader.fieldnames
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise error(f"cannot read the table ({exc})", fix, path) from exc
    if not columns:
        raise error("the table is empty (not even a header row)", fix, path)
    if not records:
        raise error("the table has a header row but no rows", fix, path)
    return records


def read_subject_targets(path: str | Path, fix: str) -> dict[str, Any]:
    """The ``targets.json`` of a synthetic subject: a JSON object whose ``targets`` is an
    object (and ``acquisition``, when there, too). A file that cannot be read, is not
    JSON or is of another shape raises one :class:`CohortError` naming it, with ``fix``."""
    path = Path(path)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CohortError(f"the subject's targets cannot be read ({exc})", fix, path) from exc
    if not (isinstance(stored, dict) and isinstance(stored.get("targets"), dict)
            and isinstance(stored.get("acquisition", {}), dict)):
        raise CohortError("this is not a synthetic subject's targets (a JSON object with a "
                          "'targets' object)", fix, path)
    return stored


def check_files_exist(paths: Iterable[str | Path], source: str | Path | None) -> None:
    """Every file a training table (or store) names exists, checked before the long run
    starts; the first missing one, with how many more, is one :class:`CommandError`
    naming ``source``."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CommandError(f"{missing[0]}{more} does not exist",
                           "correct the paths in the table (relative paths are relative "
                           "to the table's folder)", source)

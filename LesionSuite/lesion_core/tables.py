"""The CSV tables a user gives for training (ratings, weak labels, thick-slice labels): read
as rows of text, or one clear error naming the file."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import LesionSuiteError


def read_csv_records(path: str | Path, error: type[LesionSuiteError] = LesionSuiteError
                     ) -> list[dict[str, str]]:
    """The rows of the CSV file at ``path`` as ``{column: text}``, in file order; a file
    that is missing or is not CSV text raises ``error`` (a :class:`LesionSuiteError`)."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise error(f"cannot read the table ({exc})", "give a CSV file", path) from exc

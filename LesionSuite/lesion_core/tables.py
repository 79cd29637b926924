"""The CSV tables a user gives for training (ratings, weak labels, thick-slice labels): read
as rows of text, and the files they name checked, or one clear error naming the table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from .errors import CommandError, LesionSuiteError


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

"""The cases of a batch: one image per case, listed from a folder or a CSV table.

* A folder: every image file in it (``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``) is a case
  named after the file without its suffixes, and every sub-folder is a DICOM series case
  named after the folder. Hidden entries and other files (sidecars, ``.raw`` data of a
  ``.nhdr``, Slicer ``.seg.nrrd`` segmentations) are left out.
* A CSV table with the columns ``case_id`` and ``path`` (and optionally ``series``, the
  SeriesInstanceUID to read from a DICOM folder of several): one case per row; a relative
  path is relative to the table's folder. A path that does not exist is not refused here:
  that case is recorded as failed and the others run.

Paths are made absolute (links are not resolved), so a rerun from another working folder
finds the same cases. A case id names the case's output folder, so it must be a plain folder name, and unique
(also ignoring case: two ids that differ only in case would share a folder on macOS and
Windows). Nothing here reads an image.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandError

#: Suffixes of the image files a folder listing takes (a folder is a DICOM series).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr")
#: Files that end like an image but are not an input image.
_NOT_INPUTS = (".seg.nrrd",)
#: The columns of a cases table (``series`` optional).
TABLE_COLUMNS = ("case_id", "path")


@dataclass(frozen=True)
class BatchCase:
    """One case: its id (the name of its output folder), its image (a file or a DICOM
    folder) and, for a DICOM folder of several series, the SeriesInstanceUID to read."""

    case_id: str
    path: str
    series: str | None = None


def list_cases(inputs: str | Path) -> list[BatchCase]:
    """The cases of ``inputs`` (a folder or a ``.csv`` table), sorted by case id.

    Raises:
        CommandError: ``inputs`` is neither, holds no case, or has a bad or repeated id.
    """
    # Absolute, so that a rerun from another working folder finds the same cases' records.
    inputs = Path(os.path.abspath(inputs))
    if inputs.is_dir():
        cases = _from_folder(inputs)
    elif inputs.is_file() and inputs.suffix.lower() == ".csv":
        cases = _from_table(inputs)
    elif inputs.exists():
        raise CommandError("--inputs is neither a folder of images nor a .csv table",
                           "give a folder (one image or DICOM series folder per case) or a "
                           "CSV table with case_id and path columns", inputs)
    else:
        raise CommandError("--inputs does not exist", "check the path", inputs)
    if not cases:
        raise CommandError("--inputs holds no case",
                           "give a folder with NIfTI/NRRD files or DICOM series folders, or a "
                           "table with at least one row", inputs)
    _check_ids(cases, inputs)
    return sorted(cases, key=lambda case: case.case_id)


def case_id_of(entry: Path) -> str | None:
    """The case id a folder listing gives ``entry`` (None: not an input image)."""
    name = entry.name
    if name.startswith("."):
        return None
    if entry.is_dir():
        return name
    lower = name.lower()
    if lower.endswith(_NOT_INPUTS):
        return None
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[:-len(suffix)]
    return None


def _from_folder(folder: Path) -> list[BatchCase]:
    cases = []
    for entry in sorted(folder.iterdir()):
        case_id = case_id_of(entry)
        if case_id is not None:
            cases.append(BatchCase(case_id, str(entry)))
    return cases


def _from_table(table: Path) -> list[BatchCase]:
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or ()]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"the cases table cannot be read ({exc})",
                           "give a UTF-8 CSV file with case_id and path columns", table) from exc
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise CommandError(f"the cases table lacks the column(s) {', '.join(missing)}",
                           "give a CSV file whose header has case_id,path (and optionally "
                           "series)", table)
    cases = []
    for line, row in enumerate(rows, start=2):
        if not row.get("case_id"):
            raise CommandError(f"line {line} of the cases table has no case_id",
                               "give every row a case id (its output folder name)", table)
        path = row.get("path", "")
        # Relative to the table, so a table travels with its images; an empty path stays
        # empty, and that case is recorded as failed by the reader's own message.
        if path and not Path(path).is_absolute():
            path = str(table.parent / path)
        cases.append(BatchCase(row["case_id"], path, row.get("series") or None))
    return cases


def _check_ids(cases: list[BatchCase], inputs: Path) -> None:
    seen: dict[str, BatchCase] = {}
    for case in cases:
        case_id = case.case_id
        if (case_id in (".", "..") or case_id.startswith(".") or "/" in case_id
                or "\\" in case_id or "\0" in case_id or case_id != case_id.strip()):
            raise CommandError(f"the case id {case_id!r} is not a plain folder name",
                               "give ids without folders, leading dots or outer spaces, "
                               "e.g. sub-001", inputs)
        other = seen.get(case_id.lower())
        if other is not None:
            raise CommandError(f"two cases have the id {case_id!r} ({other.path} and "
                               f"{case.path}; ids that differ only in case count as one)",
                               "give every case its own id (rename a file, or use a table)",
                               inputs)
        seen[case_id.lower()] = case

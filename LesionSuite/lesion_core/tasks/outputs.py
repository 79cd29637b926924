"""The output-file contract of a task: which files one prediction writes, and the checks its
torch-free readers share.

A task's ``predict`` writes a fixed set of files into an output folder, each with a *role*
(``labels``, ``summary``...). :class:`OutputFiles` names them (a ``{stem}`` in a name is the
stem the caller chose, for tasks that have one), so the writer, the readers, the command
line and the Slicer modules agree on one list. The readers of the tables and documents run
where torch and numpy may be missing (the Slicer GUI process), so this module imports
neither; a damaged file gives one :class:`~lesion_core.errors.UnreadableFileError` naming
it and saying to run the prediction again.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class OutputFiles:
    """File names of one prediction's outputs, by role.

    Attributes:
        names: role -> file name; ``{stem}`` is replaced by the stem.
        default_stem: the stem when the caller gives none (``""`` for fixed names).
    """

    names: Mapping[str, str]
    default_stem: str = ""

    def paths(self, folder: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Role -> path of each output file in ``folder``."""
        stem = stem or self.default_stem
        return {role: Path(folder) / name.format(stem=stem) for role, name in self.names.items()}

    def create(self, folder: str | Path, stem: str | None = None) -> dict[str, Path]:
        """:meth:`paths`, with ``folder`` created (for a writer)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        return self.paths(folder, stem)


@dataclass(frozen=True)
class FileCheck:
    """How a torch-free reader reports a damaged output file: ``what`` names the file
    ("the ICH summary file"), ``fix`` says what to do (run the prediction again)."""

    what: str
    fix: str = field(default="Run the prediction again to write the output folder anew")

    def error(self, problem: str, path: str | Path):
        from ..errors import UnreadableFileError

        return UnreadableFileError(problem, self.fix, source=path)

    def text(self, path: str | Path) -> str:
        """The file's text; a missing or unreadable file is one clear error."""
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise self.error(f"{self.what} is missing", path) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(f"{self.what} cannot be read ({exc})", path) from exc

    def json(self, path: str | Path) -> Any:
        """The file parsed as JSON; invalid JSON is one clear error."""
        try:
            return json.loads(self.text(path))
        except ValueError as exc:
            raise self.error(f"{self.what} cannot be read: it is not valid JSON ({exc})",
                             path) from exc

    def checked_json(self, path: str | Path, keys: tuple[str, ...],
                     problem_of: Callable[[dict], str | None]) -> dict:
        """The file parsed as a JSON object with ``keys``, then checked by
        ``problem_of(data)``, which says what is wrong ("has a volume_ml that is not a
        number"), or None; a problem is one clear error naming the file."""
        data = self.json(path)
        problem = object_problem(data, keys) or problem_of(data)
        if problem:
            raise self.error(f"{self.what} {problem}", path)
        return data

    def csv_records(self, path: str | Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
        """The rows of a CSV file as ``(line number, {column: text})``; a file that cannot
        be parsed or lacks one of ``columns`` is one clear error."""
        text = self.text(path)
        try:
            reader = csv.DictReader(text.splitlines())
            header = tuple(reader.fieldnames or ())
            records = list(reader)
        except csv.Error as exc:
            raise self.error(f"{self.what} cannot be parsed ({exc})", path) from exc
        missing = [c for c in columns if c not in header]
        if missing:
            raise self.error(f"{self.what} lacks the column(s) {', '.join(missing)}", path)
        return list(enumerate(records, start=2))

    def bad_line(self, line: int, problem: str, path: str | Path):
        """The error for one line of a table (``problem``: "has a value that is not...")."""
        return self.error(f"line {line} of {self.what} {problem}", path)


def object_problem(data: Any, keys: tuple[str, ...], kind: str = "a JSON object"
                   ) -> str | None:
    """What is wrong with ``data`` where ``kind`` with ``keys`` is expected: that it is not
    one, or the keys it lacks; None when nothing is."""
    if not isinstance(data, dict):
        return f"is not {kind}"
    missing = [k for k in keys if k not in data]
    return f"lacks {', '.join(missing)}" if missing else None


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what a checked JSON number must be."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))

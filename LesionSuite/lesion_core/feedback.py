"""The feedback store: every decision a reader makes, written at once and never lost.

Layout, one folder per case under the store root::

    <root>/<case_id>/records.jsonl          append-only, one JSON record per line
    <root>/<case_id>/labels/<name>_v001.nii.gz   reader label images, one file per version
    <root>/<case_id>/case.json              optional facts about the case (atomic rewrite)
    <root>/<case_id>/.lock                  advisory lock file taken around every write

Durability: a record is encoded to one line of bytes and written with a single
``os.write`` on a file opened in append mode, then ``fsync``-ed, while an exclusive
advisory lock on ``.lock`` is held, so two processes writing to one case interleave whole
lines and a crash loses at most the record in flight. A write that was torn by a crash
leaves a last line without a newline; the next append first ends that line, so the new
record never merges with the torn bytes.

Reading: a torn *last* line is skipped with a :class:`FeedbackStoreWarning`. An unreadable
line in the *middle* (a torn write sealed by later appends, or damage) is also skipped with
a warning and listed in :attr:`ReadResult.problems`, so every other decision stays usable;
``strict=True`` raises :class:`~lesion_core.errors.FeedbackStoreError` (file, line) instead.

State: :meth:`CaseFeedback.state` replays the records; for each ``(kind, target)`` the
latest record that is not undone wins. An ``"undo"`` record names the ``record_id`` it
undoes in its payload (``{"undoes": ...}``); undoing an undo restores the record again.
Label images are written to a temporary file, fsync-ed and renamed into place under a new
version number, so no earlier reader label is ever overwritten.
"""

from __future__ import annotations

import getpass
import json
import re
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import append_line, atomic_write, atomic_write_bytes, file_lock
from .errors import FeedbackStoreError
from .volume import Volume

RECORDS_FILE = "records.jsonl"
LABELS_DIR = "labels"
CASE_INFO_FILE = "case.json"
LOCK_FILE = ".lock"
UNDO_KIND = "undo"
LABEL_KIND = "label_image"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@=-]{0,199}$")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}
_REQUIRED = ("record_id", "case_id", "reader", "time", "kind", "target", "payload")


class FeedbackStoreWarning(UserWarning):
    """A line of a records file was skipped because it could not be read."""


def _check_name(value: str, what: str, source: Path | None = None) -> str:
    """Refuse ids that could escape the store folder or are not portable file names."""
    if not isinstance(value, str) or not _ID_RE.match(value) or value.endswith(".") \
            or value.split(".")[0].upper() in _WINDOWS_RESERVED:
        raise FeedbackStoreError(
            f"{what} {value!r} is not allowed",
            "Use 1-200 letters, digits and . _ - + @ =, starting with a letter or digit "
            "(no path separators, spaces or '..')", source=source)
    return value


def _check_storable(value: Any, source: Path) -> None:
    """Refuse a record (or its payload) that strict JSON cannot hold, before anything is
    written: a refused decision is reported to the reader, never half-saved."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        if "Out of range float" not in str(exc):  # e.g. a circular reference
            raise FeedbackStoreError(f"the payload cannot be stored as JSON ({exc})",
                                     "Pass only strings, numbers, lists and dicts",
                                     source=source) from exc
        raise FeedbackStoreError(
            "the payload holds NaN or infinity, which JSON cannot store; the decision was "
            "not saved", "Store a finite number, or None for a missing value",
            source=source) from exc
    except TypeError as exc:
        raise FeedbackStoreError(f"the payload cannot be stored as JSON ({exc})",
                                 "Pass only strings, numbers, lists and dicts",
                                 source=source) from exc


def _login_name() -> str:
    """The operating-system user, recorded when the caller names no reader."""
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers) or no environment
        return "unknown"


def utc_now() -> str:
    """The current UTC time as ISO 8601 with a ``Z`` suffix, millisecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    """One reader decision, as stored on one line of ``records.jsonl``."""

    record_id: str
    case_id: str
    reader: str
    time: str
    kind: str
    target: str
    payload: dict[str, Any] = field(default_factory=dict)
    model_id: str | None = None
    model_version: str | None = None

    def to_line(self) -> bytes:
        """The record as one UTF-8 JSON line ending in ``\\n`` (no newline inside).

        Strict JSON: NaN and infinity raise ``ValueError`` (Python would write a bare
        ``NaN``, which other JSON readers refuse). Reading stays lenient, so records written
        before this rule remain readable."""
        return (json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"),
                           allow_nan=False) + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> "Record":
        """Build from a parsed line; ``ValueError`` when fields are missing or mistyped."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        if not isinstance(data["payload"], dict):
            raise ValueError("payload is not an object")
        known = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ReadProblem:
    """A line of the records file that was skipped."""

    line: int
    reason: str
    torn_tail: bool = False


@dataclass
class ReadResult:
    """The records that could be read, in file order, and the lines that were skipped."""

    records: list[Record]
    problems: list[ReadProblem]
    path: Path


@dataclass
class FeedbackState:
    """The effective decisions of a case: for each ``(kind, target)`` the winning record."""

    decisions: dict[tuple[str, str], Record]
    undone: set[str]

    def get(self, kind: str, target: str) -> Record | None:
        """The winning record for one target, or ``None`` if no decision stands."""
        return self.decisions.get((kind, target))

    def of_kind(self, kind: str) -> dict[str, Record]:
        """``target -> record`` for every standing decision of one kind."""
        return {t: r for (k, t), r in self.decisions.items() if k == kind}


class CaseFeedback:
    """The decisions and label images of one case; create through :meth:`FeedbackStore.case`."""

    def __init__(self, root: Path, case_id: str):
        self.case_id = _check_name(case_id, "case id", root)
        self.folder = Path(root) / case_id
        self.records_path = self.folder / RECORDS_FILE
        self.labels_dir = self.folder / LABELS_DIR

    # ----------------------------------------------------------------- writing
    def _ensure_folder(self) -> None:
        try:
            self.labels_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeedbackStoreError(f"cannot create the case folder ({exc.strerror})",
                                     "Choose a feedback folder you may write to",
                                     source=self.folder) from exc

    def _append_locked(self, record: Record) -> None:
        try:
            append_line(self.records_path, record.to_line())
        except OSError as exc:
            raise FeedbackStoreError(f"cannot write the decision ({exc})",
                                     "Check that the disk is not full and the folder is "
                                     "writable; the decision was not saved",
                                     source=self.records_path) from exc

    def _new_record(self, kind: str, target: str, payload: dict[str, Any], reader: str | None,
                    model_id: str | None, model_version: str | None) -> Record:
        reader = str(reader) if reader else _login_name()
        return Record(record_id=str(uuid.uuid4()), case_id=self.case_id, reader=reader,
                      time=utc_now(), kind=kind, target=str(target), payload=payload,
                      model_id=model_id, model_version=model_version)

    def record(self, kind: str, target: str, payload: dict[str, Any] | None = None,
               reader: str | None = None, model_id: str | None = None,
               model_version: str | None = None) -> Record:
        """Write one decision at once (fsync-ed before returning) and return it."""
        if not kind or not isinstance(kind, str):
            raise FeedbackStoreError("a decision needs a kind", "Pass e.g. kind='cmb.candidate'",
                                     source=self.records_path)
        rec = self._new_record(kind, target, dict(payload or {}), reader, model_id,
                               model_version)
        _check_storable(asdict(rec), self.records_path)
        self._ensure_folder()
        with file_lock(self.folder / LOCK_FILE):
            self._append_locked(rec)
        return rec

    def undo(self, record_id: str, reader: str | None = None) -> Record:
        """Undo a standing record (undoing an ``undo`` record redoes what it undid)."""
        result = self.read()
        by_id = {r.record_id: r for r in result.records}
        if record_id not in by_id:
            raise FeedbackStoreError(f"there is no record {record_id!r} to undo",
                                     "Pass the record_id of a decision of this case",
                                     source=self.records_path)
        if record_id in _replay(result.records).undone:
            raise FeedbackStoreError(f"record {record_id!r} is already undone",
                                     "Undo the undo record instead to restore it",
                                     source=self.records_path)
        target = by_id[record_id]
        return self.record(UNDO_KIND, target.target, {"undoes": record_id, "kind": target.kind},
                           reader=reader, model_id=target.model_id,
                           model_version=target.model_version)

    # ----------------------------------------------------------------- reading
    def read(self, strict: bool = False) -> ReadResult:
        """Parse ``records.jsonl`` (missing file: no records); see the module notes."""
        records: list[Record] = []
        problems: list[ReadProblem] = []
        try:
            raw = self.records_path.read_bytes()
        except FileNotFoundError:
            return ReadResult(records, problems, self.records_path)
        except OSError as exc:
            raise FeedbackStoreError(f"cannot read the decisions ({exc})",
                                     "Check the file permissions", self.records_path) from exc
        lines = raw.split(b"\n")
        complete = raw.endswith(b"\n")
        if complete:
            lines.pop()  # the empty string after the final newline
        for number, line in enumerate(lines, start=1):
            is_tail = number == len(lines) and not complete
            try:
                records.append(Record.from_dict(json.loads(line.decode("utf-8"))))
                continue
            except (UnicodeDecodeError, ValueError, TypeError) as exc:
                reason = str(exc) if line.strip() else "empty line"
            if is_tail:
                problems.append(ReadProblem(number, f"torn last line ({reason})", True))
                warnings.warn(f"{self.records_path}: line {number} was cut off by an "
                              "interrupted write and is ignored", FeedbackStoreWarning,
                              stacklevel=2)
                continue
            if strict:
                raise FeedbackStoreError(
                    f"line {number} is not a valid record ({reason})",
                    "Open the file in a text editor and repair or delete that line (keep a "
                    "copy first); the other lines are intact", source=self.records_path)
            problems.append(ReadProblem(number, reason))
            warnings.warn(f"{self.records_path}: line {number} is not a valid record "
                          f"({reason}) and is ignored", FeedbackStoreWarning, stacklevel=2)
        return ReadResult(records, problems, self.records_path)

    def records(self, strict: bool = False) -> list[Record]:
        """Every readable record in the order written."""
        return self.read(strict).records

    def state(self, strict: bool = False) -> FeedbackState:
        """Replay the records: latest non-undone record per ``(kind, target)``."""
        return _replay(self.read(strict).records)

    # ------------------------------------------------------------ label images
    def label_versions(self, name: str) -> list[Path]:
        """Every stored version of one label image, oldest first."""
        _check_name(name, "label name", self.labels_dir)
        pattern = re.compile(rf"^{re.escape(name)}_v(\d+)\.nii\.gz$")
        files = self.labels_dir.iterdir() if self.labels_dir.is_dir() else []
        found = sorted((int(m.group(1)), p) for p in files if (m := pattern.match(p.name)))
        return [p for _, p in found]

    def save_label_image(self, name: str, volume: Volume, reader: str | None = None,
                         model_id: str | None = None, model_version: str | None = None,
                         payload: dict[str, Any] | None = None) -> Record:
        """Store a new version of a reader label image (temp file, fsync, rename to the next
        free version number: earlier versions are never overwritten) and record it."""
        import nibabel as nib

        _check_name(name, "label name", self.labels_dir)
        _check_storable([payload, model_id, model_version],  # before the image is written
                        self.records_path)
        self._ensure_folder()
        array = np.asarray(volume.array)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        elif array.dtype.kind in "iu" and array.dtype.itemsize == 8:  # NIfTI tools dislike int64
            if array.size == 0 or (array.min() >= -2**31 and array.max() < 2**31):
                array = array.astype(np.int32)
        image = nib.Nifti1Image(array, np.asarray(volume.affine, np.float64), dtype=array.dtype)
        with file_lock(self.folder / LOCK_FILE):
            versions = self.label_versions(name)
            number = 1 + (int(versions[-1].name[len(name) + 2:-7]) if versions else 0)
            final = self.labels_dir / f"{name}_v{number:03d}.nii.gz"
            try:
                atomic_write(final, lambda tmp: nib.save(image, str(tmp)), overwrite=False)
            except OSError as exc:
                raise FeedbackStoreError(f"cannot write the label image ({exc})",
                                         "Check free disk space and folder permissions; "
                                         "earlier versions are untouched", final) from exc
            body = {**(payload or {}), "file": f"{LABELS_DIR}/{final.name}",
                    "version": number, "shape": list(array.shape), "dtype": str(array.dtype)}
            rec = self._new_record(LABEL_KIND, name, body, reader, model_id, model_version)
            self._append_locked(rec)
        return rec

    def load_label_image(self, name: str, version: int | None = None) -> Volume:
        """Load the standing version of a label image (or a given ``version`` number).

        "Standing" is the file of the latest non-undone ``label_image`` record; with no
        such record (e.g. a crash between writing the file and its record) the highest
        version on disk.
        """
        import nibabel as nib

        versions = self.label_versions(name)
        if version is not None:
            path = self.labels_dir / f"{name}_v{version:03d}.nii.gz"
        else:
            rec = self.state().get(LABEL_KIND, name)
            if rec and isinstance(rec.payload.get("file"), str):  # only its name: stay inside
                path = self.labels_dir / Path(rec.payload["file"]).name
            else:
                path = versions[-1] if versions else self.labels_dir / f"{name}_v001.nii.gz"
        if not path.is_file():
            raise FeedbackStoreError(f"there is no label image {name!r}"
                                     + (f" version {version}" if version else ""),
                                     "Save one first, or pick a name from label_versions()",
                                     source=path)
        try:
            img = nib.load(str(path))
            array = np.asarray(img.dataobj)
        except Exception as exc:  # nibabel raises many types for damaged files
            raise FeedbackStoreError(f"the label image cannot be read ({exc})",
                                     "Load an earlier version (version=...)", path) from exc
        return Volume(array, img.affine, source=str(path), meta={"label_name": name})

    # --------------------------------------------------------------- case info
    def write_info(self, info: dict[str, Any]) -> None:
        """Replace ``case.json`` atomically (e.g. image source, study date)."""
        self._ensure_folder()
        with file_lock(self.folder / LOCK_FILE):
            atomic_write_bytes(self.folder / CASE_INFO_FILE,
                                json.dumps(info, indent=2, ensure_ascii=False).encode("utf-8"))

    def info(self) -> dict[str, Any]:
        """The contents of ``case.json``, or ``{}`` when there is none."""
        path = self.folder / CASE_INFO_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except ValueError as exc:
            raise FeedbackStoreError(f"case.json is not valid JSON ({exc})",
                                     "Delete or repair case.json; decisions are unaffected",
                                     source=path) from exc


def _replay(records: list[Record]) -> FeedbackState:
    """Effective state: a record stands unless an undo that itself stands names it."""
    undoers: dict[str, list[str]] = {}
    for r in records:
        if r.kind == UNDO_KIND and isinstance(r.payload.get("undoes"), str):
            undoers.setdefault(r.payload["undoes"], []).append(r.record_id)
    standing: dict[str, bool] = {}
    # Undos always come after what they undo, so walking backwards settles every undo
    # before the records it names.
    for r in reversed(records):
        undone_by = undoers.get(r.record_id, ())
        standing[r.record_id] = not any(standing.get(u, False) for u in undone_by)
    decisions: dict[tuple[str, str], Record] = {}
    for r in records:
        if r.kind != UNDO_KIND and standing[r.record_id]:
            decisions[(r.kind, r.target)] = r
    return FeedbackState(decisions, {rid for rid, ok in standing.items() if not ok})


class FeedbackStore:
    """A folder of cases; nothing is created until the first decision is written."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def case(self, case_id: str) -> CaseFeedback:
        """The feedback of one case (validated id; the folder is created on first write)."""
        return CaseFeedback(self.root, case_id)

    def cases(self) -> list[str]:
        """Ids of the cases that hold any records or label images, sorted."""
        folders = sorted(self.root.iterdir()) if self.root.is_dir() else []
        return [p.name for p in folders if p.is_dir() and _ID_RE.match(p.name) and (
            (p / RECORDS_FILE).is_file() or any((p / LABELS_DIR).glob("[!.]*.nii.gz")))]

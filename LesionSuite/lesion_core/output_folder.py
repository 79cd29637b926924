"""All-or-nothing output folders: a prediction's files appear complete, or not at all.

:func:`publish` has the writer write every file into a private staging folder inside the
output folder, makes them durable, then moves them into place by renames (one filesystem,
so each is atomic) with Ctrl-C and SIGTERM held back for those few microseconds. A kill
before the moves leaves the earlier result untouched (and a staging folder that the next
run removes); a SIGKILL inside the moves leaves the :data:`WRITING_MARKER` file, which
:func:`check_complete` turns into one clear error for every reader, so a mix of old and new
files is never read as a result.

:func:`check_output_folder` refuses an ``--out`` that cannot become a folder (it is a file,
lies under one, or cannot be written) before any computation starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .atomic import atomic_write_bytes, fsync_dir, fsync_file
from .errors import CommandError, UnreadableFileError

#: Present in an output folder only while (or if killed while) files are moved into place.
WRITING_MARKER = ".lesion-suite-writing"
_STAGING_PREFIX = ".staging-"


def check_output_folder(out: str | Path, option: str = "--out") -> Path:
    """``out`` as a Path, when it is a folder or can be created as one; otherwise one
    :class:`~lesion_core.errors.CommandError` naming it (checked before long work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{option} names an existing file, not a folder",
                           f"give a folder (new or existing) as {option}", out)
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CommandError(f"{option} lies under {parent}, which is a file",
                           f"give a folder path as {option}", out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{parent} cannot be written (permission denied)",
                           f"give a folder you can write to as {option}", out)
    return out


def plain_file_stem(stem: str, option: str = "--stem") -> str:
    """``stem`` when it is a plain file name (no folder part, not ``.``/``..``), so that
    outputs stay inside their folder; otherwise one CommandError."""
    if (not stem or stem in (".", "..") or "/" in stem or "\\" in stem or "\0" in stem
            or stem != stem.strip()):
        raise CommandError(f"{option} {stem!r} is not a plain file name",
                           f"give {option} a name without folders, e.g. 'subject01'")
    return stem


def publish(out: str | Path, write: Callable[[Path], dict[str, Path]]) -> dict[str, Path]:
    """Call ``write(staging)`` (role -> path of each file it wrote there), then move those
    files into ``out`` all together; returns role -> final path. Files of ``out`` that the
    writer did not write (another stem's result) are left alone."""
    out = check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(out)
    staging = out / f"{_STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        written = write(staging)
        names = {role: Path(path).name for role, path in written.items()}
        for name in names.values():
            fsync_file(staging / name)
        with _signals_held():
            atomic_write_bytes(out / WRITING_MARKER, json.dumps(sorted(names.values())).encode())
            for name in names.values():
                os.replace(staging / name, out / name)
            fsync_dir(out)
            (out / WRITING_MARKER).unlink()
            fsync_dir(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {role: out / name for role, name in names.items()}


def check_complete(folder: str | Path, fix: str) -> None:
    """Refuse to read ``folder`` when a write into it was killed half way (one
    :class:`~lesion_core.errors.UnreadableFileError`, ``fix`` saying how to redo it)."""
    marker = Path(folder) / WRITING_MARKER
    if marker.exists():
        raise UnreadableFileError("the result in this folder was interrupted while it was "
                                  "being written, so its files may mix two runs", fix, folder)


def _remove_abandoned_staging(out: Path) -> None:
    """Delete staging folders of earlier runs that were killed (their process is gone)."""
    for path in out.glob(f"{_STAGING_PREFIX}*"):
        pid = path.name[len(_STAGING_PREFIX):].split("-", 1)[0]
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block and deliver them after it (only the
    main thread can install handlers; elsewhere the block runs as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    kinds = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {kind: signal.signal(kind, lambda number, frame: received.append(number))
                for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, handler)
        if received:
            signal.raise_signal(received[0])  # the original handler acts now

"""Crash-safe file writing shared by the feedback store and the model bundles.

- :func:`file_lock`: an exclusive advisory lock on a lock file (``fcntl.flock`` on POSIX,
  ``msvcrt.locking`` on Windows), held for a ``with`` block, between processes.
- :func:`atomic_write`: produce a file under a temporary name in the same folder, fsync
  it and rename it into place, so readers see the old file or the new one, never half.
- :func:`append_line`: append one complete line with a single ``os.write`` and fsync;
  when the file ends in a torn line (a write cut off by a crash), end that line first.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None
try:  # Windows
    import msvcrt as _msvcrt
except ImportError:
    _msvcrt = None

_BINARY = getattr(os, "O_BINARY", 0)


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if needed; blocks)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
    try:
        if _fcntl is not None:
            _fcntl.flock(fd, _fcntl.LOCK_EX)
        elif _msvcrt is not None:  # pragma: no cover - Windows
            while True:  # LK_LOCK gives up after about 10 s; keep waiting
                try:
                    _msvcrt.locking(fd, _msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
        yield
    finally:
        try:
            if _fcntl is not None:
                _fcntl.flock(fd, _fcntl.LOCK_UN)
            elif _msvcrt is not None:  # pragma: no cover - Windows
                os.lseek(fd, 0, os.SEEK_SET)
                _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or file creation in ``folder`` durable (no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (opened for writing: Windows needs that)."""
    fd = os.open(path, os.O_RDWR | _BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object], overwrite: bool = True) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it there.

    The temporary name keeps ``path``'s suffixes (``.nii.gz``), so writers that choose the
    format by extension work. With ``overwrite=False`` an existing ``path`` raises
    ``FileExistsError`` (callers hold a lock so that no other writer races them).
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        fsync_file(tmp)
        if not overwrite and path.exists():
            raise FileExistsError(f"{path.name} already exists")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = True) -> None:
    """:func:`atomic_write` of a bytes object."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=overwrite)


def append_line(path: Path, line: bytes) -> None:
    """Append ``line`` (one line ending in ``\\n``) durably; call it under a lock.

    If the file ends without a newline (a torn earlier write), a newline is written first,
    in the same ``os.write``, so the new line never merges with the torn bytes.
    """
    if not line.endswith(b"\n") or b"\n" in line[:-1]:
        raise ValueError("append_line takes exactly one line ending in a newline")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _BINARY, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size > 0:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        fsync_dir(Path(path).parent)

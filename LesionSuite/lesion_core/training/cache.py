"""Preprocessed training arrays kept on disk, so a subject is read, resampled and
normalised once, not at every run (and never re-synthesised per step).

An entry is one ``.npz`` (arrays only, read with ``allow_pickle=False``) named by a SHA-256
of what it was made from: the source files' paths, sizes and modification times and the
preprocessing settings. A changed file or setting is a new key, so a stale entry is never
read; entries are written atomically, so a killed preparation leaves no torn file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import numpy as np

from ..atomic import atomic_write

T = TypeVar("T")
R = TypeVar("R")

#: Where caches go when no folder is given: ``$LESION_SUITE_CACHE`` or ``~/.cache/lesion-suite``.
CACHE_ENV = "LESION_SUITE_CACHE"


def default_cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lesion-suite")


def _jsonable(part: Any) -> Any:
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        return {type(part).__name__: _jsonable(dataclasses.asdict(part))}
    if isinstance(part, Path):
        stat = part.stat() if part.exists() else None
        return {"file": str(part.resolve()),
                "size": stat.st_size if stat else None, "mtime_ns": stat.st_mtime_ns if stat else None}
    if isinstance(part, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(part.items(), key=lambda kv: str(kv[0]))}
    if isinstance(part, (list, tuple)):
        return [_jsonable(v) for v in part]
    return part


def cache_key(*parts: Any) -> str:
    """A hex key for ``parts``: JSON-able values, dataclass configs and :class:`Path` s
    (a path stands for its file's identity: resolved name, size, modification time)."""
    text = json.dumps(_jsonable(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_arrays(folder: str | Path | None, key_parts: Sequence[Any],
                  compute: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``compute()`` returns, from ``folder`` when an entry for ``key_parts``
    exists there, else computed and stored (``folder`` None: no cache)."""
    if folder is None:
        return {k: np.asarray(v) for k, v in compute().items()}
    path = Path(folder) / f"{cache_key(*key_parts)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
    return arrays


def parallel_map(function: Callable[[T], R], items: Iterable[T], workers: int | None = None
                 ) -> list[R]:
    """``[function(item) for item in items]`` in ``workers`` processes (default: the CPU
    count, at most 4), in order; ``function`` must be importable (module level)."""
    items = list(items)
    workers = min(workers or min(os.cpu_count() or 1, 4), len(items) or 1)
    if workers <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(function, items))

"""Training checkpoints: everything a run needs to go on exactly where it stopped.

One file, ``checkpoint.pt`` in the run's folder, replaced atomically (written beside it,
fsynced, renamed), so a kill at any moment leaves the previous checkpoint intact. It holds
weights, optimiser and scheduler state, every random state (global torch, the sampler's
torch and NumPy generators, the sampler's own position), the step, the history and the
wall time so far. It is read with ``torch.load(weights_only=True)``: tensors, numbers,
strings, lists and dicts only, no pickled objects.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes
from ..errors import LesionSuiteError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(LesionSuiteError):
    """A checkpoint cannot be read or belongs to a run with other settings."""


def checkpoint_path(folder: str | Path) -> Path:
    return Path(folder) / CHECKPOINT_NAME


def save_checkpoint(folder: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format version) as the folder's checkpoint, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({**payload, "format_version": FORMAT_VERSION}, buffer)
    path = checkpoint_path(folder)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    """The folder's checkpoint, or ``None`` when it has none.

    Raises:
        CheckpointError: the file is unreadable or from another format version.
    """
    path = checkpoint_path(folder)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the same to the user
        # torch's own message suggests weights_only=False, which we never do.
        raise CheckpointError(f"the training checkpoint is unreadable ({type(exc).__name__})",
                              "Delete that file to start the run from scratch",
                              source=path) from exc
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by another version of LesionSuite",
                              "Delete that file to start the run from scratch", source=path)
    return payload

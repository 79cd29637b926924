"""Where model bundles live: the repository's shipped ``Models`` folder and a user's own.

Torch-free on purpose: the Slicer panels ask for these folders in their ``setup()``, before
the hub has installed torch, and :mod:`lesion_core.bundle` (which reads weights) imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the user models folder.
USER_MODELS_ENV = "LESION_SUITE_MODELS"


def default_models_dir() -> Path:
    """The ``Models`` folder shipped in the repository beside ``lesion_core`` (may not exist)."""
    return Path(__file__).resolve().parent.parent / "Models"


def user_models_dir() -> Path:
    """A user's own models: ``$LESION_SUITE_MODELS``, else ``~/.lesion-suite/models``."""
    env = os.environ.get(USER_MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".lesion-suite" / "models"

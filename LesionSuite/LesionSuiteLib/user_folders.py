"""Where the task modules keep a user's feedback and fine-tuned models by default.

Both sit beside the user models folder (``~/.lesion-suite/models`` unless
``LESION_SUITE_MODELS`` says otherwise): ``feedback/<task>`` holds the reader's decisions
(one feedback store per task) and new models go into the models folder itself, where the
LesionSuite hub lists them.

The panels ask for these folders in their ``setup()``, which runs before the hub has
installed torch, so this module must not import :mod:`lesion_core.bundle` (it imports
torch). :func:`user_models_dir` therefore applies the bundle module's rule itself; a test
checks that the two agree.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

#: Environment variable naming the user models folder (as in :mod:`lesion_core.bundle`).
USER_MODELS_ENV = "LESION_SUITE_MODELS"


def user_models_dir() -> Path:
    """A user's own models: ``$LESION_SUITE_MODELS``, else ``~/.lesion-suite/models``."""
    env = os.environ.get(USER_MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".lesion-suite" / "models"


def default_feedback_root(task: str) -> Path:
    """``<user folder>/feedback/<task>``, e.g. ``~/.lesion-suite/feedback/cmb``."""
    return user_models_dir().parent / "feedback" / task


def new_model_folder(stem: str, base: str | Path | None = None) -> Path:
    """A new, not yet existing folder ``<stem>_<date>-<time>`` for a fine-tuned model, in
    ``base`` (default: the user models folder)."""
    base = Path(base) if base else user_models_dir()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = base / f"{stem}_{stamp}", 1
    while folder.exists():
        n += 1
        folder = base / f"{stem}_{stamp}-{n}"
    return folder

"""Where the task modules keep a user's feedback and fine-tuned models by default.

Both sit beside the user models folder (``~/.lesion-suite/models`` unless
``LESION_SUITE_MODELS`` says otherwise): ``feedback/<task>`` holds the reader's decisions
(one feedback store per task) and new models go into the models folder itself, where the
LesionSuite hub lists them.

The user models folder itself is :func:`lesion_core.model_folders.user_models_dir`
(torch-free, so the panels can ask for it in ``setup()`` before torch is installed).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from lesion_core.model_folders import user_models_dir


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

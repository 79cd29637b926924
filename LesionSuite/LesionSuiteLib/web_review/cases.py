"""The case queue of a review station: every prediction folder under a folder.

A case is one task's result (:func:`lesion_core.report.folders.detect` over the folders
``lesion-suite report`` walks) with the image it was made from:

- the image the result's summary names, when that file is there;
- else the demo's layout, ``<out>/synthetic/<subject>/<modality>.nii.gz`` beside
  ``<out>/predictions/<subject>`` (a WMH summary written before it named its image);
- else the case cannot be shown, and the page says why (:attr:`Case.problem`).

The feedback store is ``DIR/feedback``, where ``lesion-suite demo`` keeps its reader's
work; the case of an image in it is found by the image's digest, as in Slicer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from lesion_core.errors import CommandError, UnreadableFileError
from lesion_core.report.folders import SEARCH_DEPTH, SUMMARY_FILES, detect, prediction_folders

#: The store's folder inside the reviewed folder (the demo's layout).
FEEDBACK_FOLDER = "feedback"
#: The modality of each task's image, for the demo's file names.
TASK_MODALITY = {"wmh": "FLAIR", "cmb": "SWI", "ich": "CT"}


@dataclass
class Case:
    """One result to review. ``image``: its image file, or None with :attr:`problem`
    saying why it cannot be shown."""

    task: str
    folder: Path
    stem: Optional[str]
    image: Optional[Path]
    problem: str = ""

    @property
    def title(self) -> str:
        """What the case list shows: ``CMB  subject-0003``."""
        stem = f" ({self.stem})" if self.stem not in (None, "wmh") else ""
        return f"{self.task.upper()}  {self.folder.name}{stem}"


def find_image(task: str, folder: Path, stem: Optional[str] = None) -> tuple:
    """``(image path or None, problem)`` of the result of ``task`` in ``folder`` (see the
    module notes)."""
    named = _named_image(folder / SUMMARY_FILES[task].format(stem=stem or "wmh"))
    if named is not None and named.is_file():
        return named, ""
    modality = TASK_MODALITY[task]
    demo = folder.parent.parent / "synthetic" / folder.name / f"{modality.lower()}.nii.gz"
    if demo.is_file():
        return demo, ""
    where = f"the summary names {named}, which is not there" if named is not None \
        else "its summary names no image"
    return None, f"cannot find the {modality} image of this result ({where})"


def _named_image(summary: Path) -> Optional[Path]:
    """The image a summary file names, or None (no such entry, or an unreadable file:
    the task's reader names what is wrong when the case is opened)."""
    try:
        image = json.loads(summary.read_text(encoding="utf-8")).get("image")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(image) if isinstance(image, str) and image else None


def find_cases(root) -> List[Case]:
    """The cases under ``root`` (:data:`SEARCH_DEPTH` levels) in path order. The files
    are read when a case is opened, by the task's Logic, so a damaged result is still a
    case whose error the page shows (one bad folder must not hide the others); a root
    that is not a folder or holds no result raises the command's one clear
    ``LesionSuiteError``."""
    root = Path(root)
    if not root.is_dir():
        raise UnreadableFileError("is not a folder", "give a folder of prediction outputs "
                                  "(e.g. what lesion-suite demo or batch wrote)", root)
    cases = []
    for folder in prediction_folders(root):  # the walk `lesion-suite report` does
        for task, stem in detect(folder):
            image, problem = find_image(task, folder, stem)
            cases.append(Case(task, folder, stem, image, problem))
    if not cases:
        raise CommandError(f"holds no prediction folder (searched {SEARCH_DEPTH} levels "
                           "down)", "give a folder written by lesion-suite demo, batch or "
                           "<task> predict", root)
    return cases


def feedback_root(root) -> Path:
    """The feedback store of the reviewed folder (created with the first decision)."""
    return Path(root) / FEEDBACK_FOLDER


__all__ = ["Case", "FEEDBACK_FOLDER", "feedback_root", "find_cases", "find_image"]

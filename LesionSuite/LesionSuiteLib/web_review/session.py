"""One case of the review station: its image and result in a scene, and its review.

:class:`CaseSession` does what a reader does in Slicer, through the same code: read the
image into a volume node, let the task's Logic add the result nodes from the output folder
(``load_results``) and open the task's review on the feedback store (``open_review``).
The page's buttons call :meth:`CaseSession.act`, which calls the review's own methods
through the task's page (:mod:`.reviews`: CMB ``accept`` / ``reject`` / ``add``, WMH
``set_rating_text``, ICH ``mark_haemorrhage`` ...), so each decision is one record written
at once by the review state machine, and :meth:`CaseSession.rows` reads back what the
review shows.

No trame here: the tests drive a session under the ``slicer-core`` wheel alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from lesion_core.errors import InvalidImageError

from .. import mrml_bridge as mb
from ..later import Later
from .cases import Case
from .reviews import (CMBPage, DEFAULT_OVERLAY_OPACITY, PAGES, TaskPage, apply_window_level,
                      window_level_presets)

#: Each task's Logic class, imported when a case of the task is opened (the task Libs live
#: in the module folders, which Slicer, or :func:`add_module_folders`, puts on the path).
TASK_LOGICS = {"wmh": Later("WMHDualTaskerLib.logic", "WMHDualTaskerLogic"),
               "cmb": Later("CMBDetectorLib.logic", "CMBDetectorLogic"),
               "ich": Later("ICHWeakSegLib.logic", "ICHWeakSegLogic")}
#: The module folder of each task's Lib package (a source checkout's layout).
_MODULE_FOLDERS = ("WMHDualTasker", "CMBDetector", "ICHWeakSeg")
#: The page's CMB actions (each calls the review's method of that name).
CMB_ACTIONS = tuple(CMBPage.actions)


def add_module_folders() -> None:
    """Put the task module folders of a source checkout on ``sys.path`` (Slicer does this
    for an installed extension), so their ``*Lib`` packages import."""
    checkout = Path(__file__).resolve().parents[3]
    for name in _MODULE_FOLDERS:
        folder = checkout / name
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.append(str(folder))


class CaseSession:
    """A case opened in ``scene`` for ``reader``, its decisions in ``store`` (a folder).

    Attributes:
        volume_node: the image's node; result: the task Logic's result nodes;
        review: the task's review (``CMBReview``, ``RatingReview``, ``ICHSliceReview``).
    """

    def __init__(self, scene, case: Case, store: Path, reader: Optional[str] = None):
        if case.image is None:
            raise InvalidImageError(case.problem or "this case has no image",
                                    "Check the case folder", source=case.folder)
        from lesion_core.io import read_volume

        self.case, self.store, self.reader = case, Path(store), reader
        self._page: Optional[TaskPage] = None
        self.logic = TASK_LOGICS[case.task].resolve()()
        image = read_volume(case.image)
        self.volume_node = mb.volume_to_node(scene, image, case.folder.name)
        try:
            options = {"feedback_root": self.store} if case.task == "ich" else {}
            self.result = self.logic.load_results(self.volume_node, case.folder, **options)
            self.review = self.logic.open_review(self.result, self.store, reader=reader)
        except Exception:
            scene.RemoveNode(self.volume_node)  # a case that fails leaves no half scene
            raise

    @property
    def nodes(self) -> list:
        """Every node this case added (the image first)."""
        return [self.volume_node, *self.result.nodes]

    def close(self) -> None:
        """Remove the case's nodes from the scene (the store keeps every decision)."""
        scene = self.volume_node.GetScene()
        for node in reversed(self.nodes):
            if node is not None and scene is not None:
                scene.RemoveNode(node)

    # ---------------------------------------------------------------- review
    @property
    def page(self) -> TaskPage:
        """The task's page over :attr:`review` (see :mod:`.reviews`)."""
        if self._page is None:
            self._page = PAGES[self.case.task](self.logic, self.result, self.review)
        return self._page

    def rows(self) -> List[Dict[str, Any]]:
        """The table rows the page shows (candidates, ARWMC targets or slices)."""
        return self.page.rows()

    def act(self, action: str, *args) -> Optional[str]:
        """Do a page action on the review (the task page's ``actions``: e.g. CMB
        ``accept``, WMH ``rate``, ICH ``haemorrhage``); returns the record id written, if
        any. An action of another task raises ``ValueError``."""
        return self.page.act(action, *args)

    def select(self, index: int) -> Optional[tuple]:
        """Make row ``index`` current; returns where to centre the views (world RAS)."""
        self.page.act("select", index)
        return self.page.jump_position()

    def summary(self) -> str:
        """One line over the review's state for the page."""
        return self.page.summary()

    def show_overlay(self, opacity: float = DEFAULT_OVERLAY_OPACITY) -> None:
        """The image with the task's overlay (WMH activation, ICH CAM) at ``opacity``."""
        self.page.show_overlay(opacity)

    # ---------------------------------------------------------- window/level
    def window_level_presets(self) -> List[str]:
        """The window/level presets of this case's modality (CT: brain, subdural, bone,
        auto; MR: auto)."""
        return window_level_presets(self.case.task)

    def set_window_level(self, preset: str) -> tuple:
        """Show the image with ``preset`` (see :func:`.reviews.apply_window_level`);
        returns ``(window, level)``."""
        return apply_window_level(self.volume_node, self.case.task, preset)

    # ------------------------------------------------------------- retraining
    def start_retraining(self, init_model=None, out_folder=None) -> "RetrainJob":
        """Start the task Logic's retraining (``start_training``: ``lesion-suite <task>
        train --feedback STORE --init MODEL --out NEW`` in a child process) from the
        store's decisions, into a new model folder next to the store (default) from
        ``init_model`` (default: the shipped model). Raises as ``start_training`` does
        when the store holds nothing to learn from or the model is missing."""
        if out_folder is None:
            out_folder = self.logic.retraining.new_model_folder(self.store.parent)
        child, out = self.logic.start_training(self.store, init_model, out_folder)
        return RetrainJob(child, Path(out))


class RetrainJob:
    """A running retraining: :meth:`poll` (never blocks) reads the child's progress,
    :meth:`cancel` ends its process tree; :attr:`text` is the line the page shows."""

    def __init__(self, child, out_folder: Path):
        self.child, self.out_folder = child, Path(out_folder)
        self.fraction = 0.0
        self.text = "Retraining started"
        self.finished = False
        self.succeeded = False

    def poll(self) -> bool:
        """Read the child's new events; returns whether it is still running."""
        from ..child_process import FinishedEvent, ProgressEvent

        for event in self.child.poll():
            if isinstance(event, ProgressEvent):
                self.fraction = float(event.fraction)
                self.text = f"{event.fraction * 100:.0f}% {event.message}".strip()
            elif isinstance(event, FinishedEvent):
                self.finished = True
                self.succeeded = event.returncode == 0 and not event.cancelled
                if event.cancelled:
                    self.text = "Retraining cancelled; no new model"
                elif self.succeeded:
                    self.fraction = 1.0
                    self.text = f"New model: {self.out_folder}"
                else:
                    tail = self.child.log_tail(1).strip() or f"exit status {event.returncode}"
                    self.text = f"Retraining failed: {tail}"
        return not self.finished

    def cancel(self) -> None:
        """End the child and its descendants (the model it started from is unchanged)."""
        self.child.cancel()


__all__ = ["CMB_ACTIONS", "CaseSession", "RetrainJob", "TASK_LOGICS", "add_module_folders"]

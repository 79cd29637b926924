"""The trame application of the review station (imports trame-slicer).

One server holds one MRML scene (trame-slicer's :class:`SlicerApp`, the scene with the
module logics Slicer would register), three linked slice views streamed as images, and a
side panel: the case list with next / previous, the case's table and its review buttons.
A button or shortcut triggers a server callback that calls :class:`.session.CaseSession`,
that is, the task's own review object; the panel's state is then read back from it, so
the page never keeps a decision the store does not hold.

trame keeps one state per server, shared by every tab, so a page reload (or a second tab)
shows the same case and decisions; a server restart reads them from the store again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from lesion_core.errors import LesionSuiteError
from trame.app import get_server
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from .cases import feedback_root, find_cases
from .session import CaseSession, add_module_folders

log = logging.getLogger(__name__)

#: Keyboard shortcuts of the CMB review, as in the Slicer module's panel.
CMB_KEYS = {"a": "accept", "r": "reject", "u": "undo", "n": "next", "p": "previous",
            "ArrowDown": "next", "ArrowUp": "previous"}
#: Sent to the server from the page: a key press outside a text field (the shortcuts).
_KEY_SCRIPT = """
window.addEventListener('keydown', function (event) {
  const target = event.target;
  if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA')) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (window.trame && window.trame.trigger) {
    window.trame.trigger('review_key', [event.key]);
  }
});
"""
_ROW_STYLE = ("row.index === current ? 'background: #ffe9a8; cursor: pointer' "
              ": 'cursor: pointer'")


class ReviewStation:
    """The review page over the cases under ``root`` for ``reader``."""

    def __init__(self, root, reader: Optional[str] = None, server=None):
        add_module_folders()
        self.root = Path(root)
        self.reader = reader
        self.cases = find_cases(self.root)
        self.store = feedback_root(self.root)
        self.server = server or get_server(client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        # Slice views only: 3D volume rendering is about 1 frame a second on a small CPU
        # server, and the review happens on the slices.
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer_app.scene,
                                            self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout("review", Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(),
            ViewLayoutDefinition.sagittal_view()]))
        self.session: Optional[CaseSession] = None
        self._state_defaults()
        self._build_ui()
        self.layout_manager.set_layout("review")
        self.server.trigger("review_key")(self.on_key)
        self.server.trigger("review_action")(self.on_action)
        self.server.trigger("select_row")(self.on_select)
        self.server.trigger("open_case")(self.open_case)
        self.open_case(0)

    # ------------------------------------------------------------------ state
    def _state_defaults(self) -> None:
        state = self.server.state
        state.trame__title = "LesionSuite review"
        state.cases = [{"index": i, "title": c.title, "problem": c.problem}
                       for i, c in enumerate(self.cases)]
        state.case_index = 0
        state.case_title = ""
        state.task = ""
        state.rows = []
        state.current = None
        state.summary = ""
        state.message = ""
        state.store_path = str(self.store)

    def _publish(self) -> None:
        """Copy what the review shows into the page's state."""
        state, session = self.server.state, self.session
        with state:
            if session is None:
                state.rows, state.current, state.summary = [], None, ""
                return
            state.rows = session.rows()
            state.current = getattr(session.review, "current", None)
            state.summary = session.summary()

    # ------------------------------------------------------------------ cases
    def open_case(self, index) -> None:
        """Show case ``index`` (clamped to the list): its image, result and review."""
        index = max(0, min(int(index), len(self.cases) - 1))
        case = self.cases[index]
        if self.session is not None:
            self.session.close()
            self.session = None
        state = self.server.state
        with state:
            state.case_index, state.case_title, state.task = index, case.title, case.task
            state.message = ""
        try:
            self.session = CaseSession(self.slicer_app.scene, case, self.store, self.reader)
        except LesionSuiteError as exc:  # a bad case folder: say so in the page
            state.message = f"This case cannot be shown: {exc}"
            self._publish()
            return
        display = self.slicer_app.display_manager
        display.show_volume_in_slice_background(self.session.volume_node)
        display.show_volume_in_slice_foreground(None)
        display.reset_views()
        self._publish()
        self._centre()

    # ---------------------------------------------------------------- review
    def on_action(self, action: str, index=None) -> None:
        """A review button: ``accept``, ``reject``, ``undo``, ``next``, ``previous``."""
        if self.session is None:
            return
        started = time.perf_counter()
        try:
            self.session.act(action, None if index is None else int(index))
        except LesionSuiteError as exc:
            self.server.state.message = str(exc)
        log.info("review %s took %.3f s", action, time.perf_counter() - started)
        self._publish()
        self._centre()

    def on_select(self, index) -> None:
        """A click on a table row: make it current and centre the views on it."""
        if self.session is None:
            return
        self.session.select(int(index))
        self._publish()
        self._centre()

    def on_key(self, key: str) -> None:
        """A shortcut (:data:`CMB_KEYS`); ``]`` / ``[`` move to the next / previous case."""
        if key in ("]", "["):
            self.open_case(self.server.state.case_index + (1 if key == "]" else -1))
        elif self.session is not None and self.session.case.task == "cmb" \
                and key in CMB_KEYS:
            self.on_action(CMB_KEYS[key])

    def _centre(self) -> None:
        """Centre the slice views on the current item, as the module's panel does."""
        position = None
        review = getattr(self.session, "review", None)
        if review is not None and hasattr(review, "jump_position"):
            position = review.jump_position()
        if position is None:
            return
        scene = self.slicer_app.scene
        for node in scene.GetNodesByClass("vtkMRMLSliceNode"):
            node.JumpSliceByCentering(*position)

    # --------------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server) as layout:
            self.ui = layout
            layout.title.set_text("LesionSuite review")
            client.Script(_KEY_SCRIPT)
            with layout.toolbar:
                v3.VSpacer()
                html.Span("{{ case_title }}", classes="mx-4 case-title")
                v3.VBtn("Previous case", click="trigger('open_case', [case_index - 1])",
                        disabled=("case_index <= 0",), variant="text")
                v3.VBtn("Next case", click="trigger('open_case', [case_index + 1])",
                        disabled=("case_index >= cases.length - 1",), variant="text")
            with layout.drawer as drawer:
                drawer.width = 460
                self._case_list()
                self._cmb_panel()
            with layout.content:
                with html.Div(style="height: 100%; position: relative;"):
                    self.layout_manager.initialize_layout_grid(layout)

    def _case_list(self) -> None:
        with v3.VList(density="compact", classes="case-list"):
            v3.VListSubheader("Cases")
            v3.VListItem(v_for="c in cases", key="c.index", title=("c.title",),
                         subtitle=("c.problem",), active=("c.index === case_index",),
                         click="trigger('open_case', [c.index])", classes="case-item")
        v3.VAlert(v_if="message", text=("message",), type="error", density="compact",
                  classes="ma-2 review-message")

    def _cmb_panel(self) -> None:
        with html.Div(v_if="task === 'cmb'", classes="pa-2 cmb-panel"):
            html.Div("{{ summary }}", classes="text-body-2 mb-2 review-summary")
            with html.Div(classes="d-flex flex-wrap ga-1 mb-2"):
                for label, action in (("Accept (A)", "accept"), ("Reject (R)", "reject"),
                                      ("Undo (U)", "undo"), ("Previous (P)", "previous"),
                                      ("Next (N)", "next")):
                    v3.VBtn(label, size="small", classes=f"action-{action}",
                            click=f"trigger('review_action', ['{action}'])")
            with v3.VTable(density="compact", classes="cmb-table"):
                with html.Thead():
                    with html.Tr():
                        for title in ("id", "decision", "status", "p1", "p2", "mm",
                                      "where"):
                            html.Th(title)
                with html.Tbody():
                    with html.Tr(v_for="row in rows", key="row.index", classes="cand-row",
                                 style=(_ROW_STYLE,),
                                 click="trigger('select_row', [row.index])"):
                        for field in ("id", "decision", "status", "p1", "p2",
                                      "diameter_mm", "where"):
                            html.Td(f"{{{{ row.{field} }}}}", classes=f"col-{field}")


def serve(root, port: int = 8080, host: str = "127.0.0.1", reader: Optional[str] = None,
          open_browser: bool = False) -> None:
    """Build the station and serve it until interrupted."""
    station = ReviewStation(root, reader)
    station.server.start(port=port, host=host, open_browser=open_browser,
                         show_connection_info=True)


__all__ = ["CMB_KEYS", "ReviewStation", "serve"]

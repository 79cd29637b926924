"""The trame application of the review station (imports trame-slicer).

One server holds one MRML scene (trame-slicer's :class:`SlicerApp`, the scene with the
module logics Slicer would register), three linked slice views and a 3D view (the result's
surfaces or points, :mod:`.surfaces`; the page can hide it) streamed as images, and a
side panel: the case list with next / previous, the task's panel (:mod:`.panels`: CMB
candidates, WMH ARWMC ratings, ICH slice labels) and the overlay controls. A button,
choice or shortcut triggers a server callback that calls :class:`.session.CaseSession`,
that is, the task's own review object; the panel's state is then read back from it, so
the page never keeps a decision the store does not hold.

A missed microbleed is added as in Slicer: *Add missed* puts the views in Slicer's place
mode on a hidden markups node; the click's point goes to the review (``add``) and is
removed from that node again. The candidates' own points are locked by the review, so a
drag in a view never moves one.

trame keeps one state per server, shared by every tab, so a page reload (or a second tab)
shows the same case and decisions; a server restart reads them from the store again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Optional

from lesion_core.errors import LesionSuiteError
from slicer import vtkMRMLMarkupsNode
from trame.app import asynchronous, get_server
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from . import panels, surfaces
from .cases import feedback_root, find_cases
from .reviews import DEFAULT_OVERLAY_OPACITY
from .session import CaseSession, RetrainJob, add_module_folders

log = logging.getLogger(__name__)

#: Seconds between two looks at a running retraining's progress.
RETRAIN_POLL_S = 0.5

#: Keyboard shortcuts of the CMB review, as in the Slicer module's panel.
CMB_KEYS = {"a": "accept", "r": "reject", "u": "undo", "n": "next", "p": "previous",
            "ArrowDown": "next", "ArrowUp": "previous"}
#: Keyboard shortcuts of the ICH slice review ("h" marks with the subtypes ticked).
ICH_KEYS = {"h": "haemorrhage", "0": "no_haemorrhage", "u": "undo", "ArrowDown": "next",
            "ArrowUp": "previous"}
#: Sent to the server from the page: a key press outside a text field (the shortcuts).
_KEY_SCRIPT = """
window.addEventListener('keydown', function (event) {
  const target = event.target;
  if (target && ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName)) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (window.trame && window.trame.trigger) {
    window.trame.trigger('review_key', [event.key]);
  }
});
"""


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
        # No volume rendering (about 1 frame a second on a small CPU server): the 3D view
        # shows the result's surfaces only; the review happens on the slices.
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer_app.scene,
                                            self.slicer_app.view_manager, self.server)
        axial, coronal, sagittal, threed = (
            ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(),
            ViewLayoutDefinition.sagittal_view(), ViewLayoutDefinition.threed_view())
        self.layout_manager.register_layout("review", Layout(
            LayoutDirection.Horizontal, [axial, coronal, sagittal]))
        self.layout_manager.register_layout("review_3d", Layout(LayoutDirection.Vertical, [
            Layout(LayoutDirection.Horizontal, [axial, coronal]),
            Layout(LayoutDirection.Horizontal, [sagittal, threed])]))
        self.session: Optional[CaseSession] = None
        self._placement = None  # the hidden markups node a missed microbleed is placed on
        self.retrain_job: Optional[RetrainJob] = None
        self._state_defaults()
        self._build_ui()
        self.layout_manager.set_layout("review_3d")
        self.server.trigger("review_key")(self.on_key)
        self.server.trigger("review_action")(self.on_action)
        self.server.trigger("select_row")(self.on_select)
        self.server.trigger("open_case")(self.open_case)
        self.server.trigger("start_placing")(self.start_placing)
        self.server.trigger("retrain_start")(self.start_retraining)
        self.server.trigger("retrain_cancel")(self.cancel_retraining)
        state = self.server.state
        state.change("opacity")(self.on_opacity)
        state.change("cam_threshold")(self.on_threshold)
        state.change("show_rejected")(self.on_show_rejected)
        state.change("wl_preset")(self.on_window_level)
        state.change("show_3d")(self.on_show_3d)
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
        state.opacity = DEFAULT_OVERLAY_OPACITY
        state.cam_threshold = 0.0
        state.show_rejected = False
        state.subtypes = []
        state.placing = False
        state.wl_presets = []
        state.wl_preset = "auto"
        state.retrain_running = False
        state.retrain_fraction = 0.0
        state.retrain_text = ""
        state.show_3d = True
        state.surface_info = ""

    def _publish(self) -> None:
        """Copy what the review shows into the page's state."""
        state, session = self.server.state, self.session
        with state:
            if session is None:
                state.rows, state.current, state.summary = [], None, ""
                state.surface_info = ""
                return
            state.rows = session.rows()
            state.surface_info = surfaces.describe(
                surfaces.surface_facts(session.case.task, session.result))
            state.current = session.page.current
            state.summary = session.summary()
            if session.case.task == "ich":  # tick the current slice's standing subtypes
                state.subtypes = session.page.current_subtypes()

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
        presets = self.session.window_level_presets()
        with state:
            state.wl_presets = presets
            state.wl_preset = "brain" if "brain" in presets else "auto"
        self.session.set_window_level(state.wl_preset)
        self.session.show_overlay(state.opacity)
        if case.task == "ich":
            state.cam_threshold = round(self.session.page.threshold(), 2)
        if case.task == "cmb":
            self.session.act("show_rejected", bool(state.show_rejected))
        display.reset_views()
        surfaces.show_in_views(self.slicer_app.view_manager.get_threed_views(), case.task,
                               self.session.result)
        self._publish()
        self._centre()

    # ---------------------------------------------------------------- review
    def on_action(self, action: str, *args) -> None:
        """A review control: the action of the task's page (CMB ``accept`` ..., WMH
        ``rate`` target value, ICH ``haemorrhage`` subtypes ...) with its arguments."""
        if self.session is None:
            return
        started = time.perf_counter()
        self.server.state.message = ""
        try:
            self.session.act(action, *args)
        except (LesionSuiteError, ValueError, IndexError) as exc:
            # Nothing was written: the review checks before it writes. Say why.
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
        """A shortcut (:data:`CMB_KEYS`, :data:`ICH_KEYS`); ``]`` / ``[`` move to the
        next / previous case."""
        if key in ("]", "["):
            self.open_case(self.server.state.case_index + (1 if key == "]" else -1))
            return
        task = self.session.case.task if self.session is not None else None
        if task == "cmb" and key in CMB_KEYS:
            self.on_action(CMB_KEYS[key])
        elif task == "ich" and key in ICH_KEYS:
            action = ICH_KEYS[key]
            self.on_action(action, *([list(self.server.state.subtypes or [])]
                                     if action == "haemorrhage" else []))

    # --------------------------------------------------------------- controls
    def on_opacity(self, opacity=None, **_) -> None:
        """The overlay slider: the activation map (WMH) or CAM (ICH) opacity."""
        if self.session is not None and opacity is not None:
            self.session.show_overlay(float(opacity))

    def on_threshold(self, cam_threshold=None, **_) -> None:
        """The CAM threshold slider (ICH): values below it are not drawn."""
        if self.session is not None and self.session.case.task == "ich" \
                and cam_threshold is not None:
            self.session.page.set_threshold(float(cam_threshold))

    def on_show_rejected(self, show_rejected=None, **_) -> None:
        """The CMB filter: also list the candidates stage 2 dropped."""
        if self.session is not None and self.session.case.task == "cmb":
            self.session.act("show_rejected", bool(show_rejected))
            self._publish()

    def on_window_level(self, wl_preset=None, **_) -> None:
        """The window/level preset of the image (CT brain / subdural / bone, auto)."""
        if self.session is None or not wl_preset:
            return
        try:
            self.session.set_window_level(str(wl_preset))
        except ValueError as exc:
            self.server.state.message = str(exc)

    def on_show_3d(self, show_3d=None, **_) -> None:
        """The *3D view* switch: three slice views in a row, or a 2x2 grid with it."""
        self.layout_manager.set_layout("review_3d" if show_3d else "review")

    # ------------------------------------------------------------- retraining
    def start_retraining(self) -> None:
        """*Retrain from my decisions*: the task Logic's retraining of the open case's
        task from the store, in a child process, into a new model folder next to the
        store; its progress is polled on the server's event loop."""
        state = self.server.state
        if self.session is None or (self.retrain_job and not self.retrain_job.finished):
            return
        try:
            self.retrain_job = self.session.start_retraining()
        except LesionSuiteError as exc:  # nothing to learn from, no model to start from
            state.retrain_text = f"Cannot retrain: {exc}"
            return
        with state:
            state.retrain_running, state.retrain_fraction = True, 0.0
            state.retrain_text = self.retrain_job.text
        asynchronous.create_task(self._watch_retraining(self.retrain_job))

    async def _watch_retraining(self, job: RetrainJob) -> None:
        running = True
        while running:
            await asyncio.sleep(RETRAIN_POLL_S)
            running = job.poll()
            with self.server.state as state:
                state.retrain_fraction = round(job.fraction, 3)
                state.retrain_text = job.text
                state.retrain_running = running

    def cancel_retraining(self) -> None:
        """*Cancel*: end the retraining's process tree (the polling says it ended)."""
        if self.retrain_job is not None and not self.retrain_job.finished:
            self.retrain_job.cancel()

    def start_placing(self) -> None:
        """*Add missed*: the next click in a slice view places a point (Slicer's place
        mode), which :meth:`on_point_placed` records as an added microbleed."""
        if self.session is None or self.session.case.task != "cmb":
            return
        node = self._placement
        if node is None or node.GetScene() is None:
            node = self.slicer_app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode",
                                                           "CMB point being placed")
            node.SetHideFromEditors(True)
            node.AddObserver(vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                             self.on_point_placed)
            self._placement = node
        self.slicer_app.markups_logic.place_node(node, persistent=False)
        self.server.state.placing = True

    def on_point_placed(self, node, _event) -> None:
        """The placed point becomes the review's ``add`` (world RAS); the point itself
        is removed: the review shows the added microbleed on its own node."""
        count = node.GetNumberOfControlPoints()
        if count == 0:
            return
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(count - 1, position)
        node.RemoveAllControlPoints()
        self.slicer_app.markups_logic.disable_place_mode()
        with self.server.state as state:
            state.placing = False
        self.on_action("add", position)

    def _centre(self) -> None:
        """Centre the slice views on the current item, as the module's panel does."""
        position = None
        review = getattr(self.session, "review", None)
        if review is not None:
            position = self.session.page.jump_position()
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
                panels.cmb_panel()
                panels.wmh_panel()
                panels.ich_panel()
                panels.display_controls()
                panels.retrain_controls()
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


def serve(root, port: int = 8080, host: str = "127.0.0.1", reader: Optional[str] = None,
          open_browser: bool = False) -> None:
    """Build the station and serve it until interrupted."""
    station = ReviewStation(root, reader)
    station.server.start(port=port, host=host, open_browser=open_browser,
                         show_connection_info=True)


__all__ = ["CMB_KEYS", "ICH_KEYS", "ReviewStation", "serve"]

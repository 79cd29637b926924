"""The side panels of the review page, one per task (trame widgets only).

Each panel is built once, inside the page's drawer, and shown for its task's cases
(``v_if="task === ..."``). The panels hold no logic: every control triggers
``review_action`` with the action name and plain arguments, which the server passes to
the task page (:mod:`.reviews`), and the table is the ``rows`` the server publishes from
the review object, so a reload shows what the store holds.

CSS classes name the controls for the browser tests (``action-accept``, ``rating-select``,
``slice-row`` ...).
"""

from __future__ import annotations

from lesion_core.labels import ICH_SUBTYPE_ORDER
from trame.widgets import html
from trame.widgets import vuetify3 as v3

_ROW_STYLE = ("row.index === current ? 'background: #ffe9a8; cursor: pointer' "
              ": 'cursor: pointer'")


def _table(header, row_class: str, cells, clickable: bool = True) -> None:
    """A compact table over ``rows``: ``cells`` is (field, CSS class) per column."""
    with v3.VTable(density="compact", classes=f"{row_class}-table"):
        with html.Thead():
            with html.Tr():
                for title in header:
                    html.Th(title)
        with html.Tbody():
            options = {"style": (_ROW_STYLE,),
                       "click": "trigger('select_row', [row.index])"} if clickable else {}
            with html.Tr(v_for="row in rows", key="row.index", classes=row_class, **options):
                for field in cells:
                    html.Td(f"{{{{ row.{field} }}}}", classes=f"col-{field}")


def _buttons(buttons) -> None:
    with html.Div(classes="d-flex flex-wrap ga-1 mb-2"):
        for label, action, args in buttons:
            v3.VBtn(label, size="small", classes=f"action-{action}",
                    click=f"trigger('review_action', ['{action}'{args}])")


def overlay_controls(label: str, threshold: bool = False) -> None:
    """The overlay's opacity slider (and the CAM threshold slider)."""
    v3.VSlider(v_model=("opacity",), min=0, max=1, step=0.05, label=label,
               density="compact", hide_details=True, thumb_label=True,
               classes="overlay-opacity mb-1")
    if threshold:
        v3.VSlider(v_model=("cam_threshold",), min=0, max=1, step=0.05,
                   label="CAM threshold", density="compact", hide_details=True,
                   thumb_label=True, classes="cam-threshold mb-1")


def cmb_panel() -> None:
    """Candidates: accept / reject / undo / next / previous (keys a r u n p), add a
    missed microbleed by clicking in a view, the show-rejected filter, the table."""
    with html.Div(v_if="task === 'cmb'", classes="pa-2 cmb-panel"):
        html.Div("{{ summary }}", classes="text-body-2 mb-2 review-summary")
        _buttons((("Accept (A)", "accept", ""), ("Reject (R)", "reject", ""),
                  ("Undo (U)", "undo", ""), ("Previous (P)", "previous", ""),
                  ("Next (N)", "next", "")))
        with html.Div(classes="d-flex align-center ga-2 mb-1"):
            v3.VBtn("Add missed: click in a view", size="small", classes="action-add",
                    color=("placing ? 'primary' : undefined",),
                    click="trigger('start_placing')")
            v3.VCheckbox(v_model=("show_rejected",), label="show rejected by stage 2",
                         density="compact", hide_details=True, classes="show-rejected")
        _table(("id", "decision", "status", "p1", "p2", "mm", "where"), "cand-row",
               ("id", "decision", "status", "p1", "p2", "diameter_mm", "where"))


def wmh_panel() -> None:
    """The ARWMC table with a rating choice per region-side (and the total); the
    activation overlay's opacity."""
    with html.Div(v_if="task === 'wmh'", classes="pa-2 wmh-panel"):
        html.Div("{{ summary }}", classes="text-body-2 mb-2 review-summary")
        overlay_controls("activation opacity")
        _buttons((("Undo", "undo", ""),))
        with v3.VTable(density="compact", classes="arwmc-table"):
            with html.Thead():
                with html.Tr():
                    for title in ("region", "side", "predicted", "level", "lesion mL",
                                  "your rating"):
                        html.Th(title)
            with html.Tbody():
                with html.Tr(v_for="row in rows", key="row.index", classes="arwmc-row"):
                    for field in ("region", "side", "predicted", "level", "lesion_ml"):
                        html.Td(f"{{{{ row.{field} }}}}", classes=f"col-{field}")
                    with html.Td(classes="col-reader"):
                        # A native select: one record per change, "" clears the rating.
                        # The options carry ``selected`` (a ``value`` on the select is set
                        # before its v-for options exist, so a reload would show none).
                        with html.Select(
                                classes="rating-select",
                                style="border: 1px solid #999; padding: 0 4px",
                                change="trigger('review_action', ['rate', row.target, "
                                       "$event.target.value])"):
                            html.Option("-", value="", selected=("row.reader === ''",))
                            html.Option("{{ n - 1 }}", v_for="n in row.high + 1", key="n",
                                        value=("String(n - 1)",),
                                        selected=("row.reader === String(n - 1)",))


def ich_panel() -> None:
    """The per-slice table, the slice labels (haemorrhage with the subtypes ticked, or
    none; keys h and 0), undo, next / previous slice, the CAM's opacity and threshold."""
    with html.Div(v_if="task === 'ich'", classes="pa-2 ich-panel"):
        html.Div("{{ summary }}", classes="text-body-2 mb-2 review-summary")
        overlay_controls("CAM opacity", threshold=True)
        with html.Div(classes="d-flex flex-wrap"):
            for key in ICH_SUBTYPE_ORDER:
                v3.VCheckbox(v_model=("subtypes",), value=key, label=key,
                             density="compact", hide_details=True,
                             classes=f"subtype-{key} mr-2")
        _buttons((("Haemorrhage (H)", "haemorrhage", ", subtypes"),
                  ("No haemorrhage (0)", "no_haemorrhage", ""),
                  ("Undo (U)", "undo", ""), ("Previous (↑)", "previous", ""),
                  ("Next (↓)", "next", "")))
        _table(("slice", "probability", "model", "your label"), "slice-row",
               ("slice", "probability", "present", "reader"))


def display_controls() -> None:
    """The image's window/level presets of its modality (CT: brain, subdural, bone,
    auto; MR: auto, the 1st-99th percentiles); the 3D view on or off, and what it shows."""
    with html.Div(v_if="task", classes="pa-2 display-controls"):
        v3.VSelect(v_model=("wl_preset",), items=("wl_presets",), label="Window/level",
                   density="compact", hide_details=True, classes="wl-preset")
        with html.Div(classes="d-flex align-center ga-2"):
            v3.VCheckbox(v_model=("show_3d",), label="3D view", density="compact",
                         hide_details=True, classes="show-3d flex-grow-0")
            html.Span("{{ surface_info }}", classes="text-body-2 surface-info")


def retrain_controls() -> None:
    """*Retrain from my decisions* (the task's retraining as a background job), its
    progress line and *Cancel*."""
    with html.Div(v_if="task", classes="pa-2 retrain-controls"):
        with html.Div(classes="d-flex ga-1 mb-1"):
            v3.VBtn("Retrain from my decisions", size="small", classes="action-retrain",
                    disabled=("retrain_running",), click="trigger('retrain_start')")
            v3.VBtn("Cancel", size="small", classes="action-retrain-cancel",
                    disabled=("!retrain_running",), click="trigger('retrain_cancel')")
        v3.VProgressLinear(v_if="retrain_running", model_value=("retrain_fraction * 100",),
                           height=4, classes="mb-1")
        html.Div("{{ retrain_text }}", classes="text-body-2 retrain-text")


__all__ = ["cmb_panel", "display_controls", "ich_panel", "overlay_controls",
           "retrain_controls", "wmh_panel"]

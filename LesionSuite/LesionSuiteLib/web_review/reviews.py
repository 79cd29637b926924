"""Each task's review as the page sees it: table rows, actions, a summary line, overlay.

A :class:`TaskPage` wraps the review object the task's Logic opened (``CMBReview``,
``RatingReview``, ``ICHSliceReview``: the Slicer modules' own state machines) and only
translates: the page's action names and arguments (plain JSON from the browser) into
the review's method calls, and the review's state into JSON rows. Every decision is
therefore written to the feedback store by the review itself, at once, exactly as in
Slicer; nothing here keeps a decision of its own.

No trame and no Qt here, so the tests drive these pages on a bare MRML scene.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

#: Opacity of the overlay (activation map, CAM) over the image when a case opens, as in
#: the Slicer modules.
DEFAULT_OVERLAY_OPACITY = 0.4


class TaskPage:
    """The page side of one case's review. ``result``: the task Logic's result nodes;
    ``review``: the task's review object; ``logic``: the task Logic."""

    #: Action name -> method name of this page (what the browser may ask for).
    actions: Dict[str, str] = {}
    #: The result attribute of the overlay volume shown over the image (None: none).
    overlay_attribute: Optional[str] = None

    def __init__(self, logic, result, review):
        self.logic, self.result, self.review = logic, result, review

    def act(self, action: str, *args) -> Optional[str]:
        """Do ``action`` (one of :attr:`actions`) with the page's ``args``; returns the
        record id written, if any."""
        if action not in self.actions:
            raise ValueError(f"unknown review action {action!r}")
        record = getattr(self, self.actions[action])(*args)
        return getattr(record, "record_id", None)

    def rows(self) -> List[Dict[str, Any]]:
        """The table rows the page shows."""
        return []

    def summary(self) -> str:
        return ""

    @property
    def current(self) -> Optional[int]:
        return getattr(self.review, "current", None)

    def jump_position(self):
        """World RAS (mm) to centre the slice views on, or None."""
        jump = getattr(self.review, "jump_position", None)
        return jump() if jump is not None else None

    # ---------------------------------------------------------------- overlay
    @property
    def overlay_node(self):
        return getattr(self.result, self.overlay_attribute) if self.overlay_attribute \
            else None

    def show_overlay(self, opacity: float = DEFAULT_OVERLAY_OPACITY) -> None:
        """The image in the background and the overlay (if any) in the foreground of every
        slice view, the overlay at ``opacity`` (0..1), as the Slicer module shows it."""
        show_layers(self.result.input, self.overlay_node, opacity)

    def undo(self):
        self.review.undo()

    def next(self, *_):
        self.review.next()

    def previous(self, *_):
        self.review.previous()


def show_layers(background, foreground=None, opacity: float = DEFAULT_OVERLAY_OPACITY
                ) -> None:
    """Put ``background`` and ``foreground`` (or none) in every slice view of the scene."""
    opacity = min(max(float(opacity), 0.0), 1.0)
    scene = background.GetScene()
    for node in scene.GetNodesByClass("vtkMRMLSliceCompositeNode"):
        node.SetBackgroundVolumeID(background.GetID())
        node.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        node.SetForegroundOpacity(opacity)


# --------------------------------------------------------------- window/level
#: Window/level presets of the background image per modality: name -> (window, level)
#: in the image's units (CT: HU), or None for the automatic percentile window.
WINDOW_LEVEL_PRESETS: Dict[str, Dict[str, Optional[tuple]]] = {
    "ct": {"brain": (80.0, 40.0), "subdural": (215.0, 75.0), "bone": (2800.0, 600.0),
           "auto": None},
    "mr": {"auto": None},
}
#: The percentiles of the image's voxels the automatic window spans.
AUTO_PERCENTILES = (1.0, 99.0)
#: Each task's image modality (CMB: SWI, WMH: FLAIR, ICH: CT).
TASK_MODALITY = {"cmb": "mr", "wmh": "mr", "ich": "ct"}


def window_level_presets(task: str) -> List[str]:
    """The preset names the page offers for ``task``'s image (its modality's)."""
    return list(WINDOW_LEVEL_PRESETS[TASK_MODALITY.get(task, "mr")])


def auto_window_level(volume_node, percentiles=AUTO_PERCENTILES) -> tuple:
    """``(window, level)`` spanning ``percentiles`` of the node's voxel values."""
    import numpy as np
    from vtk.util.numpy_support import vtk_to_numpy

    image = volume_node.GetImageData()
    scalars = image.GetPointData().GetScalars() if image is not None else None
    if scalars is None or scalars.GetNumberOfTuples() == 0:
        return 1.0, 0.5
    values = vtk_to_numpy(scalars).astype(np.float64).ravel()
    low, high = np.percentile(values[np.isfinite(values)], percentiles)
    return max(float(high - low), 1e-6), float(high + low) / 2.0


def apply_window_level(volume_node, task: str, preset: str) -> tuple:
    """Show ``volume_node`` with the window/level ``preset`` of ``task``'s modality
    (:data:`WINDOW_LEVEL_PRESETS`; ``auto``: the :data:`AUTO_PERCENTILES` of its
    voxels) on its scalar display node, Slicer's automatic window/level turned off.
    Returns ``(window, level)``; an unknown preset raises ``ValueError``."""
    presets = WINDOW_LEVEL_PRESETS[TASK_MODALITY.get(task, "mr")]
    if preset not in presets:
        raise ValueError(f"unknown window/level preset {preset!r} for {task}: "
                         f"choose one of {', '.join(presets)}")
    window, level = presets[preset] or auto_window_level(volume_node)
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    display.SetAutoWindowLevel(0)
    display.SetWindowLevel(float(window), float(level))
    return float(window), float(level)


# ----------------------------------------------------------------------- CMB
class CMBPage(TaskPage):
    """Candidates: accept / reject / undo / next / previous, add a missed microbleed at a
    world point, the show-rejected filter."""

    actions = {"accept": "accept", "reject": "reject", "undo": "undo", "next": "next",
               "previous": "previous", "add": "add", "show_rejected": "set_show_rejected",
               "select": "select"}

    def rows(self) -> List[Dict[str, Any]]:
        """One row per shown item; ``index``: its item index."""
        from CMBDetectorLib.outputs import status

        review, out = self.review, []
        for index in review.visible_indices():
            item = review.items[index]
            facts = item.facts()
            out.append({"index": index, "id": item.label, "decision": item.decision or "",
                        "status": status(item.candidate), "cmb": item.is_cmb,
                        "p1": _rounded(facts.get("stage1_probability")),
                        "p2": _rounded(facts.get("stage2_probability")),
                        "diameter_mm": _rounded(facts.get("diameter_mm"), 1),
                        "where": "/".join(str(facts.get(k) or "?")
                                          for k in ("location", "region"))})
        return out

    def accept(self, index=None):
        return self.review.accept(_index(index))

    def reject(self, index=None):
        return self.review.reject(_index(index))

    def add(self, position: Sequence[float]):
        """A microbleed the model missed, placed at ``position`` (world RAS mm) in a view."""
        return self.review.add(tuple(float(c) for c in position), world=True)

    def set_show_rejected(self, value) -> None:
        self.review.show_rejected = bool(value)

    def select(self, index) -> None:
        self.review.select(int(index))

    def summary(self) -> str:
        counts = self.review.counts()
        return (f"{counts['shown']} shown, {counts['cmb']} microbleeds; accepted "
                f"{counts['accept']}, rejected {counts['reject']}, added {counts['add']}, "
                f"undecided {counts['undecided']}")


# ----------------------------------------------------------------------- WMH
class WMHPage(TaskPage):
    """The ARWMC table: predicted rating, level, lesion mL and the reader's rating per
    region-side (and the total), each edit one record at once; the activation overlay."""

    actions = {"rate": "rate", "undo": "undo"}
    overlay_attribute = "activation"

    def rows(self) -> List[Dict[str, Any]]:
        """One row per target (region-sides, then ``total``); ``reader`` is "" when the
        reader has not rated it (the page's select shows the empty choice)."""
        return [{"index": index, "target": row.target,
                 "region": row.region.replace("_", " "), "side": row.side,
                 "predicted": _rounded(row.predicted), "level": row.level,
                 "lesion_ml": _rounded(row.lesion_ml, 3),
                 "reader": "" if row.reader is None else str(row.reader), "high": row.high}
                for index, row in enumerate(self.review.rows())]

    def rate(self, target: str, text) -> Any:
        """The reader's rating of ``target`` from the page ("" clears)."""
        return self.review.set_rating_text(str(target), "" if text is None else str(text))

    @property
    def current(self) -> Optional[int]:
        return None

    def summary(self) -> str:
        ratings = self.review.ratings
        total = self.result.summary.get("arwmc_total")
        return (f"ARWMC total predicted {total if total is not None else '-'}; "
                f"you rated {len(ratings)} of {len(self.review.targets)}")


# ----------------------------------------------------------------------- ICH
class ICHPage(TaskPage):
    """The per-slice table, the reader's slice labels (haemorrhage with subtypes, or
    none), the CAM overlay with its threshold."""

    actions = {"haemorrhage": "haemorrhage", "no_haemorrhage": "no_haemorrhage",
               "undo": "undo", "next": "next", "previous": "previous", "select": "select"}
    overlay_attribute = "cam"

    def rows(self) -> List[Dict[str, Any]]:
        review = self.review
        out = []
        for index, facts in enumerate(review.slices):
            k = int(facts["slice"])
            label = review.labels.get(k)
            out.append({"index": index, "slice": k,
                        "probability": _rounded(facts.get("probability")),
                        "present": "yes" if _truthy(facts.get("present")) else "",
                        "reader": label.describe() if label is not None else ""})
        return out

    def current_subtypes(self) -> List[str]:
        """The subtypes of the current slice's standing label (ticks the page's boxes)."""
        label = self.review.current_label
        return list(label.subtypes) if label is not None else []

    def haemorrhage(self, subtypes=(), row=None):
        return self.review.mark_haemorrhage(list(subtypes or ()), _index(row))

    def no_haemorrhage(self, row=None):
        return self.review.mark_no_haemorrhage(_index(row))

    def select(self, row) -> None:
        self.review.select(int(row))

    def set_threshold(self, threshold: float) -> None:
        """Draw only CAM values at or above ``threshold`` (0..1), as the module does."""
        self.logic.set_cam_threshold(self.result, min(max(float(threshold), 0.0), 1.0))

    def threshold(self) -> float:
        return float(self.logic.cam_threshold(self.result))

    def summary(self) -> str:
        counts = self.review.counts()
        return (f"{counts['predicted']} of {counts['slices']} slices predicted haemorrhage; "
                f"you labelled {counts['labelled']} ({counts['haemorrhage']} haemorrhage, "
                f"{counts['no_haemorrhage']} none, {counts['disagree']} differ)")


#: Each task's page class.
PAGES: Dict[str, Callable[..., TaskPage]] = {"cmb": CMBPage, "wmh": WMHPage, "ich": ICHPage}


def _index(value) -> Optional[int]:
    return None if value is None or value == "" else int(value)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "1.0")
    return bool(value)


def _rounded(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


__all__ = ["AUTO_PERCENTILES", "CMBPage", "DEFAULT_OVERLAY_OPACITY", "ICHPage", "PAGES",
           "TASK_MODALITY", "TaskPage", "WINDOW_LEVEL_PRESETS", "WMHPage", "apply_window_level",
           "auto_window_level", "show_layers", "window_level_presets"]

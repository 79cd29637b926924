"""The case's result in the review page's 3D view, through Slicer's own display nodes.

WMH and ICH: the segmentation the slice views show gets Slicer's closed-surface
representation (``vtkMRMLSegmentationNode.CreateClosedSurfaceRepresentation``, made
from its binary labelmap with a modest smoothing factor, cheap on a CPU server) and its
display node shows it in 3D (``Visibility3D``). Review decisions do not edit these masks
(ARWMC ratings, ICH slice labels), so the surfaces stay as loaded.

CMB: Slicer's markups displayable manager draws the candidates' points in 3D from the
same markups node as the slice views, so the 3D view follows every decision as they do:
a microbleed (kept, accepted or added) in the microbleed colour, a rejected one grey, a
filtered one hidden. The CMB segmentation (the kept candidates' voxels, which no decision
changes) is not drawn in 3D, where it would contradict the points.

No trame here: the tests use these on a bare MRML scene.
"""

from __future__ import annotations

from typing import Dict, List, Optional

#: Smoothing factor of the closed surfaces (Slicer's default 0.5; lower is cheaper and
#: closer to the voxels).
SMOOTHING_FACTOR = 0.3
#: Name of Slicer's closed-surface representation.
CLOSED_SURFACE = "Closed surface"
#: Tasks whose segmentation is drawn as surfaces (CMB: its points instead).
SURFACE_TASKS = ("wmh", "ich")


def show_result_in_3d(task: str, result) -> None:
    """Show ``result`` (the task Logic's result nodes) in the scene's 3D views."""
    segmentation = getattr(result, "segmentation", None)
    if segmentation is None:
        return
    display = segmentation.GetDisplayNode()
    if task not in SURFACE_TASKS:
        if display is not None:
            display.SetVisibility3D(False)
        return
    segmentation.GetSegmentation().SetConversionParameter("Smoothing factor",
                                                          str(SMOOTHING_FACTOR))
    segmentation.CreateClosedSurfaceRepresentation()
    if display is not None:
        display.SetPreferredDisplayRepresentationName3D(CLOSED_SURFACE)
        display.SetVisibility3D(True)


def show_in_views(views, task: str, result) -> None:
    """Show ``result`` in 3D and point each of the 3D ``views`` (trame-slicer's
    ``ThreeDView``) at it (:func:`reset_camera`), as a case opens."""
    show_result_in_3d(task, result)
    bounds = result_bounds(task, result)
    for view in views:
        reset_camera(view, bounds)


def surface_facts(task: str, result) -> Dict[str, int]:
    """What the 3D view shows: ``surfaces`` (segments with a non-empty closed surface),
    ``triangles`` (theirs) and ``points`` (CMB points shown)."""
    facts = {"surfaces": 0, "triangles": 0, "points": 0}
    segmentation = getattr(result, "segmentation", None)
    display = segmentation.GetDisplayNode() if segmentation is not None else None
    if task in SURFACE_TASKS and display is not None and display.GetVisibility() \
            and display.GetVisibility3D():
        for polydata in closed_surfaces(segmentation):
            if polydata.GetNumberOfPolys() > 0:
                facts["surfaces"] += 1
                facts["triangles"] += int(polydata.GetNumberOfPolys())
    markups = getattr(result, "markups", None)
    if markups is not None:
        facts["points"] = sum(1 for i in range(markups.GetNumberOfControlPoints())
                              if markups.GetNthControlPointVisibility(i))
    return facts


def closed_surfaces(segmentation_node) -> List:
    """The closed-surface polydata of each segment (none before it was created)."""
    segmentation = segmentation_node.GetSegmentation()
    out = []
    for segment_id in segmentation.GetSegmentIDs():
        polydata = segmentation.GetSegment(segment_id).GetRepresentation(CLOSED_SURFACE)
        if polydata is not None:
            out.append(polydata)
    return out


def result_bounds(task: str, result) -> Optional[List[float]]:
    """RAS bounds ``[xmin, xmax, ymin, ymax, zmin, zmax]`` of what the 3D view shows
    (its surfaces or points), or None when it shows nothing."""
    import numpy as np

    corners = []
    if task in SURFACE_TASKS and any(p.GetNumberOfPoints() > 0
                                     for p in closed_surfaces(result.segmentation)):
        b = [1.0, -1.0] * 3
        result.segmentation.GetRASBounds(b)  # world: with its parent transform
        if b[0] <= b[1]:
            corners += [(b[0], b[2], b[4]), (b[1], b[3], b[5])]
    markups = getattr(result, "markups", None)
    if markups is not None:
        for i in range(markups.GetNumberOfControlPoints()):
            if markups.GetNthControlPointVisibility(i):
                point = [0.0, 0.0, 0.0]
                markups.GetNthControlPointPositionWorld(i, point)
                corners.append(tuple(point))
    if not corners:
        return None
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    margin = np.maximum(5.0, 0.05 * (high - low))  # a point alone: a 1 cm box
    low, high = low - margin, high + margin
    return [float(v) for pair in zip(low, high) for v in pair]


def reset_camera(view, bounds: Optional[List[float]]) -> None:
    """Point a 3D ``view`` (trame-slicer's ``ThreeDView``) at ``bounds`` from the front
    (anterior, as Slicer's reset), or at everything it shows when ``bounds`` is None."""
    if bounds is None:
        view.reset_view()
        return
    from slicer import vtkMRMLCameraNode

    camera_node = view.get_camera_node()
    if camera_node is not None:
        camera_node.RotateTo(vtkMRMLCameraNode.Anterior)
    renderer = view.renderer()
    renderer.ResetCamera(bounds)
    renderer.ResetCameraClippingRange()
    view.schedule_render()


def describe(facts: Dict[str, int]) -> str:
    """The page's line over the 3D view's content."""
    if facts.get("surfaces"):
        count = facts["surfaces"]
        return (f"3D: {count} surface{'s' if count != 1 else ''}, "
                f"{facts['triangles']} triangles")
    if facts.get("points"):
        count = facts["points"]
        return f"3D: {count} candidate point{'s' if count != 1 else ''}"
    return "3D: nothing to show"


__all__ = ["CLOSED_SURFACE", "SMOOTHING_FACTOR", "SURFACE_TASKS", "closed_surfaces",
           "describe", "reset_camera", "result_bounds", "show_in_views",
           "show_result_in_3d", "surface_facts"]

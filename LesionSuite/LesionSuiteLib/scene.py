"""A working MRML scene outside the Slicer application, and module-logic look-up.

Inside 3D Slicer the application has already built ``slicer.mrmlScene`` with every module
logic attached; LesionSuite's Logic classes pass that scene to the bridge functions. Under
the ``slicer-core`` wheel (plain Python, tests, the trame front end) nothing is set up, and
several things silently fail without the module logics: ``AddEmptySegment`` cannot create a
binary labelmap until the Segmentations logic has registered its converter rules, and
display nodes need the colour nodes of the Colors logic. :func:`create_scene` does the
set-up the Slicer application would do (as Kitware's trame-slicer also does).

The logics are kept alive in a module-level registry keyed by scene, because VTK objects
that nothing references from Python would otherwise be destroyed; :func:`release_scene`
drops them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import slicer
from vtkmodules.vtkCommonCore import vtkCollection, vtkObject

# name under which the Slicer application registers each logic -> class in the wheel
_MODULE_LOGIC_CLASSES = (
    ("Volumes", "vtkSlicerVolumesLogic"),
    ("Terminologies", "vtkSlicerTerminologiesModuleLogic"),
    ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    ("Data", "vtkSlicerDataModuleLogic"),
    ("Markups", "vtkSlicerMarkupsLogic"),
    ("Tables", "vtkSlicerTablesLogic"),
)


@dataclass
class SceneContext:
    """A scene with its application logic and module logics (kept alive together)."""

    scene: object
    app_logic: object
    logics: dict = field(default_factory=dict)

    def logic(self, name: str):
        """Module logic by its Slicer module name, e.g. ``"Segmentations"``."""
        return self.logics.get(name)


_CONTEXTS: dict[str, SceneContext] = {}


def _key(scene) -> str:
    return scene.GetAddressAsString("vtkMRMLScene")


def _set_scene_quietly(logic, scene) -> None:
    """``logic.SetMRMLScene(scene)`` without VTK error/warning output.

    The Terminologies logic reloads its default dictionaries whenever its scene changes and
    logs that it cannot find them: the wheel ships none. That is harmless, since LesionSuite
    writes complete terminology entries itself, so the noise is silenced for this call only.
    """
    was_on = vtkObject.GetGlobalWarningDisplay()
    vtkObject.GlobalWarningDisplayOff()
    try:
        logic.SetMRMLScene(scene)
    finally:
        vtkObject.SetGlobalWarningDisplay(was_on)


def create_scene_context() -> SceneContext:
    """Build a new scene with application logic, colour nodes and module logics registered."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())
    context = SceneContext(scene, app_logic, {"Colors": color_logic})

    for name, class_name in _MODULE_LOGIC_CLASSES:
        logic_class = getattr(slicer, class_name, None)
        if logic_class is None:  # a module left out of this build of slicer-core
            continue
        logic = logic_class()
        logic.SetMRMLApplicationLogic(app_logic)
        if name == "Terminologies":
            _set_scene_quietly(logic, scene)
        else:
            logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        context.logics[name] = logic

    _CONTEXTS[_key(scene)] = context
    return context


def create_scene():
    """A new ``vtkMRMLScene`` ready for volumes, segmentations, markups and tables.

    For use outside the Slicer application only; in Slicer use ``slicer.mrmlScene``.
    """
    return create_scene_context().scene


def scene_context(scene) -> SceneContext | None:
    """The context of a scene made by :func:`create_scene`, else None."""
    return _CONTEXTS.get(_key(scene))


def release_scene(scene) -> None:
    """Clear a scene made by :func:`create_scene` and let its logics be freed."""
    context = _CONTEXTS.pop(_key(scene), None)
    if context is None:
        return
    scene.Clear(True)
    for logic in context.logics.values():
        _set_scene_quietly(logic, None)
    context.app_logic.SetMRMLScene(None)


def get_module_logic(scene, name: str):
    """Module logic (e.g. ``"Segmentations"``) that serves ``scene``, or None.

    Scenes made by :func:`create_scene` answer from the registry. Inside the Slicer
    application the logic is looked up, read-only, in the application logic that Slicer
    already built; this is the only place LesionSuiteLib reaches for the application.
    """
    context = scene_context(scene)
    if context is not None:
        return context.logic(name)
    application = getattr(sys.modules.get("slicer"), "app", None)
    if application is None:
        return None
    app_logic = application.applicationLogic()
    if app_logic is None or app_logic.GetMRMLScene() is not scene:
        return None
    return app_logic.GetModuleLogic(name)


def segmentations_logic(scene):
    """The ``vtkSlicerSegmentationsModuleLogic`` serving ``scene`` (wheel or application).

    Its ``ImportLabelmapToSegmentationNode`` / ``ExportSegmentsToLabelmapNode`` are static and
    can also be called on the class; the instance matters for the scene-level set-up.
    """
    return get_module_logic(scene, "Segmentations")

"""LesionSuiteLib: the Slicer side of LesionSuite (MRML bridge and scene set-up).

Imports ``slicer`` (the application or the ``slicer-core`` wheel) but never Qt, so it is
usable from Logic classes, the Python console, headless runs and tests. The bridge
(:mod:`LesionSuiteLib.mrml_bridge`) is the only code that converts between
``lesion_core`` data and MRML nodes; :mod:`LesionSuiteLib.scene` builds a working scene
outside the Slicer application.
"""

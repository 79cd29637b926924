"""LesionSuiteGUI: the Qt parts shared by the task modules' widgets.

Only widget code lives here (``qt``, ``slicer.app``, dialogs); the Logic of each task stays
in its ``*Lib`` package and in ``LesionSuiteLib``, which never import Qt. A package rather
than a top-level script, because Slicer would try to load a top-level ``.py`` file as a
module. See :class:`~LesionSuiteGUI.task_widget.TaskWidget`, the base of the task
panels, :mod:`~LesionSuiteGUI.errors`, and :mod:`~LesionSuiteGUI.dependencies` (the
installation of the Python packages and the device, shared with the hub). Nothing here
imports a module file (``LesionSuite.py``, ...): those sit above their packages.
"""

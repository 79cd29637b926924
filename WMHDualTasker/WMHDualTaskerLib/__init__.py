"""WMHDualTaskerLib: the Logic of the WMH DualTasker module (no Qt, no ``slicer.app``).

- :mod:`.logic`: :class:`~.logic.WMHDualTaskerLogic` turns a FLAIR (or 3D T1) volume node
  into a WMH segmentation, an activation overlay, the ARWMC ratings table and the region
  atlas, in process or in a child process (``lesion-suite wmh predict``); its
  "Train from my ratings" runs ``lesion-suite wmh train`` in a child process.
- :mod:`.outputs`: what a prediction produced, in process or read back from the child's
  files, and the rows of the ARWMC table.
- :mod:`.review`: :class:`~.review.RatingReview`, the reader's ARWMC ratings of one case,
  written at once to the feedback store; the case id.

What the three task modules do alike is in ``LesionSuiteLib`` (:mod:`LesionSuiteLib.
task_logic`, :mod:`LesionSuiteLib.case_review`, :mod:`LesionSuiteLib.retraining`).

Heavy packages (torch, MONAI, SimpleITK) are imported inside functions, so Slicer can load
the module before the LesionSuite hub has installed them.
"""

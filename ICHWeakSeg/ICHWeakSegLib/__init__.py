"""ICHWeakSegLib: the Logic of the ICH WeakSeg module (no Qt, no ``slicer.app``).

- :mod:`.logic`: :class:`~.logic.ICHWeakSegLogic` runs ``lesion-suite ich predict`` on a CT
  volume node in a child process and turns its outputs into a segmentation (one segment
  per subtype present), the class activation map as a coloured overlay and a table with
  one row per axial slice; a reader's stored mask is shown instead of the model's. Its
  "Retrain classifier from my labels" runs ``lesion-suite ich train`` in a child process.
- :mod:`.outputs`: the files of ``ich predict`` read back (label map, CAM, per-slice CSV,
  summary JSON), the table rows and the slice positions.
- :mod:`.review`: :class:`~.review.ICHSliceReview`, the reader's slice labels
  (haemorrhage / no haemorrhage, subtypes) and undo of one case, written at once to the
  feedback store and shown in the table; saving the edited segmentation as a reader mask.

What the three task modules do alike is in ``LesionSuiteLib`` (:mod:`LesionSuiteLib.
task_logic`, :mod:`LesionSuiteLib.case_review`, :mod:`LesionSuiteLib.retraining`).

Heavy packages (torch, MONAI) are only used by the child processes, so Slicer can load the
module before the LesionSuite hub has installed them.
"""

"""CMBDetectorLib: the Logic of the CMB Detector module (no Qt, no ``slicer.app``).

- :mod:`.logic`: :class:`~.logic.CMBDetectorLogic` runs ``lesion-suite cmb predict`` on an
  SWI / T2*-GRE volume node in a child process and turns its outputs into a markups point
  list of the candidates, a table in step with it and a segmentation of the kept CMBs;
  its "Retrain from my decisions" runs ``lesion-suite cmb train`` in a child process.
- :mod:`.outputs`: the files of ``cmb predict`` read back (candidates JSON, label maps),
  the table rows and the point descriptions.
- :mod:`.review`: :class:`~.review.CMBReview`, the reader's accept / reject / add / undo
  of one case, written at once to the feedback store and shown on the points and rows;
  the export of the accepted microbleeds as a label map.

What the three task modules do alike is in ``LesionSuiteLib`` (:mod:`LesionSuiteLib.
task_logic`, :mod:`LesionSuiteLib.case_review`, :mod:`LesionSuiteLib.retraining`).

Heavy packages (torch, MONAI) are only used by the child processes, so Slicer can load the
module before the LesionSuite hub has installed them.
"""

"""The browser review station: the task modules' reviews served by trame-slicer.

``lesion-suite review DIR`` (:mod:`lesion_core.cli.review`) starts :func:`.server.serve`:
a trame server holding one MRML scene, which the task Logic classes fill from a
prediction output folder exactly as in Slicer, and a page with linked slice views, a 3D
view of the result, the case queue and the review controls. Every button calls the task's own review object
(``CMBReview`` ...), so decisions go to the feedback store through the same state
machines as in the Slicer modules.

- :mod:`.cases`: the case queue (prediction folders under DIR, their images, the store);
- :mod:`.session`: one case loaded into a scene and its review (no trame: testable under
  the ``slicer-core`` wheel alone);
- :mod:`.reviews`: each task's review as the page sees it (rows, actions, overlay; no
  trame either);
- :mod:`.surfaces`: the result in the 3D view (closed surfaces of the segmentation, the
  CMB points; no trame either);
- :mod:`.panels`: the task panels' widgets (CMB candidates, WMH ARWMC ratings, ICH slice
  labels);
- :mod:`.server`: the trame application (imports trame-slicer).

Not shipped in the Slicer extension: Slicer has its own views; this needs trame-slicer
(``pip install "lesion-suite[review]"``).
"""

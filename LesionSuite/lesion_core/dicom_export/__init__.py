"""Results back to PACS: DICOM Segmentation (SEG) and Structured Report (SR) with highdicom.

One job per module, none importing slicer, qt or vtk:

* :mod:`.specs`: the plain descriptions (algorithm, segments, the segment map);
* :mod:`.codes`: every coded concept written, and which are LesionSuite's own;
* :mod:`.segments`: a task's label map and summary as segments (WMH; one per CMB; one per
  ICH subtype present);
* :mod:`.seg`: the binary (and fractional) SEG on the source series' frames;
* :mod:`.measurements`: a task's figures as TID 1500 measurement groups;
* :mod:`.review`: a reader's decisions from the feedback store, for the SR;
* :mod:`.sr`: the Comprehensive 3D SR (TID 1500 Measurement Report);
* :mod:`.export`: one result end to end (:func:`.export.export_result` for any caller,
  :func:`.export.export_case` for ``predict --dicom``);
* :mod:`.validate`: ``dciodvfy`` (dicom3tools), for the tests and for users.

highdicom is imported when an object is built, not when this package is.
See docs/dicom.md.
"""

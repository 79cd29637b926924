"""lesion_core: the pure-Python library behind LesionSuite (no slicer, qt or vtk imports).

Layout: ``volume`` (the image type), ``io`` (NIfTI, NRRD, DICOM), ``validation`` (bad-input
checks), ``progress`` (progress/cancel), ``feedback`` (reader decisions store), ``bundle``
(model folders), ``device`` (CPU/GPU choice), ``cli`` (the ``lesion-suite`` command).
"""

__version__ = "0.1.0"

"""CMBDetector (issue 6, in progress): SWI preprocessing and candidate extraction
(``candidates``), patches and their training labels (``patches``), the teacher/student
discriminator with flip test-time augmentation (``discriminator``, ``distillation``), and
the stage-3 clean-up rules (``cleanup``). Training of stage 1, the bundle, the CLI and the
Slicer review are still to come."""

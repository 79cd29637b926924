"""Reports a person reads: one self-contained ``report.html`` per prediction, and a cohort
page over many.

A report is built from what ``lesion-suite <task> predict`` wrote into its output folder
(read with the task's torch-free readers) and the input image; nothing is recomputed, so it
works on any prediction folder, old or new. Images are embedded as base64 PNG, so the file
can be mailed or archived alone.

Modules, one job each:

- :mod:`.display`: the display geometry: the image put in RAS voxel order, the axial
  slices shown, the in-plane pixel grid (radiological convention: the patient's right on
  the left of the picture, anterior at the top), intensity windows;
- :mod:`.mosaic`: overlays (translucent maps, filled or outlined labels, circled points)
  drawn on those slices and laid out as one RGB array;
- :mod:`.html`: the page, from small typed dataclasses (:class:`~.html.Page`);
- :mod:`.plots`: matplotlib figures (cohort plots) as PNG bytes;
- :mod:`.folders`: finding prediction folders and reading them (which task, which stem);
- :mod:`.reader`: the reader's decisions for the image in a feedback store;
- :mod:`.wmh`, :mod:`.cmb`, :mod:`.ich`: what each task shows (overlays, tables, figures);
- :mod:`.case`: one case's page; :mod:`.cohort`: the cohort page.

Nothing here imports torch. Import the modules themselves (``lesion_core.report.case``...):
this package file imports none, so the task views can import their siblings without a cycle.
"""

"""WMH-DualTasker: WMH segmentation and ARWMC rating learned from ratings alone.

Modules: :mod:`.config` (typed configurations), :mod:`.preprocess` (working grid),
:mod:`.network` (``DualTaskerNet``), :mod:`.consistency` (transforms and the consistency
loss), :mod:`.losses` (rating loss), :mod:`.data` (ratings tables; never voxel labels),
:mod:`.train` and :mod:`.calibrate` (rating-calibrated segmentation thresholds).
Import the submodules; this package imports nothing heavy by itself.
"""

"""ICHWeakSeg: intracranial haemorrhage on non-contrast CT from image-level labels.

Modules: :mod:`.config` (typed configurations), :mod:`.preprocess` (CT in HU -> windowed
axial slice stack, and back), :mod:`.classifier` (slice encoder + bidirectional GRU,
multiple-instance pooling), :mod:`.cam` (Grad-CAM or LayerCAM through the sequence model),
:mod:`.refine` (HU clustering and morphology -> pseudo-masks), :mod:`.segmenter` (2.5D
U-Net), :mod:`.data` (weak-label tables; never voxel labels), :mod:`.augment` (training
inputs randomized in HU), :mod:`.train` (the weakly supervised pipeline, on the training
engine of :mod:`lesion_core.training`) and :mod:`.supervised` (the fully supervised
low-data baseline, the only reader of voxel labels). Import the submodules; this package imports nothing heavy.
"""

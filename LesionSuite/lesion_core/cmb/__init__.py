"""CMBDetector: cerebral microbleeds on SWI / T2*-GRE in three stages.

Stage 1 (``stage1``, ``candidates``): a patch-trained 3D U-Net on a 1 mm RAS grid, run by
sliding window, thresholded for high sensitivity into 26-connected candidates. Stage 2
(``discriminator``, ``distillation``, ``patches``): a student classifier distilled from a
teacher judges a 24^3 patch around each candidate, with flip test-time augmentation.
Stage 3 (``cleanup``): size, shape, brain and air-distance rules. ``predict`` runs them
(with MARS locations), ``fit`` / ``calibrate`` train and calibrate them, ``model`` keeps
them in one bundle, ``evaluate`` scores each stage, ``reader_decisions`` and ``finetune``
turn a reader's accept / reject / add decisions into a retrained model.
"""

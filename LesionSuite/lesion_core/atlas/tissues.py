"""Tissue means per modality, and the partial-volume tissue mixture they weight.

One table serves the template rendered for registration (:mod:`lesion_core.registration`,
the centre values) and the synthetic cohort (:mod:`lesion_core.synth.contrast`, a draw
per subject within the spread). MR values are relative to normal white matter (= 1.0,
arbitrary units); CT values are Hounsfield units. The means and their spread come from
the literature, cited in ``docs/synthetic_cohort.md``, and are measured on generated
images by the tests and by ``bench``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: The modalities of :data:`TISSUE_MEANS` (SWI stands for SWI and T2*-GRE magnitude).
MODALITIES = ("FLAIR", "T1", "SWI", "CT")

#: Tissue means per modality (MR: relative to white matter; CT: HU), with +- spread drawn
#: uniformly per subject. ``cortex`` is grey matter outside the deep nuclei.
TISSUE_MEANS: dict[str, dict[str, tuple[float, float]]] = {
    # FLAIR: CSF suppressed, GM/WM ~1.1-1.3, fat in the scalp moderately bright.
    "FLAIR": {"wm": (1.0, 0), "cortex": (1.22, 0.05), "deep_gm": (1.15, 0.05),
              "csf": (0.12, 0.04), "ventricles": (0.1, 0.03), "skull": (0.05, 0.02),
              "scalp": (0.9, 0.15), "air": (0.0, 0), "background": (0.0, 0)},
    # T1 (MPRAGE-like): GM/WM ~0.6-0.7, CSF dark, scalp fat bright. Tuned so that the
    # brain histogram's GM/WM and CSF/WM peak ratios match those of a real 3D T1
    # (lesion_core.synth.realism; docs/synthetic_cohort.md).
    "T1": {"wm": (1.0, 0), "cortex": (0.63, 0.04), "deep_gm": (0.75, 0.04),
           "csf": (0.12, 0.04), "ventricles": (0.1, 0.03), "skull": (0.1, 0.03),
           "scalp": (0.85, 0.1), "air": (0.0, 0), "background": (0.0, 0)},
    # SWI / T2*-GRE magnitude: CSF bright, iron-rich deep grey matter dark.
    "SWI": {"wm": (1.0, 0), "cortex": (1.12, 0.04), "deep_gm": (0.72, 0.06),
            "csf": (1.45, 0.1), "ventricles": (1.5, 0.1), "skull": (0.08, 0.03),
            "scalp": (0.7, 0.1), "air": (0.0, 0), "background": (0.0, 0)},
    # Non-contrast CT in HU: GM 35-45, WM 20-30, CSF 0-15, bone ~1000, air -1000.
    "CT": {"wm": (26.0, 3), "cortex": (39.0, 3), "deep_gm": (37.0, 3),
           "csf": (8.0, 4), "ventricles": (6.0, 3), "skull": (1000.0, 250),
           "scalp": (35.0, 15), "air": (-1000.0, 0), "background": (-1000.0, 0)},
}


def tissue_mixture(tissues: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Partial-volume fractions (0-1, float32) of the :data:`TISSUE_MEANS` tissues from
    tissue probability maps (the template's :data:`~.template.TISSUES`, on any grid, all
    of one shape): they sum to 1 per voxel, ``background`` filling the rest. Grey matter
    splits into ``deep_gm`` and ``cortex``; ``csf`` excludes the ventricles."""
    t = tissues
    deep = np.minimum(t["deep_gm"], t["gm"])
    parts = {"wm": t["wm"], "cortex": t["gm"] - deep, "deep_gm": deep,
             "csf": np.clip(t["csf"] - t["ventricles"], 0, None), "ventricles": t["ventricles"],
             "skull": t["skull"], "scalp": t["scalp"], "air": t["air"]}
    total = sum(parts.values())
    scale = np.where(total > 1, 1 / np.maximum(total, 1e-6), 1.0)
    parts = {k: (v * scale).astype(np.float32) for k, v in parts.items()}
    parts["background"] = np.clip(1 - sum(parts.values()), 0, 1)
    return parts

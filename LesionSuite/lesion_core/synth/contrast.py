"""Image contrast synthesised from tissue maps, for FLAIR, T1, SWI / T2*-GRE and CT.

Intensity of a voxel = partial-volume mix of tissue means, then lesion layers painted on
top. MR values are relative to normal white matter (= 1.0, arbitrary units); CT values
are Hounsfield units. The means and their per-subject spread come from the literature,
cited in ``docs/synthetic_cohort.md``, and are measured on generated images by the tests
and by ``bench``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .anatomy import SubjectAnatomy

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


@dataclass
class LesionLayer:
    """A lesion (or mimic) painted over the tissue mix.

    ``fraction``: 0-1 partial-volume map on the subject grid, indexed ``[i, j, k]``.
    ``values``: intensity per modality (same units as :data:`TISSUE_MEANS`); modalities
    not listed do not show the layer. ``relative=True`` multiplies the underlying tissue
    instead (e.g. 0.2 = 80 % signal loss) — right for susceptibility blooming.
    """

    name: str
    fraction: np.ndarray
    values: dict[str, float]
    relative: dict[str, bool] = field(default_factory=dict)


def tissue_mixture(anatomy: SubjectAnatomy) -> dict[str, np.ndarray]:
    """Partial-volume fractions summing to 1 per voxel (background fills the rest)."""
    t = anatomy.tissues
    deep = np.minimum(t["deep_gm"], t["gm"])
    parts = {"wm": t["wm"], "cortex": t["gm"] - deep, "deep_gm": deep,
             "csf": np.clip(t["csf"] - t["ventricles"], 0, None), "ventricles": t["ventricles"],
             "skull": t["skull"], "scalp": t["scalp"], "air": t["air"]}
    total = sum(parts.values())
    scale = np.where(total > 1, 1 / np.maximum(total, 1e-6), 1.0)
    parts = {k: (v * scale).astype(np.float32) for k, v in parts.items()}
    parts["background"] = np.clip(1 - sum(parts.values()), 0, 1)
    return parts


def draw_tissue_means(modality: str, rng: np.random.Generator) -> dict[str, float]:
    """One subject's tissue means: literature centre +- uniform spread."""
    return {t: float(m + rng.uniform(-s, s)) for t, (m, s) in TISSUE_MEANS[modality].items()}


def render(anatomy: SubjectAnatomy, modality: str, layers: list[LesionLayer],
           rng: np.random.Generator, texture: float = 0.03) -> np.ndarray:
    """Noise-free image on the subject grid (float32): tissues, texture, then lesions."""
    if modality not in TISSUE_MEANS:
        raise ValueError(f"unknown modality {modality!r}; choose from {MODALITIES}")
    means = draw_tissue_means(modality, rng)
    mixture = tissue_mixture(anatomy)
    image = sum(mixture[t] * means[t] for t in mixture)
    # Smooth tissue texture (a few percent, 3 mm) so that flat regions are not flat.
    spacing = anatomy.grid.spacing[0]
    brain = mixture["wm"] + mixture["cortex"] + mixture["deep_gm"]
    wobble = ndimage.gaussian_filter(rng.standard_normal(image.shape).astype(np.float32), 3.0 / spacing)
    wobble /= max(float(wobble.std()), 1e-6)
    scale = means["wm"] if modality != "CT" else 10.0
    image = image + texture * scale * brain * wobble
    for layer in layers:
        if modality not in layer.values:
            continue
        value = layer.values[modality]
        f = layer.fraction.astype(np.float32)
        if layer.relative.get(modality, False):
            image = image * (1 - f + f * value)
        else:
            image = image * (1 - f) + f * value
    return image.astype(np.float32)

"""Image contrast synthesised from tissue maps, for FLAIR, T1, SWI / T2*-GRE and CT.

Intensity of a voxel = partial-volume mix of tissue means (:data:`TISSUE_MEANS` of
:mod:`lesion_core.atlas.tissues`, one draw per subject), then lesion layers painted on
top. MR values are relative to normal white matter (= 1.0, arbitrary units); CT values
are Hounsfield units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from ..atlas.tissues import MODALITIES, TISSUE_MEANS
from .anatomy import SubjectAnatomy


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


def draw_tissue_means(modality: str, rng: np.random.Generator,
                      ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """One subject's tissue means (units of :data:`TISSUE_MEANS`): literature centre +-
    uniform spread, or uniform in ``ranges[tissue] = (low, high)`` when given (the wide
    ranges of :mod:`lesion_core.synth.domain`). One draw per tissue either way."""
    if ranges is None:
        return {t: float(m + rng.uniform(-s, s)) for t, (m, s) in TISSUE_MEANS[modality].items()}
    return {t: float(rng.uniform(*ranges[t])) for t in TISSUE_MEANS[modality]}


def _box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box (slices, ``margin`` voxels wider) of a mask's True voxels; None if empty."""
    plane = mask.any(axis=2)
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    if rows.size == 0:
        return None
    depth = np.flatnonzero(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].any(axis=(0, 1)))
    return tuple(slice(max(lo - margin, 0), min(hi + 1 + margin, n))
                 for lo, hi, n in zip((rows[0], cols[0], depth[0]), (rows[-1], cols[-1], depth[-1]),
                                      mask.shape))


def _mixed(anatomy: SubjectAnatomy, means: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial-volume mix of the tissue means, and the brain fraction (wm + gm), exactly as
    :func:`~lesion_core.atlas.tissues.tissue_mixture` defines the fractions, without
    building them one by one."""
    t = {n: torch.from_numpy(np.asarray(a, np.float32)) for n, a in anatomy.tissues.items()}
    csf = torch.clamp(t["csf"] - t["ventricles"], min=0)
    deep = torch.minimum(t["deep_gm"], t["gm"])
    total = t["wm"] + t["gm"]
    brain = total.clone()
    image = t["wm"] * means["wm"]
    image.add_(t["gm"], alpha=means["cortex"]).add_(deep, alpha=means["deep_gm"] - means["cortex"])
    image.add_(csf, alpha=means["csf"])
    total.add_(csf)
    for name in ("ventricles", "skull", "scalp", "air"):
        image.add_(t[name], alpha=means[name])
        total.add_(t[name])
    scale = torch.reciprocal(total.clamp(min=1.0))  # fractions summing over 1 are rescaled
    image.mul_(scale)
    brain.mul_(scale)
    if means["background"] != 0:
        image.add_(torch.clamp(1 - total.mul_(scale), 0, 1), alpha=means["background"])
    return image, brain


def render(anatomy: SubjectAnatomy, modality: str, layers: list[LesionLayer],
           rng: np.random.Generator, texture: float = 0.03,
           means: dict[str, float] | None = None) -> np.ndarray:
    """Noise-free image on the subject grid (float32): tissues, texture, then lesions.

    ``means``: the tissue means (see :func:`draw_tissue_means`); drawn here when None.
    """
    if modality not in TISSUE_MEANS:
        raise ValueError(f"unknown modality {modality!r}; choose from {MODALITIES}")
    means = draw_tissue_means(modality, rng) if means is None else means
    image, brain = _mixed(anatomy, means)
    # Smooth tissue texture (a few percent, 3 mm) so that flat regions are not flat; the
    # noise is drawn for the whole grid (the random stream stays that of earlier versions)
    # but filtered only in the brain's bounding box (it is weighted by the brain fraction).
    spacing = anatomy.grid.spacing[0]
    sigma = 3.0 / spacing
    noise = rng.standard_normal(image.shape)
    box = _box(brain.numpy() > 0, margin=int(np.ceil(4 * sigma)))
    if box is not None:
        wobble = ndimage.gaussian_filter(noise[box].astype(np.float32), sigma)
        wobble *= 1.0 / max(float(wobble.std()), 1e-6)
        scale = means["wm"] if modality != "CT" else 10.0
        image[box].addcmul_(brain[box], torch.from_numpy(wobble), value=texture * scale)
    for layer in layers:
        if modality not in layer.values:
            continue
        value = layer.values[modality]
        fraction = np.asarray(layer.fraction)
        box = _box(fraction > 0)
        if box is None:
            continue
        f = torch.from_numpy(fraction[box].astype(np.float32))
        part = image[box]
        if layer.relative.get(modality, False):
            part.mul_(f.mul_(value - 1).add_(1))     # 1 - f + f * value
        else:
            part.add_(f.mul_(value - part))          # (1 - f) * image + f * value
    return image.numpy()

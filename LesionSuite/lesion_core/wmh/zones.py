"""The deep-T1-WMH reporting zones in MNI space: periventricular, deep and juxtacortical
white matter, each split frontal / posterior and left / right (12 zones).

Rules (distances in mm on the 1 mm template, probability maps > 0.5 unless stated):

- *periventricular*: within :data:`PERIVENTRICULAR_MM` of the lateral ventricles;
- *juxtacortical*: not periventricular and within :data:`JUXTACORTICAL_MM` of cortical grey
  matter (grey matter outside the deep nuclei);
- *deep*: every other brain voxel (deep white matter, basal ganglia, infratentorial);
- *frontal* where the ARWMC atlas says frontal, *posterior* elsewhere; *left* at MNI x < 0.

A lesion voxel is reported in the zone it lies in (volumes per zone add up to the total).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..atlas import arwmc as arwmc_module
from ..atlas.arwmc import LABELS as ARWMC_LABELS
from ..atlas.arwmc import arwmc_atlas_mni
from ..atlas.template import cached_arrays, load_template

PERIVENTRICULAR_MM = 10.0
JUXTACORTICAL_MM = 4.0
ZONE_KINDS = ("periventricular", "deep", "juxtacortical")
ZONES = tuple(f"{kind}_{lobe}_{side}" for kind in ZONE_KINDS
              for lobe in ("frontal", "posterior") for side in ("left", "right"))


@lru_cache(maxsize=1)
def zone_atlas_mni() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Zone labels on the template grid (``uint8`` ``[i, j, k]``, ``names[label - 1]``,
    0 outside the brain), its voxel-to-MNI affine (mm) and the names. Cached on disk."""
    # Built from the ARWMC atlas too: its source is part of the cache key.
    stored = cached_arrays("wmh_zones", _build, Path(__file__).read_text(),
                           Path(arwmc_module.__file__).read_text())
    labels = stored["labels"]
    labels.setflags(write=False)
    return labels, stored["affine"], ZONES


def _build() -> dict[str, np.ndarray]:
    template = load_template()
    arwmc, affine, _ = arwmc_atlas_mni()
    spacing = np.abs(np.diag(affine)[:3])
    ventricles = template.maps["ventricles"] > 0.5
    cortex = (template.maps["gm"] > 0.5) & ~(template.maps["deep_gm"] > 0.3)
    to_ventricle = ndimage.distance_transform_edt(~ventricles, sampling=spacing)
    to_cortex = ndimage.distance_transform_edt(~cortex, sampling=spacing)
    kind = np.full(template.shape, 1, np.uint8)                     # deep
    kind[to_cortex <= JUXTACORTICAL_MM] = 2                          # juxtacortical
    kind[to_ventricle <= PERIVENTRICULAR_MM] = 0                     # periventricular
    frontal = np.isin(arwmc, (ARWMC_LABELS["frontal_left"], ARWMC_LABELS["frontal_right"]))
    x = affine[0, 0] * np.arange(template.shape[0]) + affine[0, 3]
    right = np.broadcast_to((x >= 0)[:, None, None], template.shape)
    labels = (kind.astype(np.int16) * 4 + (~frontal) * 2 + right + 1).astype(np.uint8)
    labels[~template.brain] = 0
    return {"labels": labels, "affine": affine.copy()}


def zone_volumes_ml(lesion: np.ndarray, zones: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Lesion volume (mL) per zone of a zone map on the same grid (``zones`` 0 = none)."""
    counts = np.bincount(np.asarray(zones)[np.asarray(lesion) > 0].ravel().astype(np.int64),
                         minlength=len(ZONES) + 1)
    return {name: float(counts[i + 1] * voxel_ml) for i, name in enumerate(ZONES)}

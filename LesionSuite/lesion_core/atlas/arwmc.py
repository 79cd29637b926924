"""The ARWMC region atlas in MNI space: the region-side vocabulary of the WMH task.

The age-related white matter changes (ARWMC) scale (Wahlund et al., Stroke 2001) rates
five regions in each hemisphere from 0 to 3 (total 0-30). Here the regions are drawn on
the 1 mm MNI152 2009 template grid of :func:`~lesion_core.atlas.template.load_template`
by geometric rules in MNI millimetres ``(x, y, z)`` (x to the right, y anterior,
z superior); every voxel of the template brain mask gets exactly one region-side:

- **side**: ``x < 0`` is left, ``x > 0`` right; the mid-sagittal plane ``x = 0`` is
  shared alternately (even y-index left, odd right) so that both sides have equal volume.
- **infratentorial** (brainstem and cerebellum), taken first: the brainstem box
  ``|x| <= 14, -42 <= y <= -8, z <= -10``, or, behind ``y <= -40``, everything below the
  tentorium, modelled as the plane ``z < -8 - 0.25 |x| - 0.2 (-40 - y)`` (it slopes down
  laterally and posteriorly, as the tentorium cerebelli does).
- **basal ganglia** (striatum, globus pallidus, thalamus, internal and external capsule):
  in each axial slice and hemisphere, the convex hull of the template's deep grey
  nuclei (``deep_gm > 0.3``), which spans the internal capsule between caudate/thalamus
  and the lentiform nucleus, dilated by 3 mm, limited to ``-12 <= z <= 22``.
- **temporal**: below the Sylvian plane ``z < z_s(y)``, with ``z_s`` piecewise linear
  through ``(y, z) = (25, -22), (5, -10), (-20, 2), (-45, 12)`` (the fissure rises
  backwards), for ``-50 < y < 25`` and ``|x| >= 16`` (medial of that is diencephalon).
- **frontal**: the rest anterior to the central sulcus, modelled as
  ``y > -10 - 0.5 max(z - 30, 0)`` (y = -10 mm at z <= 30, -31 mm at the vertex).
- **parieto-occipital**: everything else (posterior to the central sulcus, above the
  tentorium and Sylvian plane).

Label values (``uint8``): 0 outside the brain, then ``REGIONS[label - 1]``::

    1 frontal_left          2 frontal_right
    3 parieto_occipital_left 4 parieto_occipital_right
    5 temporal_left          6 temporal_right
    7 infratentorial_left    8 infratentorial_right
    9 basal_ganglia_left    10 basal_ganglia_right

The rating rules that score lesions in these regions are the synthetic cohort's
(:mod:`lesion_core.synth.ratings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .template import cached_arrays, load_template

#: The five ARWMC regions, each rated per side.
REGION_NAMES = ("frontal", "parieto_occipital", "temporal", "infratentorial", "basal_ganglia")
#: Region-side names; label value = index + 1.
REGIONS = tuple(f"{region}_{side}" for region in REGION_NAMES for side in ("left", "right"))
#: Region-side name -> label value.
LABELS = {name: index + 1 for index, name in enumerate(REGIONS)}


def _piecewise_sylvian(y: np.ndarray) -> np.ndarray:
    """Height (MNI z, mm) of the Sylvian plane at MNI y (mm)."""
    return np.interp(-y, [-25.0, -5.0, 20.0, 45.0], [-22.0, -10.0, 2.0, 12.0])


@lru_cache(maxsize=1)
def arwmc_atlas_mni() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """ARWMC region-side labels on the template grid (``uint8``, ``[i, j, k]``), its
    voxel-to-MNI affine (mm) and the names (``names[label - 1]``). Built once (~1 s) and
    cached on disk beside the template maps."""
    stored = cached_arrays("arwmc_atlas", _build_atlas, Path(__file__).read_text())
    labels = stored["labels"]
    labels.setflags(write=False)
    return labels, stored["affine"], REGIONS


def _build_atlas() -> dict[str, np.ndarray]:
    from skimage.morphology import convex_hull_image

    template = load_template()
    affine = template.affine
    shape = template.shape
    x, y, z = (affine[a, a] * np.arange(n) + affine[a, 3] for a, n in enumerate(shape))
    X, Y, Z = x[:, None, None], y[None, :, None], z[None, None, :]
    brain = template.brain

    regions = np.zeros(shape, np.uint8)  # region index + 1 (1..5), side added at the end
    frontal = np.broadcast_to(Y > -10.0 - 0.5 * np.maximum(Z - 30.0, 0.0), shape)
    regions[:] = np.where(frontal, 1, 2)
    temporal = (Z < _piecewise_sylvian(Y)) & (Y > -50) & (Y < 25) & (np.abs(X) >= 16)
    regions[np.broadcast_to(temporal, shape)] = 3

    # Basal ganglia: per axial slice and hemisphere, the hull of the deep grey nuclei.
    deep = template.maps["deep_gm"] > 0.3
    ganglia = np.zeros(shape, bool)
    for k in np.flatnonzero((z >= -12) & (z <= 22)):
        for half in (x < 0, x > 0):
            plane = deep[:, :, k] & half[:, None]
            if plane.sum() >= 3:
                ganglia[:, :, k] |= convex_hull_image(plane) & half[:, None]
    ganglia = ndimage.binary_dilation(ganglia, ndimage.generate_binary_structure(3, 1), iterations=3)
    ganglia &= np.broadcast_to((Z >= -12) & (Z <= 22), shape)
    regions[ganglia] = 5

    stem = (np.abs(X) <= 14) & (Y >= -42) & (Y <= -8) & (Z <= -10)
    tentorium = -8.0 - 0.25 * np.abs(X) - 0.2 * (-40.0 - Y)
    infra = stem | ((Y <= -40) & (Z < tentorium))
    regions[np.broadcast_to(infra, shape)] = 4

    left = np.broadcast_to((X < 0) | ((X == 0) & (np.arange(shape[1])[None, :, None] % 2 == 0)), shape)
    labels = (2 * (regions.astype(np.int16) - 1) + 1 + (~left)).astype(np.uint8)
    labels[~brain] = 0
    # Region order in the label values: frontal, parieto-occipital, temporal, infra, BG.
    return {"labels": labels, "affine": affine.copy()}

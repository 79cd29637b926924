"""Microbleed Anatomical Rating Scale (MARS) locations of MNI points.

MARS (Gregoire et al., Neurology 2009) places a cerebral microbleed in one of three
categories (:data:`CATEGORIES`: lobar, deep, infratentorial) and a region within it. Here
both come from geometric rules in MNI152 millimetres ``(x, y, z)`` (x to the right, y
anterior, z superior) on the template of :func:`~lesion_core.atlas.template.load_template`;
the rules are stated on :func:`classify_mni`. The CMB detector locates what it finds by
them after registration to the template, and the synthetic cohort places its microbleeds
by them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .template import cached_arrays, load_template

#: The MARS categories, the location vocabulary of the CMB task ("outside" and "unknown"
#: mark points off the template brain and failed registrations).
CATEGORIES = ("lobar", "deep", "infratentorial")
#: White matter this far (mm) from the cortical ribbon is "deep"; nearer is lobar
#: (juxtacortical). Periventricular: deep white matter within 8 mm of the ventricles.
DEEP_WM_DEPTH_MM = 10.0
PERIVENTRICULAR_MM = 8.0

#: Deep nuclei and capsules as ellipsoids (centre for the right side; mirrored for the
#: left; radii), MNI152 mm, tested in this order after the infratentorial rules.
_NUCLEI = [("thalamus", (11, -18, 7), (9, 13, 9)),
           ("basal_ganglia", (13, 12, 9), (6, 10, 9)),      # caudate head
           ("basal_ganglia", (16, -6, 19), (4, 12, 5)),     # caudate body
           ("basal_ganglia", (24, 2, 1), (6, 14, 9)),       # putamen
           ("basal_ganglia", (18, -4, -1), (5, 7, 6)),      # globus pallidus
           ("internal_capsule", (18, -1, 7), (6, 21, 12)),
           ("external_capsule", (30, 2, 2), (3, 16, 11))]


def _build_maps() -> dict[str, np.ndarray]:
    """The template masks and distance maps the rules read: brain and ventricles (uint8
    masks, the maps > 0.5) on the 1 mm template grid, cortex depth and ventricle distance
    (float32 mm) on every ``step``-th voxel."""
    t = load_template()
    cortex, step = ((t.maps["gm"] - t.maps["deep_gm"]) > 0.4) & t.brain, 2
    depth = ndimage.distance_transform_edt(~cortex[::step, ::step, ::step], sampling=step)
    vent = ndimage.distance_transform_edt(t.maps["ventricles"][::step, ::step, ::step] < 0.5, sampling=step)
    return {"affine": t.affine, "brain": t.brain.astype(np.uint8),
            "ventricles": (t.maps["ventricles"] > 0.5).astype(np.uint8),
            "depth": depth.astype(np.float32), "vent": vent.astype(np.float32),
            "step": np.array(step)}


@lru_cache(maxsize=1)
def _mni_maps():
    """The maps of :func:`_build_maps`: built once (distance maps of the whole template,
    from its full load: seconds) and cached on disk like the template, so a new process
    only reads them."""
    stored = cached_arrays("mars_maps", _build_maps, Path(__file__).read_text())
    return (stored["affine"], stored["brain"], stored["ventricles"], stored["depth"],
            stored["vent"], int(stored["step"]))


def _lookup(array, affine, points, step=1, order=0):
    ijk = (points @ np.linalg.inv(affine)[:3, :3].T + np.linalg.inv(affine)[:3, 3]) / step
    return ndimage.map_coordinates(array, ijk.T, order=order, cval=0)


def classify_mni(points) -> tuple[np.ndarray, np.ndarray]:
    """MARS category and region of MNI points ``(N, 3)`` mm -> two string arrays ``(N,)``.

    Rules, first match wins: outside the template brain -> "outside"; in a ventricle ->
    ("outside", "ventricle"); brainstem: |x| <= 15, -44 <= y <= -10, z <= -6 and
    y >= -38 + 0.2 (z + 10); cerebellum: y <= -38 below the tentorium
    z = -4 - 0.45 |x| - 0.4 max(0, -60 - y); deep: the nuclei and capsules of
    :data:`_NUCLEI`, the corpus callosum (|x| <= 16, between ellipses about (y, z) =
    (-4, 8) of radii (36, 18) and (28, 11), z >= 2), white matter >= 10 mm from cortex
    (periventricular within 8 mm of the ventricles); lobar: insula (28 <= |x| <= 42,
    -28 <= y <= 24, -14 <= z <= 24), occipital (y <= -70), temporal (|x| >= 20, below the
    Sylvian line z = -6 - 0.45 y, and for y > 5 only |x| >= 30, z < -15), frontal
    (y > -8 - 0.35 z), else parietal.
    """
    p = np.atleast_2d(np.asarray(points, dtype=np.float64))
    x, y, z = p.T
    ax = np.abs(x)
    affine, brain, ventricles, depth, vent_dist, step = _mni_maps()
    cat, reg = np.full(len(p), "lobar", dtype=object), np.full(len(p), "", dtype=object)
    done = np.zeros(len(p), bool)

    def assign(mask, c, r):
        mask = mask & ~done
        cat[mask], reg[mask] = c, r
        done[mask] = True

    assign(_lookup(brain, affine, p) < 0.5, "outside", "outside")
    assign(_lookup(ventricles, affine, p) > 0.5, "outside", "ventricle")
    assign((ax <= 15) & (y >= -44) & (y <= -10) & (z <= -6) & (y >= -38 + 0.2 * (z + 10)),
           "infratentorial", "brainstem")
    tent = -4 - 0.45 * ax - 0.4 * np.maximum(0, -60 - y)
    assign((y <= -38) & (z <= tent), "infratentorial", "cerebellum")
    q = np.stack([ax, y, z], 1)
    for name, centre, radii in _NUCLEI:
        assign((((q - centre) / radii) ** 2).sum(1) <= 1, "deep", name)
    outer = ((y + 4) / 36) ** 2 + ((z - 8) / 18) ** 2
    inner = ((y + 4) / 28) ** 2 + ((z - 8) / 11) ** 2
    assign((ax <= 16) & (outer <= 1) & (inner >= 1) & (z >= 2), "deep", "corpus_callosum")
    deep_wm = _lookup(depth, affine, p, step, order=1) >= DEEP_WM_DEPTH_MM
    near_vent = _lookup(vent_dist, affine, p, step, order=1) <= PERIVENTRICULAR_MM
    assign(deep_wm & near_vent, "deep", "periventricular_white_matter")
    assign(deep_wm, "deep", "deep_white_matter")
    assign((ax >= 28) & (ax <= 42) & (y >= -28) & (y <= 24) & (z >= -14) & (z <= 24), "lobar", "insula")
    assign(y <= -70, "lobar", "occipital")
    assign((ax >= 20) & (z < -6 - 0.45 * y) & ((y <= 5) | ((ax >= 30) & (z < -15))), "lobar", "temporal")
    assign(y > -8 - 0.35 * z, "lobar", "frontal")
    assign(np.ones(len(p), bool), "lobar", "parietal")
    return cat, reg


def cmb_location(mni_xyz) -> tuple[str, str]:
    """MARS ``(category, region)`` of one MNI point (mm), e.g. ("deep", "thalamus")."""
    cat, reg = classify_mni(np.asarray(mni_xyz, float).reshape(1, 3))
    return str(cat[0]), str(reg[0])

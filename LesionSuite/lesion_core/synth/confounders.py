"""Normal structures and artefacts that defeat simple lesion detectors (they carry no label).

:func:`confounder_layers` returns, per subject kind, layers that ``cohort.make_subject``
paints after the lesions. None of them adds a ground-truth label: they are what a detector
must learn *not* to call a lesion. Geometry is in mm on the subject's RAS grid (arrays
indexed ``[i, j, k]``, any isotropic spacing); positions are given in MNI152 mm and found
through ``anatomy.mni_coordinates``. Layer names start with ``confounder_``.

FLAIR / T1 (kind ``"wmh"``; MR relative to normal white matter = 1.0):
``confounder_ependymal_rim`` a 1-2 mm lining of every ventricle, FLAIR 1.2-1.4, with
thicker (+0.5-2.5 mm), brighter (1.35-1.6) caps at the frontal horn tips (ependymitis
granularis; weaker at the occipital horns); ``confounder_septum_pellucidum`` a 1.5-3 mm
midline sheet between the frontal horns and bodies, FLAIR 1.15-1.25, T1 0.75, CT 28-36 HU;
``confounder_choroid_plexus`` a glomus (radius 3-6 mm) in each atrium plus a tuft along the
body, inside the ventricle, FLAIR 1.1-1.4, T1 0.45-0.55; ``confounder_csf_flow`` 2-5 patchy
blotches (radius 3-8 mm) in the CSF of the foramina of Monro, third ventricle, aqueduct,
fourth ventricle, prepontine cistern or lateral ventricles, FLAIR 0.4-0.9. The rim is a
partial fraction of a WMH-valued layer (:func:`_lift`): over normal tissue it reaches the
stated intensity, and a WMH underneath keeps about its own.

Non-contrast CT (kind ``"ich"``; HU). Additive changes are an absolute layer of bone
(1000 HU) or air (-1000 HU) with a small fraction ``f``: ``(1 - f) v + 1000 f ~= v + 1000 f``.
``confounder_inner_table`` partial-volume bone 1-2 mm inside the inner table, ~60-150 HU
(denser where the table is tangential to axial slices: vertex, skull base), the classic
false positive of HU thresholding; ``confounder_cupping`` +5-15 HU at the table fading
over ~8 mm; ``confounder_beam_hardening`` 1-3 dark streaks (-20 to -40 HU, 3-8 mm wide)
across the posterior fossa between the petrous bones; ``confounder_falx`` a 1-2 mm midline
sheet of 50-85 HU from the vertex to ~3 mm above the corpus callosum (to the tentorium
behind it, the skull base in front); ``confounder_calcification`` 100-400 HU: pineal (60 %
of subjects, 3-6 mm), choroid glomus (60 %, one or both sides, 2-6 mm), globus pallidus
(5 % at 60 years to 35 % at 90, 1-3 foci of 2-5 mm per side); and the septum.

SWI (kind ``"cmb"``): vessels, calcifications and air-bone mimics are inserted, and
labelled as mimics, by :mod:`lesion_core.synth.cmb`; nothing is added here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..atlas.template import distance_outside_mm, load_template
from ..atlas.tissues import TISSUE_MEANS
from .anatomy import SubjectAnatomy
from .contrast import LesionLayer
from .ich import _bbox, _noise, _ramp
from .lesions import ball
from .wmh import FLAIR_RANGE

#: FLAIR value of bright-lining layers: a typical WMH (middle of ``wmh.FLAIR_RANGE``).
_LIFT_VALUE = float(np.mean(FLAIR_RANGE))
#: Bone and air densities (HU) used to emulate additive CT changes.
_BONE_HU, _AIR_HU = 1000.0, -1000.0


# ----------------------------------------------------------------------------- helpers
def _full(shape, box, part: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    out[box] = part
    return out


def _nominal(tissues: dict, box, modality: str) -> np.ndarray:
    """Noise-free image of the nominal (centre) tissue means in ``box`` (for :func:`_lift`)."""
    m = {k: v[0] for k, v in TISSUE_MEANS[modality].items()}
    t = {k: v[box] for k, v in tissues.items()}
    deep = np.minimum(t["deep_gm"], t["gm"])
    return (t["wm"] * m["wm"] + (t["gm"] - deep) * m["cortex"] + deep * m["deep_gm"]
            + np.clip(t["csf"] - t["ventricles"], 0, None) * m["csf"]
            + t["ventricles"] * m["ventricles"])


def _lift(occupancy: np.ndarray, target: np.ndarray | float, nominal: np.ndarray) -> np.ndarray:
    """Fraction of an absolute layer of value :data:`_LIFT_VALUE` that turns ``nominal``
    into ``(1 - occupancy) nominal + occupancy target`` (0 where that would darken it).

    Because the layer's value is that of a typical WMH, a WMH underneath keeps about its
    intensity (v -> v (1 - f) + f 1.8): the lining neither erases nor brightens lesions.
    """
    gain = (target - nominal) / np.maximum(_LIFT_VALUE - nominal, 0.1)
    return np.clip(occupancy * gain, 0, 1).astype(np.float32)


class _Site:
    """Locates MNI points on the subject grid (nearest voxel, optionally inside a mask)."""

    def __init__(self, anatomy: SubjectAnatomy) -> None:
        self.anatomy = anatomy
        self.mni = anatomy.mni_coordinates
        self.shape = anatomy.grid.shape
        self.spacing = float(anatomy.grid.spacing.mean())

    def nearest(self, point_mni, mask: np.ndarray | None = None, radius_mm: float = 10.0):
        """Subject voxel ``(3,)`` nearest (in MNI mm) to ``point_mni`` within ``radius_mm``,
        restricted to ``mask``; None when there is none."""
        p = np.asarray(point_mni, np.float32)
        step = 4
        coarse = ((self.mni[::step, ::step, ::step] - p) ** 2).sum(-1)
        centre = np.array(np.unravel_index(int(np.argmin(coarse)), coarse.shape)) * step
        r = int(np.ceil(radius_mm / self.spacing)) + step
        box = tuple(slice(max(c - r, 0), min(c + r + 1, n)) for c, n in zip(centre, self.shape))
        d2 = ((self.mni[box] - p) ** 2).sum(-1)
        allowed = d2 <= radius_mm ** 2
        if mask is not None:
            allowed &= mask[box]
        if not allowed.any():
            return None
        local = np.unravel_index(int(np.argmin(np.where(allowed, d2, np.inf))), d2.shape)
        return np.array([s.start + i for s, i in zip(box, local)])


def _blob(site: _Site, rng, centre, radius_mm: float, irregular: float = 0.0) -> np.ndarray:
    """Soft ball of ``radius_mm`` at voxel ``centre`` (full grid), optionally lumpy."""
    out = ball(site.shape, centre, radius_mm / site.spacing, soft=0.5)
    if irregular > 0:
        box = _bbox(out > 0, 0)
        out[box] *= np.clip(1 + irregular * _noise(rng, out[box].shape, 1.5 / site.spacing), 0, 1.5)
        np.clip(out, 0, 1, out=out)
    return out


# ------------------------------------------------------------------ ventricular (MR, CT)
def _ventricle_distance(anatomy: SubjectAnatomy, pad_mm: float = 14.0):
    """(box, distance in mm from the ventricle wall for voxels outside the ventricles)."""
    spacing = float(anatomy.grid.spacing.mean())
    inside = anatomy.tissues["ventricles"] > 0.5
    box = _bbox(inside, int(np.ceil(pad_mm / spacing)))
    distance = ndimage.distance_transform_edt(~inside[box], sampling=spacing) - 0.5 * spacing
    return box, np.maximum(distance, 0).astype(np.float32)


def _ependymal_rim(anatomy, rng, box, wall_mm) -> LesionLayer:
    """Bright lining around the ventricles, thicker and brighter caps at the horn tips."""
    spacing = float(anatomy.grid.spacing.mean())
    t = anatomy.tissues
    mni = anatomy.mni_coordinates[box]
    y = mni[..., 1]
    # Caps: anterior part of the frontal horns (MNI y > 8) and, weaker, the occipital horns.
    cap = np.clip((y - 8.0) / 10.0, 0, 1) + 0.5 * np.clip((-36.0 - y) / 8.0, 0, 1)
    cap *= np.abs(mni[..., 0]) < 30
    thickness = rng.uniform(1.0, 2.0) * (1 + 0.3 * _noise(rng, y.shape, 5.0 / spacing))
    thickness = thickness + rng.uniform(0.5, 2.5) * cap
    rim_value, cap_value = rng.uniform(1.2, 1.4), rng.uniform(1.35, 1.6)
    target = rim_value + (cap_value - rim_value) * np.clip(cap, 0, 1)
    outside = t["ventricles"][box] < 0.5
    tissue = np.clip(t["gm"][box] + t["wm"][box], 0, 1) > 0.3
    occupancy = _ramp(thickness - wall_mm, spacing) * outside * tissue
    fraction = _lift(occupancy, target, _nominal(t, box, "FLAIR"))
    return LesionLayer("confounder_ependymal_rim", _full(anatomy.grid.shape, box, fraction),
                       {"FLAIR": _LIFT_VALUE})


def _septum(anatomy, rng, box, wall_mm) -> LesionLayer:
    """Midline sheet between the frontal horns and the bodies of the lateral ventricles."""
    spacing = float(anatomy.grid.spacing.mean())
    mni = anatomy.mni_coordinates[box]
    x, y, z = mni[..., 0], mni[..., 1], mni[..., 2]
    half = rng.uniform(1.5, 3.0) / 2
    near = (anatomy.tissues["ventricles"][box] > 0.5) | (wall_mm <= 4.0)
    region = (y > -12) & (y < 24) & (z > 2) & (z < 26) & near
    fraction = _ramp(half - np.abs(x), spacing) * region
    return LesionLayer("confounder_septum_pellucidum", _full(anatomy.grid.shape, box, fraction),
                       {"FLAIR": float(rng.uniform(1.15, 1.25)), "T1": 0.75,
                        "CT": float(rng.uniform(28.0, 36.0))})


def _choroid_sites(site: _Site, rng) -> list[tuple[int, np.ndarray]]:
    """Glomus centres (side, voxel) in the atria of the lateral ventricles."""
    inside = site.anatomy.tissues["ventricles"] > 0.5
    out = []
    for side in (-1, 1):
        point = np.array([22.0 * side, -34.0, 16.0]) + rng.uniform(-3, 3, 3)
        centre = site.nearest(point, inside, radius_mm=14.0)
        if centre is not None:
            out.append((side, centre))
    return out


def _choroid_plexus(site: _Site, rng, sites) -> LesionLayer:
    """Glomus (radius 3-6 mm) and a smaller tuft along the body, inside the ventricles."""
    vent = np.clip(1.5 * site.anatomy.tissues["ventricles"], 0, 1)
    fraction = np.zeros(site.shape, np.float32)
    inside = site.anatomy.tissues["ventricles"] > 0.5
    for side, centre in sites:
        np.maximum(fraction, _blob(site, rng, centre, rng.uniform(3.0, 6.0), 0.3), out=fraction)
        tuft = site.nearest(np.array([17.0 * side, -20.0, 20.0]) + rng.uniform(-2, 2, 3), inside, 8.0)
        if tuft is not None:
            np.maximum(fraction, _blob(site, rng, tuft, rng.uniform(1.5, 3.0), 0.3), out=fraction)
    return LesionLayer("confounder_choroid_plexus", fraction * vent,
                       {"FLAIR": float(rng.uniform(1.1, 1.4)), "T1": float(rng.uniform(0.45, 0.55))})


#: Where CSF flow artefacts appear on FLAIR (MNI mm): foramina of Monro, third ventricle,
#: aqueduct, fourth ventricle, prepontine cistern; None = anywhere in a lateral ventricle.
_FLOW_SITES = [(-3.0, 2.0, 10.0), (3.0, 2.0, 10.0), (0.0, -12.0, 2.0), (0.0, -32.0, -8.0),
               (0.0, -45.0, -30.0), (0.0, -15.0, -32.0), None, None]


def _csf_flow(site: _Site, rng) -> LesionLayer:
    """2-5 patchy blotches of FLAIR signal (0.4-0.9) inside CSF."""
    t = site.anatomy.tissues
    csf = np.clip(1.5 * t["csf"], 0, 1) * site.anatomy.brain
    csf_mask = csf > 0.6
    fraction = np.zeros(site.shape, np.float32)
    for index in rng.choice(len(_FLOW_SITES), size=int(rng.integers(2, 6)), replace=False):
        where = _FLOW_SITES[index]
        if where is None:
            flat = np.flatnonzero(t["ventricles"] > 0.5)
            if flat.size == 0:
                continue
            centre = np.array(np.unravel_index(rng.choice(flat), site.shape))
        else:
            centre = site.nearest(np.asarray(where) + rng.uniform(-3, 3, 3), csf_mask, 8.0)
            if centre is None:
                continue
        blotch = _blob(site, rng, centre, rng.uniform(3.0, 8.0), 0.6) * rng.uniform(0.6, 1.0)
        np.maximum(fraction, blotch, out=fraction)
    return LesionLayer("confounder_csf_flow", fraction * csf, {"FLAIR": float(rng.uniform(0.4, 0.9))})


# ----------------------------------------------------------------------------- CT only
@lru_cache(maxsize=1)
def _table_depth_mni() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Depth (mm) below the inner table on the MNI template grid, its S-I slope (2 mm grid)
    and the two grids' affines.

    The template's skull starts 3 mm outside the brain
    (:func:`~lesion_core.atlas.template.load_template`), so depth = 3 - (distance outside
    the brain) + (distance inside the brain). The slope ``|d depth / d z| / |grad depth|``
    (0-1) is 1 where the table is tangential to axial slices (vertex, skull base) and 0
    where it is vertical (temporal squama).
    """
    template = load_template()
    outside = distance_outside_mm(template.brain)
    inside = distance_outside_mm(~template.brain)
    depth = (3.0 - outside + inside).astype(np.float32)
    # The slope is a smooth weight: computed on a 2 mm grid (8x cheaper).
    coarse = np.minimum(depth[::2, ::2, ::2], 20.0)
    grad = np.gradient(ndimage.gaussian_filter(coarse, 1.0))
    slope = np.abs(grad[2]) / np.maximum(np.sqrt(sum(g ** 2 for g in grad)), 1e-3)
    return depth, slope.astype(np.float32), template.affine, template.affine @ np.diag([2, 2, 2, 1])


def _sample_mni(anatomy: SubjectAnatomy, mni_map: np.ndarray, affine: np.ndarray,
                mask: np.ndarray) -> np.ndarray:
    """Values of ``mni_map`` (linear interpolation) at the subject voxels of ``mask``."""
    inverse = np.linalg.inv(affine).astype(np.float32)
    mni = [anatomy.mni_coordinates[..., a][mask] for a in range(3)]
    coords = [inverse[r, 0] * mni[0] + inverse[r, 1] * mni[1] + inverse[r, 2] * mni[2] + inverse[r, 3]
              for r in range(3)]
    return ndimage.map_coordinates(mni_map, coords, order=1, mode="nearest")


def _table_depth(anatomy: SubjectAnatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intracranial mask, depth in mm below the inner table, S-I slope of the table).

    Depth is 99 outside the intracranial space; slope is sampled within 6 mm of the table
    (0 elsewhere). Both come from the template through the subject's map to MNI: exact up
    to the subject's scaling (0.92-1.08) and elastic stretch.
    """
    t = anatomy.tissues
    intracranial = (anatomy.brain | (t["csf"] > 0.5)) & (t["skull"] < 0.5)
    depth_map, slope_map, affine, slope_affine = _table_depth_mni()
    depth = np.full(anatomy.grid.shape, 99.0, np.float32)
    depth[intracranial] = np.maximum(_sample_mni(anatomy, depth_map, affine, intracranial), 0)
    shell = depth < 6.0
    slope = np.zeros(anatomy.grid.shape, np.float32)
    slope[shell] = _sample_mni(anatomy, slope_map, slope_affine, shell)
    return intracranial, depth, slope


def _coarse_noise(rng: np.random.Generator, shape, step: int) -> np.ndarray:
    """Smooth unit-SD noise drawn on a grid ``step`` voxels coarse and interpolated."""
    coarse_shape = [max(n // step, 2) + 2 for n in shape]
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 1.0)
    coarse /= max(float(coarse.std()), 1e-6)
    fine = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse_shape)], order=1,
                        mode="nearest", grid_mode=True)
    return fine[tuple(slice(0, n) for n in shape)]


def _inner_table(anatomy, rng, intracranial, depth, slope) -> list[LesionLayer]:
    """Partial-volume bone band (60-150 HU) and cupping (+5-15 HU) under the inner table."""
    spacing = float(anatomy.grid.spacing.mean())
    shape = anatomy.grid.shape
    box = _bbox(intracranial, 1)
    d, tangential = depth[box], slope[box]
    width = rng.uniform(1.0, 2.0) * (1 + 0.5 * tangential)
    bone = rng.uniform(0.06, 0.11) * (0.7 + 0.6 * tangential)
    bone = bone * np.clip(1 + 0.3 * _coarse_noise(rng, d.shape, max(int(8.0 / spacing), 1)), 0.4, 1.6)
    band = _ramp(width - d, spacing) * bone
    cup = rng.uniform(0.005, 0.015) * np.exp(-(d / rng.uniform(5.0, 7.0)) ** 2)
    return [LesionLayer("confounder_inner_table", _full(shape, box, band), {"CT": _BONE_HU}),
            LesionLayer("confounder_cupping", _full(shape, box, cup), {"CT": _BONE_HU})]


def _beam_hardening(anatomy, rng, intracranial) -> LesionLayer:
    """1-3 dark streaks (-20 to -40 HU) across the posterior fossa between the petrous bones."""
    spacing = float(anatomy.grid.spacing.mean())
    mni = anatomy.mni_coordinates
    region = intracranial & (mni[..., 2] < -5) & (mni[..., 1] < -5) & (mni[..., 1] > -70)
    box = _bbox(region, 1)
    x, y, z = (mni[box][..., a] for a in range(3))
    fraction = np.zeros(x.shape, np.float32)
    z0 = rng.uniform(-32.0, -24.0)
    slab = np.exp(-0.5 * ((z - z0) / rng.uniform(3.0, 5.0)) ** 2)
    along = np.clip(0.8 + 0.4 * _noise(rng, x.shape, 6.0 / spacing), 0.3, 1.0)
    for _ in range(int(rng.integers(1, 4))):
        y0, tilt = rng.uniform(-40.0, -22.0), np.tan(np.deg2rad(rng.uniform(-10, 10)))
        streak = np.exp(-0.5 * ((y - (y0 + tilt * x)) / rng.uniform(1.5, 3.5)) ** 2)
        np.maximum(fraction, streak * rng.uniform(0.02, 0.04), out=fraction)
    fraction *= slab * along * (np.abs(x) < 50) * region[box]
    return LesionLayer("confounder_beam_hardening", _full(anatomy.grid.shape, box, fraction),
                       {"CT": _AIR_HU})


def _falx(anatomy, rng, intracranial) -> LesionLayer:
    """Midline dural sheet (50-85 HU, 1-2 mm) above the corpus callosum and tentorium."""
    spacing = float(anatomy.grid.spacing.mean())
    mni = anatomy.mni_coordinates
    near = intracranial & (np.abs(mni[..., 0]) < 6)
    box = _bbox(near, 1)
    x, y, z = (mni[box][..., a] for a in range(3))
    callosum = 8 + 18 * np.sqrt(np.clip(1 - ((y + 4) / 36) ** 2, 0, 1)) + 3
    edge = np.where(y > 32, 11 - 2.0 * (y - 32), np.where(y < -40, 11 - 0.8 * (-40 - y), callosum))
    tentorium = -4 - 0.4 * np.maximum(0, -60 - y) + 2
    above = z > np.maximum(edge, tentorium)
    keep = above & near[box] & (anatomy.tissues["ventricles"][box] < 0.5)
    half = rng.uniform(0.5, 1.0)
    fraction = _ramp(half - np.abs(x), spacing) * keep
    return LesionLayer("confounder_falx", _full(anatomy.grid.shape, box, fraction),
                       {"CT": float(rng.uniform(50.0, 85.0))})


def _calcifications(site: _Site, rng, choroid_sites) -> LesionLayer | None:
    """Pineal, choroid plexus and pallidal calcifications, 100-400 HU, 2-6 mm."""
    anatomy = site.anatomy
    intracranial = anatomy.brain | (anatomy.tissues["csf"] > 0.5)
    found = []
    if rng.random() < 0.6:  # pineal gland, behind the third ventricle
        centre = site.nearest(np.array([0.0, -33.0, 3.0]) + rng.uniform(-2, 2, 3), intracranial, 6.0)
        found.append((centre, rng.uniform(1.5, 3.0)))
    if rng.random() < 0.6 and choroid_sites:  # choroid plexus glomus, one or both sides
        chosen = choroid_sites if rng.random() < 0.75 else [choroid_sites[int(rng.integers(len(choroid_sites)))]]
        found += [(centre, rng.uniform(1.0, 3.0)) for _, centre in chosen]
    p_pallidum = 0.05 + 0.3 * float(np.clip((anatomy.age_years - 60) / 30, 0, 1))
    if rng.random() < p_pallidum:  # globus pallidus, bilateral punctate
        for side in (-1, 1):
            for _ in range(int(rng.integers(1, 4))):
                point = np.array([18.0 * side, -4.0, -1.0]) + rng.uniform(-3, 3, 3)
                found.append((site.nearest(point, anatomy.brain, 6.0), rng.uniform(1.0, 2.5)))
    fraction = np.zeros(site.shape, np.float32)
    for centre, radius in found:
        if centre is None:
            continue
        hu = rng.uniform(100.0, 400.0)
        # Bone-valued layer: fraction hu / 1000 gives ~hu HU where the ball is full.
        np.maximum(fraction, _blob(site, rng, centre, radius) * (hu / _BONE_HU), out=fraction)
    if not fraction.any():
        return None
    return LesionLayer("confounder_calcification", fraction, {"CT": _BONE_HU})


# ------------------------------------------------------------------------- public API
def confounder_layers(kind: str, anatomy: SubjectAnatomy, rng: np.random.Generator) -> list[LesionLayer]:
    """Layers of normal lesion mimics for one subject of ``kind`` ("wmh", "cmb", "ich").

    Args:
        kind: subject kind; "wmh" gets the FLAIR/T1 mimics, "ich" the CT ones, "cmb"
            none (its mimics are labelled by :mod:`lesion_core.synth.cmb`).
        anatomy: the subject (tissue maps on its RAS grid, indexed ``[i, j, k]``).
        rng: the subject's generator, drawn from after the lesions were inserted (so the
            lesions and their labels do not depend on this function).

    Returns:
        ``LesionLayer`` objects (names ``confounder_*``) to paint after the lesions; values
        in each modality's units (MR relative to white matter, CT in HU). No labels.
    """
    if kind not in ("wmh", "cmb", "ich"):
        raise ValueError(f"unknown kind {kind!r}")
    if kind == "cmb":
        return []
    site = _Site(anatomy)
    box, wall_mm = _ventricle_distance(anatomy)
    layers = [_septum(anatomy, rng, box, wall_mm)]
    choroid_sites = _choroid_sites(site, rng)
    if kind == "wmh":
        layers.append(_ependymal_rim(anatomy, rng, box, wall_mm))
        layers.append(_choroid_plexus(site, rng, choroid_sites))
        layers.append(_csf_flow(site, rng))
        return layers
    intracranial, depth, slope = _table_depth(anatomy)
    layers += _inner_table(anatomy, rng, intracranial, depth, slope)
    layers.append(_beam_hardening(anatomy, rng, intracranial))
    layers.append(_falx(anatomy, rng, intracranial))
    calcification = _calcifications(site, rng, choroid_sites)
    if calcification is not None:
        layers.append(calcification)
    return layers

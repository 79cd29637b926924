"""Cerebral microbleeds (CMBs) and their mimics on SWI / T2*-GRE.

A CMB is a round signal void of 2-10 mm: its *blooming* diameter, what a reader marks.
Blooming grows with echo time and field strength (a T2*-GRE with a longer TE blooms more);
the per-subject ``blooming`` factor scales every diameter. CMBs are lobar (cortico-
subcortical junction), deep (deep nuclei, deep white matter) or infratentorial, 0-30 per
subject, never touching each other or a mimic. Mimics (label ``"mimics"``, uint8):
1 vessels: dark curved tubes (radius 0.5-1.5 mm, 10-40 mm): medullary veins out from the
ventricle walls, cortical veins along the brain surface, internal cerebral and basal
veins; end-on they are dots. 2 calcifications (choroid plexus, pineal, pallidum): dark on
SWI magnitude too (opposite phase, not shown), 200-400 HU on CT. 3 air-bone
susceptibility: a smooth dark blotch in inferior frontal/temporal brain next to the
sinuses and mastoids, longest along B0 (S-I).
Locations: Microbleed Anatomical Rating Scale (MARS) categories and regions by the MNI
rules of :func:`lesion_core.atlas.mars.classify_mni`. Lengths in mm; arrays indexed
``[i, j, k]``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..atlas.mars import CATEGORIES, classify_mni, cmb_location
from .anatomy import SubjectAnatomy
from .contrast import LesionLayer
from .lesions import LesionInsertion

MIMIC_CODES = {"vessel": 1, "calcification": 2, "air_bone": 3}
DIAMETER_RANGE_MM = (2.0, 10.0)
MAX_COUNT = 30
#: Smallest edge-to-edge gap (mm) between two CMBs, or a CMB and a mimic (at least two
#: voxels of the subject grid, so labels never touch even with 26-connectivity).
MIN_GAP_MM = 3.0
#: Blooming factor (x every CMB diameter) per sequence, drawn per subject.
BLOOMING = {"SWI": (0.85, 1.2), "T2star": (1.1, 1.5)}
#: Signal left in a CMB core (x the tissue's), drawn per CMB.
CORE_SIGNAL = (0.1, 0.3)


def draw_cmb_count(rng: np.random.Generator) -> int:
    """Zero-inflated count: 25 % none, 63 % geometric (mean ~3), 12 % many (10-30)."""
    u = rng.uniform()
    return 0 if u < 0.25 else int(min(rng.geometric(0.3), MAX_COUNT) if u < 0.88 else rng.integers(10, MAX_COUNT + 1))


def draw_blooming(rng: np.random.Generator, variant: str | None = None,
                  ranges: dict[str, tuple[float, float]] = BLOOMING) -> float:
    """Per-subject blooming factor, uniform in ``ranges[variant]`` (any variant's range
    when ``variant`` is None); "T2star" (longer TE) blooms more than "SWI"."""
    low, high = ranges.get(variant or "", (min(r[0] for r in ranges.values()),
                                           max(r[1] for r in ranges.values())))
    return float(rng.uniform(low, high))


class _Grid:
    """Point look-ups on the subject grid; distances come from a ~2 mm coarse grid."""

    def __init__(self, anatomy: SubjectAnatomy):
        self.anatomy, self.shape = anatomy, anatomy.grid.shape
        self.spacing = float(anatomy.grid.spacing[0])
        self.f = max(1, int(round(2.0 / self.spacing)))
        s = self.f * self.spacing
        brain = anatomy.brain[::self.f, ::self.f, ::self.f]
        self.signed = (ndimage.distance_transform_edt(~brain, sampling=s)
                       - ndimage.distance_transform_edt(brain, sampling=s)).astype(np.float32)
        self.vent = ndimage.distance_transform_edt(anatomy.tissues["ventricles"][::self.f, ::self.f, ::self.f] <= 0.5,
                                                   sampling=s).astype(np.float32)
        self.grad = {n: np.stack(np.gradient(a), 0) for n, a in (("signed", self.signed), ("vent", self.vent))}

    def coarse(self, array, ijk, order=1):
        return ndimage.map_coordinates(array, (np.atleast_2d(ijk) / self.f).T, order=order, mode="nearest")

    def normal(self, name, ijk):
        g = np.array([self.coarse(self.grad[name][a], ijk)[0] for a in range(3)])
        return g / max(np.linalg.norm(g), 1e-6)

    def ras(self, ijk) -> list:
        return self.anatomy.grid.voxel_to_ras(np.asarray(ijk, float)).round(2).tolist()

    def from_mni(self, mni):
        """Subject voxel indices of MNI points (fixed-point inversion of ``to_mni``)."""
        mni = np.atleast_2d(np.asarray(mni, float))
        forward = np.array(self.anatomy.info["rotation"]) @ np.diag(self.anatomy.info["scales"])
        ijk = self.anatomy.grid.ras_to_voxel(mni @ forward.T)
        for _ in range(10):
            ijk = ijk + (mni - self.anatomy.to_mni(ijk)) @ forward.T / self.spacing
        return ijk


def _sphere(shape, centre, radius, sub=3):
    """(slices, partial-volume fraction, distance in voxels) of a ball in voxel units."""
    lo = np.maximum(np.floor(centre - radius - 3).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radius + 4).astype(int), shape)
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    axes = [np.arange(a, b)[:, None] + offsets[None] - c for a, b, c in zip(lo, hi, centre)]
    d2 = (axes[0][:, None, None, :, None, None] ** 2 + axes[1][None, :, None, None, :, None] ** 2
          + axes[2][None, None, :, None, None, :] ** 2)
    fraction = (d2 <= radius ** 2).mean(axis=(3, 4, 5))
    dist = np.linalg.norm(np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(lo, hi, centre)], indexing="ij"), axis=0)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), fraction.astype(np.float32), dist


def _paint_tube(grid: _Grid, path, radius_mm, darkness, subtype, out):
    """Add a tube (centre line ``path``, voxels) to ``out`` = (loss, vessel mask, records)."""
    loss, mask, records = out
    r = radius_mm / grid.spacing
    lo = np.maximum(np.floor(path.min(0) - r - 2).astype(int), 0)
    hi = np.minimum(np.ceil(path.max(0) + r + 3).astype(int), grid.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    pts = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    d, _ = cKDTree(path).query(pts, distance_upper_bound=r + 2)
    frac = np.clip(r + 0.5 - np.minimum(d, 1e3), 0, 1).reshape(hi - lo)
    loss[box] = np.maximum(loss[box], frac * darkness)
    mask[box] |= frac > 0.5
    mask[tuple(np.clip(np.round(path).astype(int), 0, np.array(grid.shape) - 1).T)] = True
    length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum() * grid.spacing)
    records.append({"type": "vessel", "subtype": subtype, "radius_mm": round(float(radius_mm), 2),
                    "length_mm": round(length, 1), "centre_subject_ras": grid.ras(path[len(path) // 2])})


def _march(grid: _Grid, start, direction, length_mm, rng, steer, within=None):
    """Curved centre line (voxels) from ``start``: ``steer(p, d)`` bends the direction;
    stops where tissue ``within`` falls below 0.3 or at the grid's edge."""
    points, p, d = [np.asarray(start, float)], np.asarray(start, float), np.asarray(direction, float)
    bend = rng.normal(0, 0.08, 3)
    for _ in range(int(length_mm / (0.5 * grid.spacing))):
        d = steer(p, d + bend + rng.normal(0, 0.05, 3))
        p = p + 0.5 * d / max(np.linalg.norm(d), 1e-6)
        if np.any(p < 0) or np.any(p > np.array(grid.shape) - 1) or (
                within is not None and ndimage.map_coordinates(within, p[:, None], order=1)[0] < 0.3):
            break
        points.append(p.copy())
    return np.array(points)


def _vessels(grid: _Grid, rng, loss, records):
    """Medullary veins (out from the ventricle walls through the white matter), cortical
    veins (along the brain surface, -1.5..+1 mm from it) and the deep veins; vessel mask."""
    mask = np.zeros(grid.shape, bool)
    out = (loss, mask, records)
    t, vox, sub = grid.anatomy.tissues, grid.spacing, (slice(None, None, grid.f),) * 3
    medullary = np.argwhere((t["wm"][sub] > 0.6) & (grid.vent > 2) & (grid.vent <= 6)) * grid.f
    cortical = np.argwhere((np.abs(grid.signed) <= 1.01 * grid.f * vox) & (t["csf"][sub] > 0.3)) * grid.f

    def along_surface(p, d):
        n = grid.normal("signed", p)
        return d - (d @ n) * n

    for _ in range(int(rng.integers(15, 36)) if len(medullary) else 0):
        start = medullary[rng.integers(len(medullary))] + rng.uniform(-0.5, 0.5, 3) * grid.f
        path = _march(grid, start, grid.normal("vent", start), rng.uniform(10, 30), rng,
                      lambda p, d: d + 0.6 * grid.normal("vent", p), t["wm"])
        if len(path) * 0.5 * vox >= 8:
            _paint_tube(grid, path, rng.uniform(0.5, 0.8), rng.uniform(0.55, 0.85), "medullary_vein", out)
    for _ in range(int(rng.integers(10, 21)) if len(cortical) else 0):
        start = cortical[rng.integers(len(cortical))] + rng.uniform(-0.5, 0.5, 3) * grid.f
        path = _march(grid, start, along_surface(start, rng.normal(size=3)), rng.uniform(15, 40), rng, along_surface)
        normals = np.array([grid.normal("signed", q) for q in path])
        path = path - ((grid.coarse(grid.signed, path) - rng.uniform(-1.5, 1.0)) / vox)[:, None] * normals
        if len(path) * 0.5 * vox >= 8:
            _paint_tube(grid, path, rng.uniform(0.8, 1.5), rng.uniform(0.55, 0.85), "cortical_vein", out)
    # Internal cerebral veins (paired, along the roof of the third ventricle, to the vein of
    # Galen) and basal veins of Rosenthal, as MNI polylines (right side; mirrored).
    for side in (-1, 1):
        for subtype, knots, radius in [
                ("internal_cerebral_vein", [(2.5, -2, 14), (2.5, -15, 14), (2, -28, 11), (1, -38, 7)], (1.0, 1.5)),
                ("basal_vein", [(20, -8, -10), (22, -22, -5), (14, -34, 1), (4, -40, 5)], (0.8, 1.2))]:
            knots = np.array(knots, float) * [side, 1, 1] + rng.normal(0, 1.0, (len(knots), 3))
            dense = np.concatenate([np.linspace(a, b, 20, endpoint=False) for a, b in zip(knots[:-1], knots[1:])])
            _paint_tube(grid, grid.from_mni(dense), rng.uniform(*radius), rng.uniform(0.55, 0.8), subtype, out)
    return mask & ((t["gm"] + t["wm"] + t["csf"]) > 0.5)


def _calcifications(grid: _Grid, rng, records):
    """Choroid plexus (atria, snapped into the ventricle), pineal and pallidal
    calcifications, lumpy (two overlapping balls); returns (fraction, mask)."""
    frac, centres = np.zeros(grid.shape, np.float32), []
    sides = (-1, 1) if rng.uniform() < 0.7 else (int(rng.choice([-1, 1])),)
    sites = [("choroid_plexus", (28 * s, -40, 14), (1.5, 4.0)) for s in sides] if rng.uniform() < 0.6 else []
    sites += [("pineal", (0, -33, 2), (1.5, 3.0))] if rng.uniform() < 0.5 else []
    sites += [("basal_ganglia", (20 * s, -3, -1), (1.0, 2.5)) for s in (-1, 1)] if rng.uniform() < 0.2 else []
    for site, mni, radii in sites:
        centre = grid.from_mni(np.array(mni, float) + rng.normal(0, 1.5, 3))[0]
        if site == "choroid_plexus":
            window = int(np.ceil(10 / grid.spacing))
            lo = np.maximum(np.round(centre).astype(int) - window, 0)
            vent = np.argwhere(grid.anatomy.tissues["ventricles"][tuple(slice(a, a + 2 * window) for a in lo)] > 0.5)
            if not len(vent):
                continue
            centre = lo + vent[np.argmin(((lo + vent - centre) ** 2).sum(1))]
        radius = rng.uniform(*radii)
        for _ in range(2):
            box, f, _ = _sphere(grid.shape, centre + rng.normal(0, 0.4 * radius, 3) / grid.spacing,
                                rng.uniform(0.6, 1.0) * radius / grid.spacing)
            frac[box] = np.maximum(frac[box], f)
        centres.append(np.clip(np.round(centre).astype(int), 0, np.array(grid.shape) - 1))
        records.append({"type": "calcification", "calcification": True, "site": site,
                        "diameter_mm": round(2 * radius, 2), "centre_subject_ras": grid.ras(centre)})
    mask = frac > 0.5
    if centres:
        mask[tuple(np.array(centres).T)] = True
    return frac, mask


def _air_bone(grid: _Grid, rng, records):
    """Signal loss (0-0.9) decaying from the air spaces, longest along S-I; (loss, mask)."""
    f, s = grid.f, grid.f * grid.spacing
    air = grid.anatomy.tissues["air"][::f, ::f, ::f] > 0.5
    if not air.any():
        return np.zeros(grid.shape, np.float32), np.zeros(grid.shape, bool)
    dist = ndimage.distance_transform_edt(~air, sampling=(s, s, 0.6 * s))
    wobble = ndimage.gaussian_filter(rng.standard_normal(dist.shape), 4.0 / s)
    wobble /= max(float(wobble.std()), 1e-6)
    coarse = np.clip(rng.uniform(0.65, 0.95) * np.exp(-(dist / rng.uniform(9, 14)) ** 2 + 0.25 * wobble), 0, 0.9)
    loss = ndimage.zoom(coarse.astype(np.float32), [n / c for n, c in zip(grid.shape, coarse.shape)],
                        order=1, grid_mode=True, mode="nearest")[tuple(slice(0, n) for n in grid.shape)]
    loss = np.pad(loss, [(0, n - m) for n, m in zip(grid.shape, loss.shape)], mode="edge")
    t = grid.anatomy.tissues
    labels = ndimage.label(mask := (loss > 0.5) & ((t["gm"] + t["wm"] + t["csf"]) > 0.5))[0]
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        voxels = np.argwhere(labels[box] == index) + [b.start for b in box]
        size, centre, mni = len(voxels), voxels.mean(0), grid.anatomy.to_mni(voxels.mean(0))[0]
        site = "frontal_sinus" if mni[1] > 30 else ("mastoid" if abs(mni[0]) > 25 else "sphenoid_sinus")
        records.append({"type": "air_bone", "site": site, "volume_ml": round(size * grid.spacing ** 3 / 1000, 3),
                        "centre_subject_ras": grid.ras(centre)})
    return loss.astype(np.float32), mask


#: Per-subject pattern -> probability of (lobar, deep, infratentorial) for each CMB:
#: strictly lobar (amyloid angiopathy), deep (hypertensive arteriopathy) or mixed.
PATTERNS = {"lobar": (0.9, 0.06, 0.04), "deep": (0.2, 0.55, 0.25), "mixed": (0.5, 0.35, 0.15)}


def _candidates(grid: _Grid, avoid: np.ndarray, rng) -> dict[str, np.ndarray]:
    """Possible CMB centres (voxels) per category: lobar at the grey-white junction, deep
    in the deep nuclei or well inside the white matter, infratentorial in the parenchyma."""
    t = grid.anatomy.tissues
    ok = grid.anatomy.brain & (t["gm"] + t["wm"] > 0.9) & (t["csf"] < 0.1) & (t["ventricles"] < 0.05) & ~avoid
    masks = {"lobar": ok & (t["wm"] > 0.3) & (t["wm"] < 0.85) & (t["deep_gm"] < 0.2),
             "deep": ok & ((t["deep_gm"] > 0.5) | (t["wm"] > 0.8)), "infratentorial": ok}
    out = {}
    for category, mask in masks.items():
        idx = np.argwhere(mask)
        idx = idx[rng.permutation(len(idx))[:40000]]
        out[category] = idx[classify_mni(grid.anatomy.to_mni(idx))[0] == category] if len(idx) else idx
    return out


def insert_cmbs(anatomy: SubjectAnatomy, rng: np.random.Generator, count: int | None = None,
                blooming: float | None = None,
                core_signal: tuple[float, float] = CORE_SIGNAL) -> LesionInsertion:
    """Insert ``count`` CMBs (drawn by :func:`draw_cmb_count` when None) and the mimics.

    ``core_signal``: range of the signal left in each CMB's core, x the tissue's (the
    blooming contrast: 0.1-0.3 by default).

    Layers (relative "SWI" signal, so they darken whatever tissue lies beneath):
    ``air_bone``, ``vessel``, ``calcification`` (also 200-400 HU on "CT") and ``cmb``. For
    ``air_bone``, ``vessel`` and ``cmb`` the layer value is 0 and ``fraction`` is the signal
    loss (partial volume x depth of the void), so one array holds lesions of different
    darkness. Labels: ``cmb`` (int16, CMB ``id`` 1..n, one component each: voxels more than
    half inside the blooming sphere, and always the centre voxel) and ``mimics`` (uint8,
    :data:`MIMIC_CODES`), both on the subject grid ``[i, j, k]``. CMBs keep
    ``max(MIN_GAP_MM, 2 voxels)`` from each other and from every mimic voxel.
    """
    count = draw_cmb_count(rng) if count is None else int(count)
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"CMB count must be 0-{MAX_COUNT}, got {count}")
    blooming = draw_blooming(rng) if blooming is None else float(blooming)
    grid, mimics, t = _Grid(anatomy), [], anatomy.tissues
    vox, shape, vessel_loss = grid.spacing, grid.shape, np.zeros(anatomy.grid.shape, np.float32)
    air_loss, air_mask = _air_bone(grid, rng, mimics)
    vessel_mask = _vessels(grid, rng, vessel_loss, mimics)
    calc_frac, calc_mask = _calcifications(grid, rng, mimics)
    mimic_label = np.zeros(shape, np.uint8)
    for code, mask in ((1, vessel_mask), (2, calc_mask), (3, air_mask)):
        mimic_label[mask & (mimic_label == 0)] = code
    pattern = str(rng.choice(list(PATTERNS)))
    candidates = _candidates(grid, air_loss > 0.1, rng)
    mimic_tree = cKDTree(np.argwhere(mimic_label > 0)) if mimic_label.any() else None
    gap = max(MIN_GAP_MM, 2 * vox)
    cmb_loss, label = np.zeros(shape, np.float32), np.zeros(shape, np.int16)
    cmbs, placed, tries = [], [], 0
    while len(cmbs) < count and tries < 400 * max(count, 1):
        tries += 1
        category = str(rng.choice(CATEGORIES, p=PATTERNS[pattern]))
        pool = candidates[category]
        diameter = float(np.clip((1.6 + rng.gamma(1.5, 1.3)) * blooming, *DIAMETER_RANGE_MM))
        radius = diameter / 2
        centre = pool[rng.integers(len(pool))] + rng.uniform(-0.5, 0.5, 3) if len(pool) else None
        if (centre is None or grid.coarse(grid.signed, centre)[0] > -(radius + 0.5)  # ball inside the brain
                or any(np.linalg.norm((c - centre) * vox) < r + radius + gap for c, r in placed)
                or (mimic_tree is not None and mimic_tree.query(centre)[0] * vox < radius + gap)):
            continue
        mni = anatomy.to_mni(centre)[0]
        location, region = cmb_location(mni)
        box, frac, dist = _sphere(shape, centre, radius / vox)
        if location != category or (frac * (t["gm"][box] + t["wm"][box])).sum() < 0.85 * frac.sum():
            continue
        ident, signal = len(cmbs) + 1, float(rng.uniform(*core_signal))  # left in the core, x tissue
        halo = 0.25 * np.exp(-np.maximum(dist * vox - radius, 0) / 0.8) * (frac < 1)
        cmb_loss[box] = np.maximum(cmb_loss[box], np.maximum(frac, halo) * (1 - signal))
        label[box][(frac > 0.5) & anatomy.brain[box]] = ident
        centre_voxel = tuple(np.round(centre).astype(int))  # labelled and dark on any grid
        label[centre_voxel], cmb_loss[centre_voxel] = ident, max(cmb_loss[centre_voxel], 0.85 * (1 - signal))
        placed.append((centre, radius))
        cmbs.append({"id": ident, "centre_mni": np.round(mni.astype(float), 2).tolist(),
                     "centre_subject_ras": grid.ras(centre), "diameter_mm": round(diameter, 2),
                     "location": location, "region": region, "side": "left" if mni[0] < 0 else "right",
                     "signal": round(signal, 3)})
    if len(cmbs) < count:
        raise RuntimeError(f"could place only {len(cmbs)} of {count} CMBs in this anatomy")
    layers = [LesionLayer("air_bone", air_loss, {"SWI": 0.0}, {"SWI": True}),
              LesionLayer("vessel", vessel_loss, {"SWI": 0.0}, {"SWI": True}),
              LesionLayer("calcification", calc_frac, {"SWI": float(rng.uniform(0.15, 0.35)),
                                                       "CT": float(rng.uniform(200, 400))}, {"SWI": True}),
              LesionLayer("cmb", cmb_loss, {"SWI": 0.0}, {"SWI": True})]
    targets = {"cmb_count": len(cmbs), "cmbs": cmbs, "mimics": mimics, "blooming": round(blooming, 3),
               "pattern": pattern, "cmb_by_location": {c: sum(m["location"] == c for m in cmbs) for c in CATEGORIES}}
    return LesionInsertion(layers, {"cmb": label, "mimics": mimic_label}, targets)

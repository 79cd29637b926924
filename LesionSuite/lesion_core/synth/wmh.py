"""White-matter hyperintensities (WMH) of small vessel disease, with their ARWMC rating.

:func:`insert_wmh` paints lesions into the white matter of a
:class:`~lesion_core.synth.anatomy.SubjectAnatomy` and rates them. One ``severity`` in
[0, 1] drives everything (0 = no lesion at all):

- **periventricular caps** on the frontal and occipital horns of the lateral ventricles
  (severity > 0.05): crescents hugging the horn tip, radius 4-12 mm along the wall,
  2-7 mm thick;
- **periventricular bands** (severity > 0.25): a lining along the lateral ventricles whose
  thickness grows from ~1 mm (pencil-thin) to ~8 mm (smooth halo) and becomes irregular
  (smooth noise, 4 mm correlation) at high severity;
- **deep lesions**: punctate (2-4 mm), focal (5-10 mm, slightly ellipsoidal) and, at
  severity > 0.45, confluent patches (several merged 4-9 mm blobs around a centre, outline
  roughened by thresholding smoothed noise, 12-30 mm), placed mostly in frontal and
  parieto-occipital deep white matter, some temporal; **infratentorial** (pons, cerebellar
  white matter; severity > 0.35) and **basal ganglia** (internal/external capsule;
  severity > 0.3) foci at higher severity.

Punctate and focal deep lesions are centred >= 8 mm from the ventricles, confluent patches
4-16 mm from them (so that they grow out of the periventricular zone). Every lesion's
fraction is multiplied by the white-matter fraction (tapered to 0 within 3-7 mm of the
midline: no callosal lesions), so a voxel can be labelled lesion (fraction > 0.5) only
where white matter is > 0.5; lesions do not cross the basal-ganglia region's boundary
(basal-ganglia foci stay in it, all others outside it). Sizes are in mm on the
subject grid (any isotropic spacing; a lesion smaller than a voxel gets a partial-volume
fraction < 1 that preserves its volume). The ARWMC atlas is carried from MNI to the
subject with ``anatomy.sample_mni_map(..., order=0)`` and the ratings are computed from
what was inserted by :func:`~lesion_core.synth.ratings.rate_arwmc` and
:func:`~lesion_core.synth.ratings.rate_fazekas`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..atlas.arwmc import LABELS, REGIONS, arwmc_atlas_mni
from .anatomy import SubjectAnatomy
from .contrast import LesionLayer
from .lesions import LesionInsertion
from .ratings import InsertedLesions, rate_arwmc, rate_fazekas

#: Drawn lesion intensities, relative to normal white matter (= 1.0).
FLAIR_RANGE = (1.6, 2.0)
T1_RANGE = (0.7, 0.8)
#: Margin (mm) around the ventricles inside which periventricular work is done.
_VENTRICLE_MARGIN_MM = 30.0
#: Width (mm) of the soft lesion edge (fraction 0 -> 1), at least one voxel.
_EDGE_MM = 2.0
_GANGLIA = (LABELS["basal_ganglia_left"], LABELS["basal_ganglia_right"])


def draw_severity(rng: np.random.Generator) -> float:
    """Lesion load in [0, 1]: 12 % of subjects exactly 0, the rest Beta(1.0, 1.3), so that
    a cohort spans ARWMC totals from 0 to the high twenties."""
    if rng.uniform() < 0.12:
        return 0.0
    return float(rng.beta(1.0, 1.3))


class _Painter:
    """Accumulates lesion fractions (max over lesions) and who owns each voxel."""

    def __init__(self, anatomy: SubjectAnatomy, regions: np.ndarray):
        self.anatomy = anatomy
        self.spacing = float(anatomy.grid.spacing[0])
        self.shape = anatomy.grid.shape
        # Where lesions may be: white matter, tapered off within 3-7 mm of the midline
        # (corpus callosum lesions are not small vessel disease).
        midline = np.clip((np.abs(anatomy.mni_coordinates[..., 0]) - 3.0) / 4.0, 0, 1)
        self.wm = np.clip(anatomy.tissues["wm"], 0, 1) * midline
        self.regions = regions
        self.fraction = np.zeros(self.shape, np.float32)
        self.ids = np.zeros(self.shape, np.int32)
        self.records: list[dict] = []

    def add(self, box, fraction: np.ndarray, kind: str, centre_ijk, diameter_mm: float,
            n_parts: int = 1, region: int | None = None) -> None:
        """Paint ``fraction`` (shape-only, 0-1) into ``box`` (tuple of slices); ``region``
        (label) defaults to the atlas label at the centre voxel."""
        ijk = np.clip(np.round(centre_ijk).astype(int), 0, np.array(self.shape) - 1)
        if region is None:
            region = int(self.regions[tuple(ijk)])
        # Lesions do not cross the basal ganglia boundary (either way).
        compartment = np.isin(self.regions[box], _GANGLIA) == (region in _GANGLIA)
        fraction = fraction * self.wm[box] * compartment
        if fraction.max(initial=0) <= 0.02:
            return
        lesion_id = len(self.records) + 1
        current = self.fraction[box]
        wins = fraction > current
        self.ids[box][wins & (fraction > 0.02)] = lesion_id
        self.fraction[box] = np.maximum(current, fraction)
        self.records.append({"id": lesion_id, "type": kind, "n_parts": int(n_parts),
                             "diameter_mm": round(float(diameter_mm), 2), "region": region,
                             "centre_mni": [round(float(v), 1) for v in self.anatomy.to_mni(ijk)[0]],
                             "region_name": REGIONS[region - 1] if region else "none"})

    def blob(self, centre_ijk, radii_mm, kind: str, rng: np.random.Generator,
             n_parts: int = 1, roughness: float = 0.0) -> None:
        """Ellipsoid(s) with a soft edge (2 mm or one voxel wide), volume-preserving when tiny."""
        s = self.spacing
        edge = max(s, _EDGE_MM)
        radii_mm = np.atleast_2d(radii_mm)
        centres = np.atleast_2d(np.asarray(centre_ijk, float))
        reach = (np.abs(centres - centres[0]).max(0) + radii_mm.max() / s + 3).astype(int) + 1
        lo = np.maximum(np.floor(centres[0]).astype(int) - reach, 0)
        hi = np.minimum(np.floor(centres[0]).astype(int) + reach + 1, self.shape)
        if np.any(hi <= lo):
            return
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)], indexing="ij")
        shape_field = np.full(grid[0].shape, -np.inf, np.float32)
        volume = 0.0
        for centre, radii in zip(centres, radii_mm):
            r = np.sqrt(sum(((g - c) * s / rr) ** 2 for g, c, rr in zip(grid, centre, radii)))
            shape_field = np.maximum(shape_field, (1.0 - r) * radii.mean())  # mm inside
            volume += 4 / 3 * np.pi * np.prod(radii)
        if roughness > 0:
            noise = ndimage.gaussian_filter(rng.standard_normal(shape_field.shape).astype(np.float32),
                                            2.0 / s)
            shape_field += roughness * noise / max(float(noise.std()), 1e-6)
        fraction = np.clip(shape_field / edge + 0.5, 0, 1)
        if n_parts == 1 and roughness == 0:  # keep a sub-voxel lesion's volume right
            fraction *= min(1.0, volume / max(float(fraction.sum()) * s ** 3, 1e-6))
        extent = np.ptp(centres, axis=0) * s + 2 * radii_mm.max()
        self.add(box, fraction, kind, centres[0], float(extent.max()), n_parts)


def _radii(diameter_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Semi-axes (mm) of a slightly ellipsoidal focus whose largest diameter is given."""
    radii = diameter_mm / 2 * rng.uniform(0.75, 1.0, 3)
    radii[rng.integers(3)] = diameter_mm / 2
    return radii


def _candidates(painter: _Painter, distance: np.ndarray, wm_min: float, d_min: float,
                d_max: float = np.inf) -> dict[int, np.ndarray]:
    """Flat voxel indices per region label where deep lesions may be centred."""
    ok = (painter.wm > wm_min) & (distance >= d_min) & (distance <= d_max)
    flat = painter.regions.ravel()
    idx = np.flatnonzero(ok.ravel())
    return {label: idx[flat[idx] == label] for label in range(1, len(REGIONS) + 1)}


def _region_weights(severity: float) -> dict[str, float]:
    late = float(np.clip((severity - 0.3) / 0.3, 0, 1))
    return {"frontal": 0.42, "parieto_occipital": 0.36, "temporal": 0.1,
            "infratentorial": 0.06 * late * (severity > 0.35), "basal_ganglia": 0.07 * late}


def _pick(rng, candidates, weights, shape) -> np.ndarray | None:
    names = [n for n in REGIONS if weights[n.rsplit("_", 1)[0]] > 0 and len(candidates[LABELS[n]])]
    if not names:
        return None
    p = np.array([weights[n.rsplit("_", 1)[0]] for n in names])
    name = names[rng.choice(len(names), p=p / p.sum())]
    flat = candidates[LABELS[name]][rng.integers(len(candidates[LABELS[name]]))]
    return np.array(np.unravel_index(flat, shape), float) + rng.uniform(-0.5, 0.5, 3)


def _periventricular(painter: _Painter, distance: np.ndarray, vbox, severity: float,
                     rng: np.random.Generator) -> None:
    """Caps at the frontal and occipital horns, and the band along the lateral ventricles."""
    anatomy, s = painter.anatomy, painter.spacing
    ventricles = anatomy.tissues["ventricles"][vbox] > 0.5
    mni = anatomy.mni_coordinates[vbox]
    offset = np.array([v.start for v in vbox])
    # Lateral ventricles: not the third ventricle nor the cisterns behind it (|x| <= 8 mm).
    lateral = ventricles & (mni[..., 2] > -2) & (np.abs(mni[..., 0]) > 8)
    grid = np.stack(np.meshgrid(*[np.arange(v.start, v.stop, dtype=np.float32) for v in vbox],
                                indexing="ij"), -1)
    d = distance[vbox]
    regions = painter.regions[vbox]
    not_ganglia = ~np.isin(regions, _GANGLIA)

    def main_region(fraction):  # the (non-ganglia) region holding most of a PV lesion
        labels = regions[(fraction > 0.3) & not_ganglia & (regions > 0)]
        return int(np.bincount(labels).argmax()) if labels.size else 0
    if severity > 0.05:
        for side in (-1, 1):
            pick = lateral & (np.sign(mni[..., 0]) == side)
            if pick.sum() < 2:
                continue
            y = np.where(pick, mni[..., 1], np.nan)
            for horn, tip in (("frontal", np.nanargmax(y)), ("occipital", np.nanargmin(y))):
                tip = np.array(np.unravel_index(tip, y.shape)) + offset
                radius = (4 + 8 * severity) * rng.uniform(0.8, 1.2)
                thick = (2 + 5 * severity) * rng.uniform(0.8, 1.2)
                r = np.sqrt((((grid - tip) * s) ** 2).sum(-1))
                fraction = (np.clip((radius - r) / s + 0.5, 0, 1)
                            * np.clip((thick - d) / s + 0.5, 0, 1) * (d > 0) * not_ganglia)
                painter.add(vbox, fraction.astype(np.float32), f"cap_{horn}", tip,
                            2 * radius, region=main_region(fraction))
    if severity > 0.25:
        base = 1.0 + 9.0 * (severity - 0.25)
        noise = ndimage.gaussian_filter(rng.standard_normal(d.shape).astype(np.float32), 4.0 / s)
        noise /= max(float(noise.std()), 1e-6)
        thickness = base * np.exp(0.5 * severity * noise)
        body = ndimage.binary_dilation(lateral, iterations=max(int(round(12 / s)), 1)) & (mni[..., 2] > -2)
        fraction = np.clip((thickness - d) / s + 0.5, 0, 1) * (d > 0) * body * not_ganglia
        centre = np.argwhere(lateral).mean(0) + offset if lateral.any() else grid.shape[:3]
        painter.add(vbox, fraction.astype(np.float32), "band", centre, 0.0,
                    region=main_region(fraction))


def insert_wmh(anatomy: SubjectAnatomy, rng: np.random.Generator,
               severity: float | None = None, flair_range: tuple[float, float] = FLAIR_RANGE,
               t1_range: tuple[float, float] = T1_RANGE) -> LesionInsertion:
    """Insert WMH into ``anatomy``'s white matter and rate them.

    ``severity``: lesion load in [0, 1] (drawn by :func:`draw_severity` when None).
    ``flair_range``, ``t1_range``: the lesion intensity is drawn uniformly in them per
    subject, relative to normal white matter (default 1.6-2.0 and 0.7-0.8).
    Returns a :class:`LesionInsertion` with one layer ``"wmh"`` (fraction 0-1 on the
    subject grid ``[i, j, k]``, valued as drawn), labels ``"wmh"`` (``uint8``, fraction > 0.5) and
    ``"arwmc_regions"`` (``uint8`` region-side labels, see :mod:`.arwmc`), and targets:
    ``arwmc`` (region-side -> 0-3), ``arwmc_total`` (0-30), ``fazekas_periventricular``,
    ``fazekas_deep`` (0-3), ``wmh_volume_ml`` (labelled voxels, mL), ``severity`` and
    ``lesions`` (one dict per inserted lesion: type, centre_mni (mm), diameter_mm, region).
    """
    severity = draw_severity(rng) if severity is None else float(np.clip(severity, 0, 1))
    atlas, atlas_affine, _ = arwmc_atlas_mni()
    regions = anatomy.sample_mni_map(atlas, atlas_affine, order=0).astype(np.uint8)
    painter = _Painter(anatomy, regions)
    s = painter.spacing
    ventricles = anatomy.tissues["ventricles"] > 0.5
    # Distance (mm) to the ventricles, computed in a box around them (far = margin).
    distance = np.full(painter.shape, _VENTRICLE_MARGIN_MM, np.float32)
    vbox = None
    if ventricles.any():
        margin = int(np.ceil(_VENTRICLE_MARGIN_MM / s))
        idx = np.argwhere(ventricles)
        vbox = tuple(slice(max(a - margin, 0), min(b + margin + 1, n))
                     for a, b, n in zip(idx.min(0), idx.max(0), painter.shape))
        distance[vbox] = np.minimum(ndimage.distance_transform_edt(~ventricles[vbox], sampling=s),
                                    _VENTRICLE_MARGIN_MM)

    if severity > 0:
        if vbox is not None:
            _periventricular(painter, distance, vbox, severity, rng)
        weights = _region_weights(severity)
        deep = _candidates(painter, distance, 0.8, 8.0)
        near = _candidates(painter, distance, 0.8, 4.0, 16.0)
        n_punctate = rng.poisson(1 + 20 * severity)
        n_focal = rng.poisson(10 * severity ** 1.2)
        n_confluent = rng.poisson(28 * max(severity - 0.45, 0))
        for kind, count in (("punctate", n_punctate), ("focal", n_focal)):
            for _ in range(count):
                centre = _pick(rng, deep, weights, painter.shape)
                if centre is None:
                    break
                size = rng.uniform(2, 4) if kind == "punctate" else rng.uniform(5, 10)
                painter.blob(centre, _radii(size, rng), kind, rng)
        for _ in range(n_confluent):
            centre = _pick(rng, near, {**weights, "temporal": 0.03, "infratentorial": 0.0,
                                       "basal_ganglia": 0.0}, painter.shape)
            if centre is None:
                break
            extent = rng.uniform(12, 30) * (0.5 + 0.8 * severity)
            parts = int(rng.integers(3, 9))
            spread = rng.normal(0, extent / 4 / s, (parts, 3))
            centres = centre + np.vstack([np.zeros(3), spread[1:]])
            radii = extent * rng.uniform(0.12, 0.25, (parts, 3))
            painter.blob(centres, radii, "confluent", rng, n_parts=parts, roughness=1.5)
        # Infratentorial and basal ganglia foci, only at higher severity.
        for region, rate in (("infratentorial", 4 * max(severity - 0.35, 0)),
                             ("basal_ganglia", 4 * max(severity - 0.3, 0))):
            pool = _candidates(painter, distance, 0.7, 0.0)
            only = {k: 1.0 if k == region else 0.0 for k in weights}
            for _ in range(rng.poisson(rate)):
                centre = _pick(rng, pool, only, painter.shape)
                if centre is None:
                    break
                size = rng.uniform(3, 9)
                painter.blob(centre, _radii(size, rng), "focal" if size >= 5 else "punctate", rng)
            if region == "basal_ganglia" and rng.uniform() < 0.8 * max(severity - 0.7, 0) / 0.3:
                centre = _pick(rng, pool, only, painter.shape)
                if centre is not None:  # a small confluent patch of 2-3 merged foci
                    parts = int(rng.integers(2, 4))
                    centres = centre + np.vstack([np.zeros(3), rng.normal(0, 3 / s, (parts - 1, 3))])
                    painter.blob(centres, rng.uniform(2.5, 4, (parts, 3)), "confluent", rng,
                                 n_parts=parts, roughness=1.0)

    fraction = painter.fraction
    mask = (fraction > 0.5).astype(np.uint8)
    info = InsertedLesions(np.where(mask > 0, painter.ids, 0), painter.records)
    wm_mask = anatomy.tissues["wm"] > 0.5
    arwmc = rate_arwmc(mask, regions, s, info, wm_mask=wm_mask)
    fazekas = rate_fazekas(mask, ventricles, s, info, distance_mm=distance)
    lesions = [{"type": r["type"], "centre_mni": r["centre_mni"], "diameter_mm": r["diameter_mm"],
                "region": r["region_name"], "n_parts": r["n_parts"]} for r in painter.records]
    values = {"FLAIR": float(rng.uniform(*flair_range)), "T1": float(rng.uniform(*t1_range))}
    targets = {"arwmc": arwmc["arwmc"], "arwmc_total": arwmc["arwmc_total"],
               "arwmc_lesion_ml": arwmc["lesion_ml"], **fazekas,
               "wmh_volume_ml": round(float(mask.sum() * s ** 3 / 1000.0), 4),
               "severity": round(float(severity), 4), "lesions": lesions}
    return LesionInsertion(layers=[LesionLayer("wmh", fraction, values)],
                           labels={"wmh": mask, "arwmc_regions": regions}, targets=targets)

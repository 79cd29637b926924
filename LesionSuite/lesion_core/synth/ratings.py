"""The ARWMC and Fazekas ratings of a lesion mask, knowing what was inserted.

The synthetic WMH subjects carry the ratings a reader would give (the weak labels the WMH
models train on): ARWMC (Wahlund et al., Stroke 2001) per region-side of the atlas of
:mod:`lesion_core.atlas.arwmc`, and Fazekas periventricular and deep scores. The rules
are stated on :func:`rate_arwmc` and :func:`rate_fazekas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from ..atlas.arwmc import LABELS, REGIONS

#: A lesion counts for ARWMC when its largest diameter is at least this (Wahlund 2001).
MIN_LESION_MM = 5.0
#: A single component larger than this (mL) counts as confluent even without known merges.
CONFLUENT_ML = 1.0
#: A white-matter region is "diffuse" (3) when lesions fill at least this fraction of its WM.
DIFFUSE_FRACTION = 0.10
#: Fazekas: lesions this close (mm) to the ventricle wall belong to the periventricular class.
PERIVENTRICULAR_TOUCH_MM = 3.0


@dataclass
class InsertedLesions:
    """What was inserted, for the ratings: who owns each voxel and how lesions merged.

    ``id_map``: ``int32`` array ``[i, j, k]`` on the lesion-mask grid, 0 = no lesion,
    ``n`` = the inserted lesion with the largest fraction in that voxel.
    ``lesions``: one dict per id with ``"id"``, ``"n_parts"`` (how many lesions it was
    built from: 1 for a single focus, >= 2 for a confluent patch), ``"diameter_mm"``
    (nominal largest diameter, mm; 0 when not meaningful, e.g. a periventricular band)
    and ``"region"`` (the region-side label value at its centre).
    """

    id_map: np.ndarray
    lesions: list[dict] = field(default_factory=list)


def largest_diameter_mm(coords_mm: np.ndarray, spacing_mm: float) -> float:
    """Largest diameter (mm) of a voxel set: the largest distance between two voxel centres
    (Feret diameter, over the convex hull's vertices) plus one voxel size."""
    if len(coords_mm) < 2:
        return float(spacing_mm)
    points = coords_mm
    if len(points) > 64:
        try:
            points = coords_mm[ConvexHull(coords_mm).vertices]
        except (QhullError, ValueError):  # flat or degenerate: all points are on the hull
            points = coords_mm[np.unique(np.r_[coords_mm.argmin(0), coords_mm.argmax(0)])]
    return float(pdist(points).max() + spacing_mm) if len(points) > 1 else float(spacing_mm)


def _components(mask: np.ndarray, spacing: float, info: InsertedLesions | None,
                region: int | None, box) -> list[dict]:
    """Connected components (26-connectivity) of ``mask`` (which is ``box`` of the full grid):
    size (mm), volume (mL), how many inserted lesions merged into each, and where it is.

    Size: when the component holds exactly one inserted lesion, centred in ``region``
    (``None``: any region), with a nominal diameter, that diameter (free of voxel
    quantisation); otherwise the measured :func:`largest_diameter_mm`. Merges: the sum of
    the inserted lesions' ``n_parts`` (a patch centred in another region counts as 1).
    """
    labelled, _ = ndimage.label(mask, np.ones((3, 3, 3), bool))
    records = {r["id"]: r for r in info.lesions} if info is not None else {}
    ids = info.id_map[box] if info is not None else None
    out = []
    for index, sl in enumerate(ndimage.find_objects(labelled), start=1):
        part = labelled[sl] == index
        coords = (np.argwhere(part) + [s.start for s in sl]) * spacing
        diameter, parts = None, 1
        if ids is not None:
            present = [records[i] for i in np.unique(ids[sl][part]) if i in records]
            home = [r for r in present if region is None or r["region"] == region]
            parts = max(sum(int(r["n_parts"]) if r in home else 1 for r in present), 1)
            if len(present) == 1 and home and parts == 1 and float(home[0]["diameter_mm"]) > 0:
                diameter = float(home[0]["diameter_mm"])
        if diameter is None:
            diameter = largest_diameter_mm(coords, spacing)
        out.append({"diameter_mm": diameter, "volume_ml": float(part.sum()) * spacing ** 3 / 1000.0,
                    "n_parts": parts, "slices": sl, "part": part})
    return out


def rate_arwmc(lesion_mask_subject: np.ndarray, region_labels_subject: np.ndarray,
               spacing_mm: float, inserted_lesions_info: InsertedLesions | None = None,
               wm_mask: np.ndarray | None = None) -> dict:
    """ARWMC scores (0-3 per region-side, total 0-30) of a lesion mask.

    Inputs are arrays on one isotropic grid of ``spacing_mm`` (mm), indexed ``[i, j, k]``:
    the binary lesion mask, the region-side labels (values of :data:`LABELS`), optionally
    what was inserted (merges, nominal sizes) and the white-matter mask (for the "diffuse"
    fraction; the whole region is used when it is None).

    Rules, applied to the connected components (26-connectivity) of the lesion mask
    within each region-side:

    - a component *counts* when its largest diameter is >= 5 mm; smaller ones are ignored.
      Its diameter is the nominal diameter of the inserted lesion when it is a single
      inserted lesion centred in this region, else the measured Feret diameter (largest
      distance between its voxel centres) plus one voxel;
    - a component is *confluent* when it was formed from >= 2 inserted lesions (merged
      foci; a confluent patch counts as its parts in the region of its centre, as one
      lesion elsewhere) or its volume exceeds 1.0 mL;
    - white-matter regions: 0 = no counted lesion; 1 = focal lesions; 2 = beginning
      confluence (a counted confluent component); 3 = diffuse involvement: lesions fill
      >= 10 % of the region's white matter (with at least one counted lesion);
    - basal ganglia: 0 = none; 1 = one focal lesion; 2 = more than one focal lesion;
      3 = confluent lesions (a counted confluent component).

    Returns ``{"arwmc": {region_side: int}, "arwmc_total": int,
    "lesion_ml": {region_side: float}}`` (plain Python numbers).
    """
    mask = np.asarray(lesion_mask_subject) > 0
    regions = np.asarray(region_labels_subject)
    spacing = float(spacing_mm)
    voxel_ml = spacing ** 3 / 1000.0
    boxes = ndimage.find_objects(regions.astype(np.int32), max_label=len(REGIONS))
    scores, volumes = {}, {}
    for name in REGIONS:
        label = LABELS[name]
        box = boxes[label - 1]
        if box is None:
            scores[name], volumes[name] = 0, 0.0
            continue
        inside = regions[box] == label
        lesion = mask[box] & inside
        volumes[name] = round(float(lesion.sum() * voxel_ml), 4)
        if not lesion.any():
            scores[name] = 0
            continue
        counted = [c for c in _components(lesion, spacing, inserted_lesions_info, label, box)
                   if c["diameter_mm"] >= MIN_LESION_MM - 1e-6]
        confluent = any(c["n_parts"] >= 2 or c["volume_ml"] > CONFLUENT_ML for c in counted)
        if name.startswith("basal_ganglia"):
            score = 0 if not counted else 3 if confluent else 1 if len(counted) == 1 else 2
        else:
            wm = inside if wm_mask is None else inside & (np.asarray(wm_mask)[box] > 0)
            diffuse = lesion.sum() >= DIFFUSE_FRACTION * max(int(wm.sum()), 1)
            score = 0 if not counted else 3 if diffuse else 2 if confluent else 1
        scores[name] = int(score)
    return {"arwmc": scores, "arwmc_total": int(sum(scores.values())), "lesion_ml": volumes}


def rate_fazekas(lesion_mask_subject: np.ndarray, ventricle_mask: np.ndarray, spacing_mm: float,
                 inserted_lesions_info: InsertedLesions | None = None,
                 distance_mm: np.ndarray | None = None) -> dict:
    """Fazekas periventricular and deep scores (0-3 each) of a lesion mask.

    Arrays on one isotropic grid (``spacing_mm``, mm, ``[i, j, k]``). Each connected
    component (26-connectivity) of the lesion mask that comes within 3 mm (or 1.5 voxels,
    whichever is more) of the ventricles is *periventricular*; the others are *deep*.

    - periventricular, from the largest distance (mm) of a periventricular lesion voxel
      from the ventricle wall: 0 = none; 1 = caps or pencil-thin lining (<= 5 mm);
      2 = smooth halo (5-10 mm); 3 = irregular, extending into the deep white matter
      (> 10 mm);
    - deep, from the deep components' largest diameters and merges (measured as in
      :func:`rate_arwmc`): 0 = none; 1 = punctate foci (all < 10 mm, none merged); 2 = beginning
      confluence (a component of 10-20 mm, or formed from >= 2 inserted lesions);
      3 = large confluent areas (a component >= 20 mm).

    ``distance_mm``: the distance (mm) of each voxel to the ventricles, when the caller
    has it (values may be clipped anywhere above 10 mm); computed here otherwise.

    Returns ``{"fazekas_periventricular": int, "fazekas_deep": int}``.
    """
    mask = np.asarray(lesion_mask_subject) > 0
    spacing = float(spacing_mm)
    if not mask.any():
        return {"fazekas_periventricular": 0, "fazekas_deep": 0}
    ventricles = np.asarray(ventricle_mask) > 0
    distance = np.full(mask.shape, np.inf, np.float32)
    if distance_mm is not None:
        distance = np.asarray(distance_mm, np.float32)
    elif ventricles.any():  # exact within the box that holds the ventricles and the lesions
        box = ndimage.find_objects((mask | ventricles).astype(np.uint8))[0]
        distance[box] = ndimage.distance_transform_edt(~ventricles[box], sampling=spacing)
    touch = max(PERIVENTRICULAR_TOUCH_MM, 1.5 * spacing)
    pv_extent, has_pv, deep_score = 0.0, False, 0
    full = tuple(slice(0, n) for n in mask.shape)
    for c in _components(mask, spacing, inserted_lesions_info, None, full):
        d = distance[c["slices"]][c["part"]]
        if d.min() <= touch:
            pv_extent, has_pv = max(pv_extent, float(d.max())), True
            continue
        diameter = c["diameter_mm"]
        score = 3 if diameter >= 20 else 2 if diameter >= 10 or c["n_parts"] >= 2 else 1
        deep_score = max(deep_score, score)
    pv_score = 0 if not has_pv else 1 if pv_extent <= 5 else 2 if pv_extent <= 10 else 3
    return {"fazekas_periventricular": int(pv_score), "fazekas_deep": int(deep_score)}

"""Intracranial haemorrhage (ICH) of the five RSNA subtypes, for the synthetic CT cohort.

:func:`insert_ich` draws 0-3 acute haemorrhages in one subject and returns their layers,
label map and weak labels; :func:`slice_labels` turns an (acquired) label map into the
per-slice presence labels that the RSNA challenge gives. Geometry is in mm on the subject's
RAS grid (arrays indexed ``[i, j, k]``), so it does not depend on the voxel size.

Shapes and places (the brain is not displaced: blood is painted over whatever tissue lies
there, brain, CSF or both):

- intraparenchymal: an irregular ovoid (ellipsoid perturbed by smooth noise), log-uniform
  between 0.2 + 1.8 severity and 0.2 + 59.8 severity mL (small bleeds of 0.2-0.5 mL at low
  severity, up to 60 mL),
  in the deep grey matter (hypertensive: basal ganglia, thalamus) or lobar white matter,
  clipped to parenchyma, with a perihaematomal oedema rim (10-18 HU) that grows
  with the haematoma (thickness ~ 3 + volume_mL ** (1/3) mm, 4-8 mm);
- intraventricular: blood in the dependent (posterior: occipital horns, trigones) part of
  the ventricles below a near-flat level (supine patient), in one or both lateral ventricles;
- subarachnoid: patchy blood in the CSF spaces outside the ventricles (sulci, fissures,
  basal cisterns), either around the basal cisterns and Sylvian fissures or over a convexity;
- subdural: a crescent along the inner table over a convexity, 3-15 mm thick, 40-75 mm
  from its centre to its tapering ends (it may cross sutures), not across the falx;
- epidural: a biconvex lens against the inner table over the temporal or parietal bone,
  10-25 mm thick at its centre, at most 45 mm from centre to edge (sutures limit it).

Acute blood is 50-90 HU: each haemorrhage draws its mean, and a smooth texture of about
+-7 % gives internal heterogeneity. A fraction :data:`SUBACUTE_FRACTION` (25 %) of the
haemorrhages of randomly drawn subjects is subacute instead, 40-60 HU (days old, partly
lysed; the label is unchanged, ``stage`` says which). MR values (relative to white matter)
are given too.

Label map ``"ich"`` (uint8): 1-5 the subtypes of :data:`lesion_core.labels.ICH_SUBTYPES`
where a haemorrhage's fraction exceeds 0.5 (where two overlap, the later-painted one wins,
as it does in the image), and 6 perihaematomal oedema only where there is no blood.
"Any ICH" is values 1-5. Volumes in ``targets`` are measured on this subject-grid map.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..labels import ICH_SUBTYPE_KEYS as SUBTYPE_KEYS  # label value -> subtype key
from ..volume import Volume
from .anatomy import SubjectAnatomy
from .contrast import LesionLayer
from .lesions import LesionInsertion

#: Short subtype key -> label value.
SUBTYPE_VALUES: dict[str, int] = {key: value for value, key in SUBTYPE_KEYS.items()}
#: Label value of perihaematomal oedema in the ``"ich"`` map.
OEDEMA_VALUE = 6
#: How often each subtype is drawn (relative weights; subtypes are drawn without repeats).
SUBTYPE_WEIGHTS = {"intraparenchymal": 0.3, "intraventricular": 0.15, "subarachnoid": 0.2,
                   "subdural": 0.25, "epidural": 0.1}
#: Probability of 1, 2 or 3 haemorrhages in a subject with ICH.
COUNT_PROBABILITIES = (0.55, 0.3, 0.15)
#: Range of the per-haemorrhage mean density (HU), acute blood.
BLOOD_HU = {"intraparenchymal": (60.0, 85.0), "intraventricular": (55.0, 78.0),
            "subarachnoid": (60.0, 82.0), "subdural": (55.0, 82.0), "epidural": (60.0, 88.0)}
#: Subacute blood (HU) and the share of haemorrhages drawn subacute.
SUBACUTE_HU = (40.0, 60.0)
SUBACUTE_FRACTION = 0.25
#: Perihaematomal oedema density range (HU).
OEDEMA_HU = (10.0, 18.0)
#: Acute blood and oedema on MR (relative to white matter; SWI multiplies the tissue).
_BLOOD_MR = {"FLAIR": 1.25, "T1": 0.95, "SWI": 0.25}
_OEDEMA_MR = {"FLAIR": 1.6, "T1": 0.8}
_TEXTURE = 0.15  # relative CT gain of the heterogeneity layer (mean gain half of it)


class _Head:
    """Masks and coordinates the placements share (subject grid, arrays ``[i, j, k]``)."""

    def __init__(self, anatomy: SubjectAnatomy) -> None:
        t = anatomy.tissues
        self.anatomy = anatomy
        self.shape = anatomy.grid.shape
        self.affine = anatomy.grid.affine
        self.spacing = float(anatomy.grid.spacing.mean())
        self.parenchyma = np.clip(t["gm"] + t["wm"], 0, 1)
        self.ventricles = t["ventricles"]
        self.skull = t["skull"] > 0.5
        self.intracranial = (anatomy.brain | (t["csf"] > 0.5)) & ~self.skull
        self.mni = anatomy.mni_coordinates
        self._surface = None

    def surface(self) -> np.ndarray:
        """Intracranial voxels touching the skull (the inner table)."""
        if self._surface is None:
            self._surface = self.intracranial & ndimage.binary_dilation(self.skull)
        return self._surface

    def box(self, centre_ijk, radius_mm: float) -> tuple[slice, ...]:
        r = radius_mm / self.spacing + 2
        return tuple(slice(max(int(np.floor(c - r)), 0), min(int(np.ceil(c + r)) + 1, n))
                     for c, n in zip(centre_ijk, self.shape))

    def ras(self, box: tuple[slice, ...]) -> np.ndarray:
        """RAS (mm) of the voxel centres in ``box``, shape ``(..., 3)``."""
        ijk = np.stack(np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box],
                                   indexing="ij"), -1)
        return ijk @ self.affine[:3, :3].T.astype(np.float32) + self.affine[:3, 3].astype(np.float32)

    def to_ras(self, ijk) -> np.ndarray:
        return self.affine[:3, :3] @ np.asarray(ijk, float) + self.affine[:3, 3]

    def pick(self, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray | None:
        """A random voxel index ``(3,)`` of ``mask``, or None when it is empty."""
        flat = np.flatnonzero(mask)
        return None if flat.size == 0 else np.array(np.unravel_index(rng.choice(flat), self.shape))


def _noise(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(sigma_vox, 0.5))
    return field / max(float(field.std()), 1e-6)


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    """Index box (slices) around the non-zero voxels of ``mask``, ``pad`` voxels wider."""
    if not mask.any():
        return tuple(slice(0, 0) for _ in mask.shape)
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + pad + 1, mask.shape[axis])))
    return tuple(out)


def _ramp(edge_mm: np.ndarray, spacing: float) -> np.ndarray:
    """Partial-volume fraction from a signed distance inside an edge (mm, > 0 inside)."""
    return np.clip(edge_mm / spacing + 0.5, 0, 1).astype(np.float32)


def _full(head: _Head, box, part: np.ndarray) -> np.ndarray:
    out = np.zeros(head.shape, np.float32)
    out[box] = part
    return out


# ------------------------------------------------------------------- the five subtypes
def _intraparenchymal(head: _Head, rng, scale: float):
    """Irregular ovoid haematoma and its oedema fraction, or None."""
    t = head.anatomy.tissues
    smallest = 0.2 + 1.8 * scale
    volume_ml = float(np.exp(rng.uniform(np.log(smallest), np.log(0.2 + 59.8 * scale))))
    r0 = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    deep = rng.random() < 0.5
    if deep:
        centre = head.pick(rng, (t["deep_gm"] > 0.5) & (head.parenchyma > 0.8)
                           & (np.abs(head.mni[..., 0]) > 10))
    else:
        f = max(1, int(round(2.0 / head.spacing)))
        depth = ndimage.distance_transform_edt(head.anatomy.brain[::f, ::f, ::f], sampling=head.spacing * f)
        depth = np.repeat(np.repeat(np.repeat(depth, f, 0), f, 1), f, 2)[tuple(slice(0, n) for n in head.shape)]
        wanted = min(max(8.0, 0.7 * r0), 25.0)
        candidates = ((t["wm"] > 0.5) & (depth >= wanted) & (depth <= wanted + 15)
                      & (head.mni[..., 2] > -5) & (head.ventricles < 0.1))
        centre = head.pick(rng, candidates)
    if centre is None:
        return None
    aspect = rng.uniform(0.75, 1.3, 3)
    radii = r0 * aspect / np.prod(aspect) ** (1 / 3)
    rotation = Rotation.random(random_state=int(rng.integers(2 ** 31))).as_matrix()
    wobble = rng.uniform(0.12, 0.25)
    thickness = float(np.clip(3.0 + 1.0 * volume_ml ** (1 / 3), 4.0, 8.0))
    box = head.box(centre, radii.max() * (1 + 3 * wobble) + thickness + 2 * head.spacing)
    local = (head.ras(box) - head.to_ras(centre).astype(np.float32)) @ rotation.astype(np.float32)
    rho = np.sqrt(((local / radii.astype(np.float32)) ** 2).sum(-1))
    shape = rho.shape
    bumps = _noise(rng, shape, 0.4 * r0 / head.spacing)
    # Room for blood and oedema: a voxel at least half parenchyma is filled completely.
    parenchyma = np.clip(2 * head.parenchyma[box], 0, 1)
    blood = _ramp((1 + wobble * bumps - rho) * r0, head.spacing) * parenchyma
    distance = ndimage.distance_transform_edt(blood <= 0.5, sampling=head.spacing)
    rim = thickness * (1 + 0.2 * _noise(rng, shape, 3.0 / head.spacing))
    # Not reduced where there is blood: the blood layer is painted over it.
    oedema = _ramp(rim - distance, head.spacing) * parenchyma
    site = "deep" if deep else "lobar"
    return _full(head, box, blood), _full(head, box, oedema), {"site": site}


def _intraventricular(head: _Head, rng, scale: float):
    """Blood in the dependent (posterior) part of the lateral ventricles, or None."""
    ventricles = head.ventricles
    side = rng.choice(["both", "left", "right"], p=[0.5, 0.25, 0.25])
    keep = np.ones(head.shape, bool)
    if side != "both":
        keep = head.mni[..., 0] < 0 if side == "left" else head.mni[..., 0] > 0
    inside = (ventricles > 0.5) & keep
    if inside.sum() < 2:
        return None
    box = _bbox(inside)
    y = head.ras(box)[..., 1]  # anterior (mm); supine: gravity points to -y
    fill = float(np.clip(rng.uniform(0.08, 0.2) + 0.45 * scale * rng.random(), 0.05, 0.8))
    level = np.quantile(y[inside[box]], fill)
    # A near-flat (supine: coronal) level with a slightly irregular clot surface.
    surface = level + 1.0 * _noise(rng, y.shape, 4.0 / head.spacing)
    blood = _ramp(surface - y, head.spacing) * np.clip(1.5 * ventricles[box], 0, 1) * keep[box]
    return _full(head, box, blood), None, {"site": str(side)}


def _subarachnoid(head: _Head, rng, scale: float):
    """Patchy blood in sulci, fissures and cisterns (CSF outside the ventricles), or None."""
    t = head.anatomy.tissues
    space = np.clip(t["csf"] - t["ventricles"], 0, 1) * head.anatomy.brain
    mni = head.mni
    spread = 12.0 + 15.0 * scale * rng.random()
    if rng.random() < 0.55:  # aneurysmal pattern: basal cisterns and Sylvian fissures
        sides = [-1, 1] if rng.random() < 0.6 else [int(rng.choice([-1, 1]))]
        centres = [(0.0, 5.0, -12.0)] + [(40.0 * s, 5.0, -2.0) for s in sides]
        site = "basal"
    else:  # convexity sulci (traumatic)
        centre = head.pick(rng, head.surface() & (mni[..., 2] > 10))
        if centre is None:
            return None
        centres = [tuple(mni[tuple(centre)])]
        site = "convexity"
    weight = np.zeros(head.shape, np.float32)
    for c in centres:
        d2 = ((mni - np.asarray(c, np.float32)) ** 2).sum(-1)
        weight = np.maximum(weight, np.exp(-d2 / (2 * spread ** 2)))
    box = _bbox((weight > 0.1) & (space > 0))
    patches = _noise(rng, weight[box].shape, 4.0 / head.spacing)
    patchy = np.clip((weight[box] * (1 + 0.5 * patches) - 0.3) / 0.2, 0, 1)
    blood = np.clip(2.0 * space[box], 0, 1) * patchy
    return _full(head, box, blood), None, {"site": site}


def _extra_axial(head: _Head, rng, scale: float, epidural: bool):
    """Subdural crescent or epidural lens against the inner table, or None."""
    mni = head.mni
    if epidural:  # temporal or parietal squama
        region = (np.abs(mni[..., 0]) > 45) & (mni[..., 1] > -50) & (mni[..., 1] < 20) \
            & (mni[..., 2] > -15) & (mni[..., 2] < 40)
        peak = 10.0 + 15.0 * scale * rng.random()
        extent = float(np.clip(1.6 * peak + rng.uniform(5, 15), 25.0, 45.0))
    else:  # fronto-parietal convexity
        region = (np.abs(mni[..., 0]) > 30) & (mni[..., 1] > -60) & (mni[..., 1] < 40) \
            & (mni[..., 2] > -5) & (mni[..., 2] < 55)
        peak = 3.0 + 12.0 * scale * rng.random()
        extent = rng.uniform(40.0, 55.0) + 20.0 * scale * rng.random()
    centre = head.pick(rng, head.surface() & region)
    if centre is None:
        return None
    side = 1.0 if mni[tuple(centre)][0] > 0 else -1.0
    box = head.box(centre, extent + peak + 2 * head.spacing)
    s = np.sqrt(((head.ras(box) - head.to_ras(centre).astype(np.float32)) ** 2).sum(-1)) / extent
    if epidural:  # biconvex: thickest in the centre, steep edges
        profile = np.clip(1 - s ** 2, 0, 1) ** 0.6
    else:  # crescent: even thickness that tapers towards its ends
        profile = np.sqrt(np.clip(1 - s ** 4, 0, 1))
    thickness = peak * profile * (1 + 0.08 * _noise(rng, s.shape, 6.0 / head.spacing))
    # Distance (mm) from the inner table; voxels next to the skull are one voxel away.
    distance = ndimage.distance_transform_edt(~head.skull[box], sampling=head.spacing) - 0.5 * head.spacing
    allowed = head.intracranial[box] & (mni[box][..., 0] * side > 1.5) & (mni[box][..., 2] > -30)
    blood = _ramp(thickness - distance, head.spacing) * allowed * (profile > 0)
    return _full(head, box, blood), None, {"site": "left" if side < 0 else "right"}


def _place(key: str, head: _Head, rng, scale: float):
    if key == "intraparenchymal":
        return _intraparenchymal(head, rng, scale)
    if key == "intraventricular":
        return _intraventricular(head, rng, scale)
    if key == "subarachnoid":
        return _subarachnoid(head, rng, scale)
    return _extra_axial(head, rng, scale, epidural=key == "epidural")


# ------------------------------------------------------------------------- public API
def insert_ich(anatomy: SubjectAnatomy, rng: np.random.Generator, severity: float | None = None,
               probability: float = 0.8, subtypes: list[str] | None = None,
               subacute_fraction: float | None = None,
               acute_hu: dict[str, tuple[float, float]] | None = None,
               subacute_hu: tuple[float, float] = SUBACUTE_HU) -> LesionInsertion:
    """Insert 0-3 acute haemorrhages into one subject.

    Args:
        anatomy: the subject (tissue maps on its RAS grid, indexed ``[i, j, k]``).
        rng: the subject's random generator (everything is reproducible from it).
        severity: 0-1 size scale (IPH up to 60 mL, SDH up to 15 mm, EDH up to 25 mm thick,
            IVH fill fraction, SAH spread); drawn uniformly in 0.15-1 when None.
        probability: chance that the subject has any haemorrhage (ignored when ``subtypes``
            is given).
        subtypes: force exactly these subtypes (keys of :data:`SUBTYPE_VALUES`), painted in
            this order; ``[]`` forces none. None: 1-3 random subtypes.
        subacute_fraction: chance that a haemorrhage is subacute (``subacute_hu``); None means
            :data:`SUBACUTE_FRACTION` for randomly drawn subtypes and 0 (all acute) when
            ``subtypes`` is forced.
        acute_hu: range (HU) of an acute haemorrhage's mean density per subtype;
            None means :data:`BLOOD_HU`.
        subacute_hu: the same for subacute haemorrhages (default :data:`SUBACUTE_HU`).

    Returns:
        layers (oedema layers first, then blood in painting order, then one relative texture
        layer), labels ``{"ich": uint8 map, values 1-6}`` and JSON-able targets:
        ``ich_present``, ``subtypes`` (sorted keys), ``volume_ml`` per subtype,
        ``total_volume_ml`` (blood, 1-5), ``oedema_volume_ml`` and ``haemorrhages``
        (``subtype``, ``site``, ``stage`` "acute" or "subacute", ``centre_subject_ras`` in mm,
        ``volume_ml``, ``mean_hu``).
    """
    if subtypes is not None:
        unknown = [s for s in subtypes if s not in SUBTYPE_VALUES]
        if unknown:
            raise ValueError(f"unknown ICH subtype(s) {unknown}; choose from {list(SUBTYPE_VALUES)}")
        chosen = list(dict.fromkeys(subtypes))
    elif rng.random() < probability:
        count = int(rng.choice([1, 2, 3], p=COUNT_PROBABILITIES))
        keys = list(SUBTYPE_WEIGHTS)
        weights = np.array([SUBTYPE_WEIGHTS[k] for k in keys])
        chosen = [str(k) for k in rng.choice(keys, size=count, replace=False, p=weights / weights.sum())]
    else:
        chosen = []
    scale = float(np.clip(severity, 0, 1)) if severity is not None else float(rng.uniform(0.15, 1.0))
    if subacute_fraction is None:
        subacute_fraction = 0.0 if subtypes is not None else SUBACUTE_FRACTION

    head = _Head(anatomy)
    label = np.zeros(head.shape, np.uint8)
    oedema_layers, blood_layers, drawn = [], [], []
    texture = np.zeros(head.shape, np.float32)
    for key in chosen:
        placed = _place(key, head, rng, scale)
        if placed is None or not (placed[0] > 0.5).any():
            continue
        blood, oedema, info = placed
        subacute = bool(subacute_fraction > 0 and rng.random() < subacute_fraction)
        mean_hu = float(rng.uniform(*(subacute_hu if subacute else (acute_hu or BLOOD_HU)[key])))
        info = {**info, "stage": "subacute" if subacute else "acute"}
        values = {"CT": mean_hu / (1 + _TEXTURE / 2), **_BLOOD_MR}
        blood_layers.append(LesionLayer(f"ich_{key}", blood, values, {"SWI": True}))
        box = _bbox(blood > 0)
        grain = np.clip(0.5 + 0.35 * _noise(rng, blood[box].shape, 3.0 / head.spacing), 0, 1)
        np.maximum(texture[box], blood[box] * grain, out=texture[box])
        if oedema is not None:
            oedema_layers.append(LesionLayer("ich_oedema", oedema,
                                             {"CT": float(rng.uniform(*OEDEMA_HU)), **_OEDEMA_MR}))
            label[(oedema > 0.5) & (label == 0)] = OEDEMA_VALUE
        drawn.append((key, blood, mean_hu, info))
    for key, blood, _, _ in drawn:  # blood over oedema; the later haemorrhage wins
        label[blood > 0.5] = SUBTYPE_VALUES[key]
    layers = oedema_layers + blood_layers
    if drawn:
        layers.append(LesionLayer("ich_texture", texture, {"CT": 1 + _TEXTURE}, {"CT": True}))
    return LesionInsertion(layers=layers, labels={"ich": label},
                           targets=_targets(label, head, drawn))


def _targets(label: np.ndarray, head: _Head, drawn: list) -> dict:
    voxel_ml = float(abs(np.linalg.det(head.affine[:3, :3]))) / 1000.0
    counts = np.bincount(label.ravel(), minlength=OEDEMA_VALUE + 1)
    volume = {key: round(float(counts[v]) * voxel_ml, 3) for v, key in SUBTYPE_KEYS.items() if counts[v]}
    haemorrhages = []
    for key, _, mean_hu, info in drawn:
        voxels = np.argwhere(label == SUBTYPE_VALUES[key])
        if len(voxels) == 0:
            continue
        centre = head.to_ras(voxels.mean(0))
        haemorrhages.append({"subtype": key, "site": info["site"], "stage": info["stage"],
                             "centre_subject_ras": [round(float(c), 2) for c in centre],
                             "volume_ml": volume[key], "mean_hu": round(mean_hu, 1)})
    return {"ich_present": bool(volume), "subtypes": sorted(volume),
            "volume_ml": volume, "total_volume_ml": round(float(sum(counts[1:6])) * voxel_ml, 3),
            "oedema_volume_ml": round(float(counts[OEDEMA_VALUE]) * voxel_ml, 3),
            "haemorrhages": haemorrhages}


def slice_labels(label_volume: Volume, slice_axis: int) -> list[dict]:
    """Per-slice presence labels, as the RSNA challenge gives them.

    Args:
        label_volume: ``"ich"`` label map on the acquired grid (values 1-5 blood, 6 oedema).
        slice_axis: the acquisition's slice axis (0, 1 or 2 of the array ``[i, j, k]``).

    Returns:
        one dict per slice ``k`` along ``slice_axis``: ``{"index": k, "ich": bool,
        "subtypes": [keys in label-value order]}``. A slice counts as positive for a subtype
        when at least one of its voxels has that value; oedema (6) alone is not ICH.
    """
    array = np.asarray(label_volume.array)
    if array.ndim != 3 or slice_axis not in (0, 1, 2):
        raise ValueError(f"need a 3D label map and a slice axis 0-2, got shape {array.shape}, "
                         f"axis {slice_axis}")
    other = tuple(a for a in range(3) if a != slice_axis)
    present = {key: np.any(array == value, axis=other) for value, key in SUBTYPE_KEYS.items()}
    out = []
    for k in range(array.shape[slice_axis]):
        names = [key for key in SUBTYPE_KEYS.values() if present[key][k]]
        out.append({"index": k, "ich": bool(names), "subtypes": names})
    return out

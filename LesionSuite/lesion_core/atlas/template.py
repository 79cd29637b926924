"""Tissue maps in MNI space, built from the MNI152 2009 template that nilearn's wheel ships.

The nilearn package carries the ICBM 2009 symmetric template (skull-stripped T1 and grey-
and white-matter probability maps, 1 mm, ``uint8`` 0-255) inside its own data folder; we
read those files directly (no fetcher, no download). What the template lacks is derived
here, with the rule stated next to each map: CSF, the ventricles, the intracranial space,
skull, scalp and the air spaces of the paranasal sinuses and mastoids.

Everything derived from the template (its maps here, the ARWMC atlas, the WMH zones) is
cached on disk by :func:`cached_arrays`, keyed by the deriving source code and the
template files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..atomic import atomic_write
from ..errors import LesionSuiteError

_TEMPLATE_FILES = {name: f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
                   for name in ("t1", "gm", "wm")}
#: Margin added around the brain-only template so that skull and scalp fit (mm).
_PAD_MM = 18
#: Tissue names, in the order of :attr:`MNITemplate.maps` channels.
TISSUES = ("gm", "wm", "csf", "ventricles", "skull", "scalp", "air", "deep_gm")
#: Environment variable naming the folder of derived-data caches (default
#: ``~/.cache/lesion-suite``).
CACHE_ENV = "LESION_SUITE_CACHE"
#: Channel order of :attr:`MNITemplate.stack`: the channels that are non-zero only in and
#: next to the brain first (``brain`` is the brain mask as 0/1), then those reaching the scalp.
BRAIN_CHANNELS = ("gm", "wm", "deep_gm", "ventricles", "brain")
HEAD_CHANNELS = ("csf", "skull", "scalp", "air")


@dataclass(frozen=True)
class MNITemplate:
    """Probability maps (0-1, float32) on a 1 mm RAS grid in MNI152 2009 space.

    ``maps[name]`` are arrays indexed ``[i, j, k]``; ``affine`` maps voxels to MNI mm.
    ``brain`` is the binary brain mask (cerebrum, cerebellum, brainstem).
    For fast sampling, :func:`load_template` also gives ``stack``: every map and the brain
    mask as channels ``BRAIN_CHANNELS + HEAD_CHANNELS`` of one float32 array (``maps``
    are views of it), and ``zone``: 2 within one voxel (26-neighbourhood) of a non-zero
    brain channel, 1 within one voxel of a non-zero head channel, else 0.
    """

    maps: dict[str, np.ndarray]
    brain: np.ndarray
    t1: np.ndarray
    affine: np.ndarray
    stack: np.ndarray | None = field(default=None, repr=False, compare=False)
    zone: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.brain.shape


def template_folder() -> Path:
    spec = find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise LesionSuiteError("the nilearn package (which ships the MNI152 template) is missing",
                               "pip install nilearn")
    return Path(spec.origin).parent / "datasets" / "data"


def _mni_box(affine: np.ndarray, shape, centre, radii) -> np.ndarray:
    """Ellipsoid mask (centre, radii in MNI mm) on the axis-aligned template grid."""
    axes = [(affine[a, a] * np.arange(n) + affine[a, 3] - c) / r
            for a, (n, c, r) in enumerate(zip(shape, centre, radii))]
    return (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
            + axes[2][None, None, :] ** 2) <= 1.0


def distance_outside_mm(mask: np.ndarray, step: int = 2) -> np.ndarray:
    """Distance (mm, 1 mm grid) from each voxel to ``mask``, computed on a ``step`` mm grid
    and interpolated back: the shells built from it need ~1 mm accuracy, and this is 8x
    cheaper than the full-resolution transform."""
    coarse = ndimage.zoom(mask.astype(np.float32), 1.0 / step, order=1) >= 0.5
    distance = ndimage.distance_transform_edt(~coarse, sampling=step).astype(np.float32)
    factors = [n / c for n, c in zip(mask.shape, coarse.shape)]
    return np.maximum(ndimage.zoom(distance, factors, order=1, grid_mode=True, mode="nearest"), 0)


def cache_folder() -> Path:
    """Where derived data (the template maps, atlases) are cached between processes."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lesion-suite")


def cache_key(*sources: str) -> str:
    """Hash of this module, the given extra source texts and the template files' sizes:
    a cache entry is rebuilt when the code or the nilearn template changes."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for text in sources:
        digest.update(text.encode())
    folder = template_folder()
    for fname in sorted(_TEMPLATE_FILES.values()):
        path = folder / fname
        digest.update(f"{fname}:{path.stat().st_size if path.exists() else -1}".encode())
    return digest.hexdigest()[:16]


def cached_arrays(name: str, build, *sources: str) -> dict[str, np.ndarray]:
    """``build()`` -> dict of arrays, cached as ``<cache>/<name>_<key>.npz``; an
    unreadable or corrupt entry is rebuilt, and a failed write only costs the rebuild."""
    path = cache_folder() / f"{name}_{cache_key(*sources)}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    except Exception:  # missing, truncated or corrupt: build it again
        pass
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez_compressed(str(tmp), **arrays))
    except OSError:
        pass
    return arrays


def _quantised() -> dict[str, np.ndarray]:
    """The template's maps as ``uint8`` (0-255): lossless, every map is k/255 or binary."""
    template = build_template()
    out = {f"map_{n}": np.round(m * 255).astype(np.uint8) for n, m in template.maps.items()}
    out.update(t1=np.round(template.t1 * 255).astype(np.uint8), brain=template.brain,
               affine=template.affine, zone=sampling_zone(template.maps, template.brain))
    return out


def sampling_zone(maps: dict[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
    """``uint8`` zone map (see :class:`MNITemplate`): outside zone 2 the brain channels,
    outside zones 1-2 all channels, are exactly 0 under trilinear interpolation."""
    cube = np.ones((3, 3, 3), bool)
    inner = brain.copy()
    for name in BRAIN_CHANNELS[:-1]:
        inner |= maps[name] > 0
    outer = inner.copy()
    for name in HEAD_CHANNELS:
        outer |= maps[name] > 0
    return (ndimage.binary_dilation(outer, cube).astype(np.uint8)
            + ndimage.binary_dilation(inner, cube))


@lru_cache(maxsize=1)
def load_template() -> MNITemplate:
    """The tissue maps of the MNI template: built once (~5 s) and cached on disk
    (:func:`cache_folder`); a new process then loads them in a fraction of a second."""
    stored = cached_arrays("mni_template", _quantised)
    scale = np.float32(255)
    brain = stored["brain"].astype(bool)
    names = BRAIN_CHANNELS + HEAD_CHANNELS
    stack = np.empty((len(names),) + brain.shape, np.float32)
    for index, name in enumerate(names):
        if name == "brain":
            stack[index] = brain
        else:
            np.divide(stored[f"map_{name}"], scale, out=stack[index], dtype=np.float32)
    maps = {n: stack[names.index(n)] for n in TISSUES}
    return MNITemplate(maps=maps, brain=brain, t1=stored["t1"].astype(np.float32) / scale,
                       affine=stored["affine"], stack=stack, zone=stored["zone"])


def build_template() -> MNITemplate:
    """Build the tissue maps of the MNI template from nilearn's files (~5 s)."""
    folder = template_folder()
    import nibabel as nib  # not at import: Slicer loads modules without nibabel

    images = {name: nib.load(str(folder / fname)) for name, fname in _TEMPLATE_FILES.items()}
    pad = [(_PAD_MM, _PAD_MM)] * 3
    data = {n: np.pad(np.asarray(im.dataobj, dtype=np.float32) / 255.0, pad)
            for n, im in images.items()}
    affine = images["t1"].affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, _PAD_MM)
    shape = data["t1"].shape

    # Brain: the template is skull-stripped, so non-zero T1 is brain (holes filled).
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(data["t1"] > 0.04, iterations=2))
    gm, wm = data["gm"], data["wm"]
    csf = np.clip(brain - gm - wm, 0.0, 1.0) * brain
    # Intracranial space: brain plus a 3 mm layer of subarachnoid CSF around it.
    outside = distance_outside_mm(brain)
    intracranial = outside <= 3.0
    csf = np.where(brain, csf, intracranial.astype(np.float32))
    # Ventricles: CSF in the central block that holds the lateral and third ventricles.
    central = _mni_box(affine, shape, (0, -12, 12), (28, 42, 24))
    ventricles = ((csf > 0.5) & central & brain).astype(np.float32)
    ventricles = ndimage.binary_opening(ventricles, iterations=1).astype(np.float32)
    # Skull 3-10 mm beyond the brain, scalp 10-15 mm; the inner surface is the dura.
    skull = ((outside > 3.0) & (outside <= 10.0)).astype(np.float32)
    scalp = ((outside > 10.0) & (outside <= 15.0)).astype(np.float32)
    # Air: frontal and sphenoid sinuses and mastoid cells, carved out of the skull and
    # the tissue below the frontal lobes (where susceptibility artefacts arise on SWI).
    air_mask = np.zeros(shape, bool)
    for centre, radii in [((0, 62, 2), (14, 7, 9)), ((0, 18, -32), (12, 10, 9)),
                          ((-38, -22, -34), (7, 9, 7)), ((38, -22, -34), (7, 9, 7))]:
        air_mask |= _mni_box(affine, shape, centre, radii)
    air = (air_mask & ~brain & (outside > 4.0)).astype(np.float32)
    skull *= 1.0 - air
    # Deep grey matter (basal ganglia, thalami): grey matter in the central block, outside
    # the cortex ribbon; used for the ARWMC basal ganglia region and deep CMB/ICH sites.
    deep = _mni_box(affine, shape, (0, -2, 4), (30, 26, 18))
    deep_gm = (gm * deep * (distance_outside_mm(~brain) > 12)).astype(np.float32)
    maps = {"gm": gm * brain, "wm": wm * brain, "csf": csf.astype(np.float32),
            "ventricles": ventricles, "skull": skull, "scalp": scalp, "air": air,
            "deep_gm": deep_gm}
    return MNITemplate(maps=maps, brain=brain, t1=data["t1"], affine=affine)

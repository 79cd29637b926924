"""Affine registration of a subject image to the MNI152 template, and a brain mask from it.

:func:`register_to_mni` finds the 12-parameter affine map from the subject's RAS world
(mm) to MNI space (mm) with SimpleITK (Mattes mutual information, multi-resolution) against
the MNI152 2009 template rendered for the modality (:func:`template_image`): first the
whole head (a scan that is not skull-stripped has skull and scalp), then inside the brain.
:class:`MNIRegistration` carries MNI-space maps (ARWMC atlas, brain mask) to the subject.
:func:`brain_mask` is the registered template brain mask refined by the image's
intensities; it is not a learned skull-stripper.

SimpleITK works in LPS world coordinates and indexes ``[x, y, z] = [i, j, k]``; the
conversions to and from :class:`~lesion_core.volume.Volume` (RAS, ``[i, j, k]``) live in
:func:`_to_sitk` and :func:`_from_sitk` only. SimpleITK is imported when first needed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .atlas.tissues import MODALITIES, TISSUE_MEANS, tissue_mixture
from .baselines.masks import bounding_box, dilate_mm, erode_mm
from .errors import InvalidImageError, LesionSuiteError
from .intensity import finite_float32
from .volume import Volume


@lru_cache(maxsize=1)
def _cache_sources() -> tuple[str, str]:
    """What the on-disk template caches are derived by: a change of this module or of the
    tissue means renders them again (read when first needed, not at import)."""
    return Path(__file__).read_text(), repr(TISSUE_MEANS)


#: RAS <-> LPS: flip the first two world axes (its own inverse).
_FLIP = np.diag([-1.0, -1.0, 1.0])
#: Starts of the similarity stage: template scale and superior shift (mm) from the moments.
START_SCALES, START_SHIFTS_MM = (0.87, 1.0), (-20.0, 0.0, 20.0)
_FIX = "check the image is a whole-head scan of the stated modality"


class RegistrationError(LesionSuiteError):
    """Registration to the MNI template failed or gave an implausible transform."""


@dataclass(frozen=True)
class RegistrationConfig:
    """How :func:`register_to_mni` runs. Lengths in mm.

    ``working_spacing_mm``: voxel size of the template (fixed) image, and the smallest voxel
    of the subject (moving) image, which is anti-aliased and resampled when finer; the
    pyramid shrinks the template by ``shrink_factors`` (voxels) after Gaussian smoothing by
    ``smoothing_mm``. ``sampling_fraction``: share of template voxels (inside the mask) where
    the metric is evaluated, drawn at random with ``seed``. ``refine_in_brain``: the affine
    stage samples the template brain (dilated 4 mm) rather than the whole head.
    """

    working_spacing_mm: float = 3.0
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_mm: tuple[float, ...] = (4.0, 2.0, 1.0)
    sampling_fraction: float = 0.15
    histogram_bins: int = 32
    iterations: int = 100
    refine_in_brain: bool = True
    seed: int = 1


# ---------------------------------------------------------------- SimpleITK conversions
def _sitk():
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LesionSuiteError("registration to MNI needs SimpleITK", "pip install SimpleITK") from exc
    return sitk


def _to_sitk(volume: Volume, dtype=None):
    """Volume (``[i, j, k]``, RAS affine) -> SimpleITK image (LPS; its ``[x, y, z]`` = ``i, j, k``),
    values kept or cast to ``dtype``. Sheared affines raise :class:`InvalidImageError`."""
    sitk = _sitk()
    array = np.asarray(volume.array)
    array = array.astype(dtype or np.uint8, copy=False) if dtype or array.dtype == bool else array
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    direction = volume.direction
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise InvalidImageError("the voxel axes are not perpendicular (sheared affine)",
                                "resample the image to an orthogonal grid", volume.source)
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetDirection([float(v) for v in (_FLIP @ direction).ravel()])
    image.SetOrigin([float(v) for v in _FLIP @ volume.origin])
    return image


def _from_sitk(image, source: str | None = None) -> Volume:
    """SimpleITK image -> Volume (``[i, j, k]`` array, RAS voxel-to-world affine in mm)."""
    sitk = _sitk()
    array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _FLIP @ direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = _FLIP @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return Volume(np.ascontiguousarray(array), affine, source)


def _ras_matrix(transform) -> np.ndarray:
    """4x4 RAS matrix of a SimpleITK affine-family transform (which maps LPS points:
    ``y = A (x - c) + c + t``)."""
    a = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    c = np.asarray(transform.GetCenter(), dtype=np.float64)
    t = np.asarray(transform.GetTranslation(), dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = _FLIP @ a @ _FLIP
    out[:3, 3] = _FLIP @ (c + t - a @ c)
    return out


# ------------------------------------------------------------------------ the template
def _render_template(modality: str, spacing_mm: float) -> dict[str, np.ndarray]:
    from .atlas.template import load_template

    template = load_template()
    parts = tissue_mixture(template.maps)
    image = sum(parts[t] * TISSUE_MEANS[modality][t][0] for t in parts)
    step = max(int(round(spacing_mm / float(abs(template.affine[0, 0])))), 1)
    image = ndimage.gaussian_filter(image.astype(np.float32), step / 2.3548)[(slice(None, None, step),) * 3]
    affine = template.affine.copy()
    affine[:3, :3] *= step
    maps, sub = template.maps, (slice(None, None, step),) * 3
    head = ((maps["scalp"] + maps["skull"] + maps["csf"] + maps["air"]) > 0.1) | template.brain
    head = ndimage.binary_dilation(ndimage.binary_fill_holes(head[sub]), iterations=max(round(6 / step), 1))
    brain = ndimage.binary_dilation(template.brain[sub], iterations=max(round(4 / step), 1))
    return {"image": image.astype(np.float32), "head": head.astype(np.uint8),
            "brain": brain.astype(np.uint8), "affine": affine}


@lru_cache(maxsize=8)
def template_image(modality: str, spacing_mm: float = 3.0) -> tuple[Volume, Volume, Volume]:
    """The MNI template rendered for ``modality``, on an RAS grid of ``spacing_mm`` (mm).

    Intensity = the partial-volume mixture of the template's tissue maps (grey and white
    matter, deep grey matter, CSF, ventricles, skull, scalp, air) weighted by the centre
    values of :data:`lesion_core.atlas.tissues.TISSUE_MEANS` for the modality (MR:
    relative to white matter; CT: HU), smoothed by a Gaussian of FWHM = ``spacing_mm`` and
    sampled every ``spacing_mm``. Returns ``(image, head, brain)``: the image (float32) and
    two masks (uint8): the head (brain, CSF, skull, scalp) dilated by 6 mm, and the brain
    dilated by 4 mm. Arrays are ``[i, j, k]``; the affines map voxels to MNI mm.

    Rendering takes seconds, so it is cached on disk (like the template itself) and every
    later process only reads it.
    """
    from .atlas.template import cached_arrays

    if modality not in TISSUE_MEANS:
        raise ValueError(f"unknown modality {modality!r}; choose from {MODALITIES}")
    stored = cached_arrays(f"mni_rendered_{modality}_{float(spacing_mm):g}mm",
                           lambda: _render_template(modality, float(spacing_mm)),
                           *_cache_sources())
    affine = stored["affine"]
    return (Volume(stored["image"], affine, "MNI152 template"),
            Volume(stored["head"], affine, "MNI152 head mask"),
            Volume(stored["brain"], affine, "MNI152 brain mask"))


def _template_brain() -> tuple[np.ndarray, np.ndarray]:
    """The template's brain mask (uint8) and its affine, cached on disk: carrying it is
    all :func:`brain_mask` needs of the template, whose full load costs a second or two."""
    from .atlas.template import cached_arrays, load_template

    def build() -> dict[str, np.ndarray]:
        template = load_template()
        return {"brain": template.brain.astype(np.uint8), "affine": template.affine}

    stored = cached_arrays("mni_brain", build, *_cache_sources())
    return stored["brain"], stored["affine"]


# -------------------------------------------------------------------------- the result
def _apply(matrix: np.ndarray, points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


@dataclass
class MNIRegistration:
    """An affine map between a subject's RAS world (mm) and MNI152 space (mm).

    ``subject_ras_to_mni``: 4x4, ``mni = M @ [r, a, s, 1]``. ``metric``: the final Mattes
    mutual-information value (negative; lower is better). ``grid_affine`` and
    ``grid_shape``: the registered image's grid, the default target of
    :meth:`carry_mni_map`. ``info``: modality, seconds, stage metrics.
    """

    subject_ras_to_mni: np.ndarray
    metric: float
    grid_affine: np.ndarray
    grid_shape: tuple[int, int, int]
    source: str | None = None
    info: dict = field(default_factory=dict)

    def to_mni(self, points_ras) -> np.ndarray:
        """Subject RAS points (mm, ``(N, 3)`` or ``(3,)``) -> MNI mm."""
        return _apply(self.subject_ras_to_mni, points_ras)

    def from_mni(self, points_mni) -> np.ndarray:
        """MNI points (mm) -> subject RAS mm."""
        return _apply(np.linalg.inv(self.subject_ras_to_mni), points_mni)

    def carry_mni_map(self, mni_map: np.ndarray, mni_affine: np.ndarray, order: int = 0,
                      grid: Volume | None = None) -> Volume:
        """Sample a map defined on an MNI grid (``[i, j, k]``, voxel-to-MNI-mm ``mni_affine``)
        at the voxels of the subject's ``grid`` (default: the registered image's grid).

        ``order=0`` (nearest, dtype kept) for label maps such as the ARWMC atlas; ``order=1``
        (trilinear, float32) for probability maps, e.g. the brain mask then ``> 0.5``.
        Outside the MNI grid: 0.
        """
        affine = self.grid_affine if grid is None else grid.affine
        shape = self.grid_shape if grid is None else grid.shape[:3]
        m = np.linalg.inv(np.asarray(mni_affine, np.float64)) @ self.subject_ras_to_mni @ affine
        source = np.asarray(mni_map)
        source = source.astype(np.float32 if order else np.uint8) if order or source.dtype == bool else source
        out = ndimage.affine_transform(source, m[:3, :3], offset=m[:3, 3], output_shape=tuple(shape),
                                       order=order, mode="constant", cval=0, prefilter=False)
        return Volume(out, np.asarray(affine, np.float64).copy(), self.source,
                      {"space": "subject RAS", "carried_from": "MNI"})


# ------------------------------------------------------------------------ registration
def _method(sitk, config: RegistrationConfig, mask, levels: slice):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(config.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(config.sampling_fraction, config.seed)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors)[levels])
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_mm)[levels])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _run(sitk, config, fixed, moving, mask, transform, levels, source) -> float:
    method = _method(sitk, config, mask, levels)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=config.iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise RegistrationError(f"registration to the MNI template failed "
                                f"({str(exc).strip().splitlines()[-1][:120]})", _FIX, source) from exc
    return float(method.GetMetricValue())


def _working_volume(volume: Volume, data: np.ndarray, spacing_mm: float) -> Volume:
    """``data`` on ``volume``'s axes and field of view with voxels no smaller than
    ``spacing_mm`` (mm), anti-aliased by a Gaussian; keeps the pyramid cheap for 1 mm scans."""
    new = np.maximum(volume.spacing, spacing_mm)
    if np.allclose(new, volume.spacing):
        return volume.with_array(data)
    sigma = np.sqrt(new ** 2 - volume.spacing ** 2) / (2.3548 * volume.spacing)  # voxels
    return volume.with_array(ndimage.gaussian_filter(data, sigma)).resample_to_spacing(new)


def register_to_mni(volume: Volume, modality: str,
                    config: RegistrationConfig = RegistrationConfig()) -> MNIRegistration:
    """Affine registration of ``volume`` (any orientation, oblique or thick-sliced) to MNI.
    ``modality``: the template contrast to use, one of :data:`MODALITIES`.

    Stages, all maximising Mattes mutual information between the template rendered for
    ``modality`` (:func:`template_image`, fixed) and the subject image (moving, trilinear):

    1. centres of mass (intensity moments) aligned;
    2. similarity (rotation, translation, one scale) from 6 starts (template scale 0.87 or
       1, shifted 0 or +-20 mm superiorly), each optimised on the coarsest level sampling
       the whole head (a non-skull-stripped scan has skull and scalp), then on the middle
       level sampling only the template brain (dilated 4 mm), where it is judged: false
       optima that match the head outline (e.g. over face and neck) fit the brain badly;
    3. affine (12 parameters) from the best start, all levels (4, 2, 1), sampled in the
       template brain (``refine_in_brain``) so that scalp, face and neck no longer pull.

    Raises :class:`RegistrationError` when SimpleITK fails, the metric is not finite, or the
    result is implausible: determinant of the linear part outside [0.5, 2] or a singular
    value outside [0.6, 1.7], or the template brain centre mapped outside the image.

    Runs SimpleITK on one thread per optimisation (the setting is restored afterwards):
    with several, the metric's partial sums arrive in another order each run, and the same
    image registered slightly differently from run to run (WMH volumes changed in the 4th
    digit). The starts of stage 2 run side by side instead, one per core (as many as
    SimpleITK's default thread count), which gives the same result.
    """
    sitk = _sitk()
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _register(sitk, volume, modality, config, workers=max(int(threads), 1))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _register(sitk, volume: Volume, modality: str, config: RegistrationConfig,
              workers: int = 1) -> MNIRegistration:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {MODALITIES}")
    started = time.perf_counter()
    image, head, brain = template_image(modality, float(config.working_spacing_mm))
    fixed = _to_sitk(image, np.float32)
    head_mask, brain_mask_image = _to_sitk(head), _to_sitk(brain)
    data = finite_float32(volume.array)
    if modality == "CT":  # keep soft tissue and bone apart without letting air dominate
        data = np.clip(data, -200.0, 1500.0)
    moving = _to_sitk(_working_volume(volume, data, float(config.working_spacing_mm)))
    stages = {}
    # The transform maps fixed (MNI, LPS) points to moving (subject, LPS) points.
    try:
        euler = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                  sitk.CenteredTransformInitializerFilter.MOMENTS)
    except RuntimeError as exc:  # e.g. an image of zeros has no centre of mass
        raise RegistrationError("the image has no signal to register to the MNI template",
                                _FIX, volume.source) from exc
    euler = sitk.Euler3DTransform(euler)  # centres of mass aligned, no rotation
    starts = [sitk.Similarity3DTransform(scale, (0.0, 0.0, 1.0), 0.0, np.add(
        euler.GetTranslation(), (0.0, 0.0, shift)).tolist(), euler.GetCenter())
        for scale in START_SCALES for shift in START_SHIFTS_MM]

    def optimise(start):
        try:
            _run(sitk, config, fixed, moving, head_mask, start, slice(0, 1), volume.source)
            # Judged inside the brain, on the middle level: false optima match the head only.
            return _run(sitk, config, fixed, moving, brain_mask_image, start, slice(1, 2), volume.source)
        except RegistrationError as exc:  # this start left the image; others may not
            return exc

    # The starts are independent and each runs ITK on one thread without holding the GIL,
    # so they run side by side on the cores (same results, chosen in the same order).
    with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
        outcomes = list(pool.map(optimise, starts))
    best, error = None, None  # several starts: a whole head has false optima
    for start, value in zip(starts, outcomes):
        if isinstance(value, RegistrationError):
            error = value
            continue
        best = (value, start) if best is None or value < best[0] else best
    if best is None:
        raise error
    stages["similarity"], similarity = best
    affine = sitk.AffineTransform(similarity.GetMatrix(), similarity.GetTranslation(), similarity.GetCenter())
    mask = brain_mask_image if config.refine_in_brain else head_mask
    stages["affine"] = metric = _run(sitk, config, fixed, moving, mask, affine, slice(None), volume.source)

    info = {"modality": modality, "seconds": round(time.perf_counter() - started, 2), "stage_metrics": stages,
            "method": "SimpleITK affine, Mattes mutual information, template rendered per modality"}
    result = MNIRegistration(np.linalg.inv(_ras_matrix(affine)), metric, volume.affine.copy(),
                             tuple(volume.shape[:3]), volume.source, info)
    _check_plausible(result, volume, brain)
    return result


def _check_plausible(result: MNIRegistration, volume: Volume, brain: Volume) -> None:
    linear, problem = result.subject_ras_to_mni[:3, :3], None
    det, singular = float(np.linalg.det(linear)), np.linalg.svd(linear, compute_uv=False)
    if not np.isfinite(result.metric) or not np.all(np.isfinite(result.subject_ras_to_mni)):
        problem = "registration to the MNI template gave no finite result"
    elif not 0.5 <= det <= 2.0 or singular.min() < 0.6 or singular.max() > 1.7:
        problem = (f"registration to the MNI template is implausible (volume scale {det:.2f}, "
                   f"axis scales {np.round(singular, 2).tolist()})")
    else:
        centre = np.argwhere(brain.array > 0).mean(axis=0)
        ijk = volume.ras_to_voxel(result.from_mni(brain.voxel_to_ras(centre)))
        if np.any(ijk < -0.5) or np.any(ijk > np.asarray(volume.shape[:3]) - 0.5):
            problem = "registration to the MNI template put the brain outside the image"
    if problem:
        raise RegistrationError(problem, _FIX, volume.source)


# -------------------------------------------------------------------------- brain mask
#: Lengths (mm) of the rule stated in :func:`brain_mask`.
CORE_DEPTH_MM, BAND_MM, GROW_MM, OPENING_MM, CLOSING_MM = 8.0, 5.0, 3.0, 2.0, 2.0


def _brain_range(values: np.ndarray, modality: str) -> tuple[float, float]:
    """(low, high) intensity of brain tissue from the core's voxels (see :func:`brain_mask`)."""
    median = float(np.median(values))
    top = float(np.percentile(values, 99.5))
    if modality == "CT":
        return median - 12.0, top + 10.0
    return 0.5 * median, top + 0.1 * (top - median)


def _deeper_than(mask: np.ndarray, depths_mm: tuple[float, ...], spacing) -> list[np.ndarray]:
    """For each depth (mm), the voxels of ``mask`` farther than it from every voxel outside
    it in the array (the array's border is not outside: a brain cut by the field of view
    stays deep at the cut). The same voxels as thresholding a Euclidean distance map,
    faster (0.3 s against 1.9 s for both depths of a 160 x 190 x 165 mask): erosions by
    balls, with the array padded once by mask voxels."""
    reach = np.ceil(max(depths_mm) / np.asarray(spacing, float)).astype(int) + 1
    pad = [(r, r) for r in reach]
    inner = tuple(slice(a, -b) for a, b in pad)
    padded = np.pad(mask, pad, constant_values=True)
    return [erode_mm(padded, depth, spacing)[inner] for depth in depths_mm]


def brain_mask(volume: Volume, registration: MNIRegistration, modality: str) -> Volume:
    """Brain mask (uint8 0/1, on ``volume``'s grid): the MNI template's brain mask carried
    by ``registration``, refined by the image's intensities. It is a registered-template
    mask with an intensity correction at its edge, not a learned skull-stripper: it is as
    good as the affine registration, typically within a few mm of the true brain surface.

    Rule (distances in mm, on the image grid):

    1. *carried*: the template brain (cerebrum, cerebellum, brainstem) sampled
       trilinearly at each voxel, > 0.5;
    2. *brain range* ``[low, high]`` from the voxels deeper than 8 mm inside *carried*:
       MR ``low`` = half the median, ``high`` = 99.5th percentile + 10 % of its distance
       from the median; CT ``low`` = median - 12 HU, ``high`` = 99.5th percentile + 10 HU;
    3. kept: every *carried* voxel deeper than 5 mm; within 5 mm inside the boundary, the
       voxels in the brain range; within 3 mm outside it, the voxels in the brain range
       that survive an opening of 2 mm radius (which cuts thin bridges to the scalp) and
       are connected (6-neighbours) to what is kept;
    4. a closing of 2 mm radius (sulcal CSF enclosed by tissue), holes filled, and the
       largest connected component.
    """
    template_brain, template_affine = _template_brain()
    carried = registration.carry_mni_map(template_brain, template_affine, order=1, grid=volume).array > 0.5
    spacing, full = volume.spacing, np.zeros(carried.shape, bool)
    if carried.sum() < 100:
        raise RegistrationError("the registered brain lies outside this image", _FIX, volume.source)
    # Work in the box around the carried mask plus the band (the morphology is costly).
    margin = np.ceil((BAND_MM + CLOSING_MM + 2.0) / spacing).astype(int)
    box = bounding_box(carried, margin)
    carried = carried[box]
    data = finite_float32(volume.array[box])
    core, deep = _deeper_than(carried, (CORE_DEPTH_MM, BAND_MM), spacing)
    core = core if np.sum(core) > 50 else carried
    low, high = _brain_range(data[core], modality)
    tissue = (data >= low) & (data <= high)
    keep = deep | (carried & tissue)
    grow = (~carried) & dilate_mm(carried, GROW_MM, spacing) & tissue
    opened = dilate_mm(erode_mm(keep | grow, OPENING_MM, spacing), OPENING_MM, spacing)
    labels, _ = ndimage.label(keep | (grow & opened))
    connected = np.isin(labels, np.unique(labels[keep & (labels > 0)]))
    mask = keep | (grow & connected)
    mask = ndimage.binary_fill_holes(  # closing, then holes filled
        erode_mm(dilate_mm(mask, CLOSING_MM, spacing), CLOSING_MM, spacing))
    labels, count = ndimage.label(mask)
    full[box] = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1) if count > 1 else mask
    out = volume.with_array(full.astype(np.uint8))
    out.meta.update({"label": "brain", "method": "registered MNI template mask refined by intensity",
                     "brain_range": (float(low), float(high))})
    return out


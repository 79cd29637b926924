"""Realism of the synthetic cohort, measured: tissue contrasts and T1 histograms.

Two tools, used by ``scripts/make_synth_figures.py``, ``docs/synthetic_cohort.md`` and
``Testing/test_synth_realism.py``:

- :func:`histogram_peaks`: where the CSF, grey- and white-matter intensity classes of a
  T1-weighted brain lie, normalised to white matter. Method: a three-component Gaussian
  mixture fitted by expectation-maximisation to the histogram of the brain voxels (512
  bins between the 0.1 and 99.9 percentiles), initialised at the 10th, 45th and 80th
  percentiles; the component means, sorted, are the CSF, GM and WM peaks. numpy only.
- :func:`tissue_contrast_table`: tissue medians of every acquired image of a synthetic
  subject, measured inside its ground-truth tissue maps, and the lesion/normal ratios,
  next to :data:`LITERATURE_RANGES`.

The brain mask of the real T1 comes from :func:`lesion_core.registration.brain_mask`
(see ``scripts/measure_real_t1.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..atlas.tissues import tissue_mixture
from ..volume import Volume

#: Typical literature ranges that the measured values are compared with; the sources are
#: given in ``docs/synthetic_cohort.md``. MR values are ratios, CT values Hounsfield units.
LITERATURE_RANGES: dict[str, tuple[float, float]] = {
    "CT gm_hu": (35.0, 45.0),
    "CT wm_hu": (20.0, 30.0),
    "CT csf_hu": (0.0, 15.0),
    "CT blood_hu": (50.0, 90.0),
    "CT skull_hu": (700.0, 2000.0),
    "FLAIR wmh/nawm": (1.3, 2.0),
    "FLAIR gm/wm": (1.05, 1.35),
    "T1 wm/gm": (1.2, 1.6),
    "SWI cmb/brain": (0.0, 0.6),
}

#: Label maps that mark lesions or mimics (excluded from the normal-tissue masks).
LESION_LABELS = ("wmh", "cmb", "mimics", "ich")
#: Tissue fraction above which a voxel counts as pure tissue in :func:`tissue_contrast_table`.
PURE_FRACTION = 0.9


# --------------------------------------------------------------------------- histograms
def fit_gaussian_mixture(values: np.ndarray, n_components: int = 3, bins: int = 512,
                         max_iter: int = 500, tol: float = 1e-7,
                         init_percentiles: tuple[float, ...] = (10, 45, 80)):
    """1D Gaussian mixture by EM on a histogram; returns ``(weights, means, sds)`` sorted by mean."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 10 * n_components:
        raise ValueError(f"too few values ({values.size}) to fit {n_components} components")
    lo, hi = np.percentile(values, [0.1, 99.9])
    if hi <= lo:
        raise ValueError("the values are constant; no mixture can be fitted")
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    x = 0.5 * (edges[:-1] + edges[1:])
    w_bins = counts / counts.sum()
    if len(init_percentiles) != n_components:
        init_percentiles = tuple(np.linspace(10, 90, n_components))
    means = np.percentile(values, init_percentiles).astype(np.float64)
    sds = np.full(n_components, (hi - lo) / (4.0 * n_components))
    weights = np.full(n_components, 1.0 / n_components)
    floor = (edges[1] - edges[0])
    previous = -np.inf
    for _ in range(max_iter):
        dens = weights[:, None] * np.exp(-0.5 * ((x[None, :] - means[:, None]) / sds[:, None]) ** 2) \
            / (sds[:, None] * np.sqrt(2 * np.pi))
        total = np.maximum(dens.sum(0), 1e-300)
        resp = dens / total * w_bins[None, :]
        mass = np.maximum(resp.sum(1), 1e-12)
        weights = mass / mass.sum()
        means = (resp * x[None, :]).sum(1) / mass
        sds = np.sqrt(np.maximum((resp * (x[None, :] - means[:, None]) ** 2).sum(1) / mass, floor ** 2))
        loglik = float((w_bins * np.log(total)).sum())
        if abs(loglik - previous) < tol:
            break
        previous = loglik
    order = np.argsort(means)
    return weights[order], means[order], sds[order]


def histogram_peaks(volume, brain_mask: np.ndarray,
                    names: tuple[str, str, str] = ("csf", "gm", "wm"), reference: str = "wm") -> dict:
    """CSF, GM and WM peak positions of the brain-voxel histogram of a T1-weighted image.

    ``volume``: a :class:`~lesion_core.volume.Volume` or array; ``brain_mask``: boolean
    array of the same shape. ``names`` label the components in increasing intensity (the
    default suits T1). Returns ``{"peaks": raw means, "sds": ..., "weights": ...,
    "normalised": peaks / the reference peak, "gm_wm": ..., "csf_wm": ..., "method": ...}``.
    """
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    mask = np.asarray(brain_mask, bool)
    if mask.shape != array.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {array.shape}")
    weights, means, sds = fit_gaussian_mixture(array[mask], n_components=len(names))
    peaks = dict(zip(names, means.tolist()))
    ref = peaks[reference]
    normalised = {k: v / ref for k, v in peaks.items()}
    out = {"peaks": peaks, "sds": dict(zip(names, sds.tolist())),
           "weights": dict(zip(names, weights.tolist())), "normalised": normalised,
           "method": "3-component Gaussian mixture (EM on a 512-bin histogram of brain voxels)"}
    if {"gm", "wm", "csf"} <= set(names):
        out["gm_wm"] = normalised["gm"] / normalised["wm"]
        out["csf_wm"] = normalised["csf"] / normalised["wm"]
    return out


def normalised_histogram(volume, brain_mask: np.ndarray, wm_peak: float, bins: int = 100,
                         upper: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
    """Density of brain-voxel intensities / ``wm_peak`` on ``[0, upper]``: ``(centres, density)``."""
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    values = array[np.asarray(brain_mask, bool)] / wm_peak
    density, edges = np.histogram(values, bins=bins, range=(0, upper), density=True)
    return 0.5 * (edges[:-1] + edges[1:]), density


# ------------------------------------------------------------------ synthetic subjects
def _on_grid(anatomy_grid: Volume, array: np.ndarray, target: Volume) -> np.ndarray:
    return anatomy_grid.with_array(array.astype(np.float32)).resample_to_grid(
        target.affine, target.shape, order=1, fill=0).array


def synthetic_brain_mask(subject, name: str) -> np.ndarray:
    """The subject's ground-truth brain mask (template brain, warped) on image ``name``'s grid."""
    anatomy = subject.anatomy
    return _on_grid(anatomy.grid, anatomy.brain, subject.images[name]) > 0.5


def pure_tissue_masks(subject, name: str) -> dict[str, np.ndarray]:
    """Voxels of image ``name`` whose ground-truth tissue fraction exceeds :data:`PURE_FRACTION`.

    Fractions are those of :func:`~lesion_core.atlas.tissues.tissue_mixture` (``cortex`` =
    grey matter outside the deep nuclei), carried to the acquired grid by trilinear
    interpolation, so that voxels straddling tissues on the acquired grid drop out too.
    """
    anatomy = subject.anatomy
    parts = tissue_mixture(anatomy.tissues)
    return {t: _on_grid(anatomy.grid, parts[t], subject.images[name]) > PURE_FRACTION
            for t in ("wm", "cortex", "deep_gm", "csf", "ventricles", "skull")}


def _median(image: np.ndarray, mask: np.ndarray) -> float | None:
    return float(np.median(image[mask])) if np.any(mask) else None


def tissue_contrast_table(subject) -> dict:
    """Measured tissue medians and lesion/normal ratios of every image of ``subject``.

    Returns ``{image name: {"medians": {tissue: value}, "ratios": {key: value}}}``. MR
    medians are divided by the white-matter median (the stored scale is arbitrary); CT
    medians are in HU; CT CSF is measured in the ventricles (sulcal CSF lies within a
    slice thickness of bone, whose partial volume raises it). Lesion and mimic voxels
    (:data:`LESION_LABELS`) are excluded from the tissue masks. Lesions: WMH
    (label ``"wmh"`` > 0) against normal-appearing WM at least 3 voxels away; CMB
    (label ``"cmb"`` > 0) against the median of pure grey and white matter; ICH blood
    (label ``"ich"`` 1-5) in HU.
    """
    table = {}
    for name, image in subject.images.items():
        data = np.asarray(image.array, dtype=np.float32)
        labels = subject.labels.get(name, {})
        lesion = np.zeros(data.shape, bool)
        for key in LESION_LABELS:
            if key in labels:
                lesion |= np.asarray(labels[key].array) > 0
        masks = {t: m & ~lesion for t, m in pure_tissue_masks(subject, name).items()}
        medians = {t: _median(data, m) for t, m in masks.items()}
        medians["gm"] = _median(data, masks["cortex"] | masks["deep_gm"])
        is_ct = image.meta.get("modality") == "CT"
        ratios: dict[str, float | None] = {}
        if is_ct:
            ratios.update({"gm_hu": medians["cortex"], "wm_hu": medians["wm"],
                           "csf_hu": medians["ventricles"],
                           "skull_hu": medians["skull"]})
            if "ich" in labels:
                ich = np.asarray(labels["ich"].array)
                ratios["blood_hu"] = _median(data, (ich >= 1) & (ich <= 5))
        else:
            wm = medians["wm"] or 1.0
            medians = {t: (v / wm if v is not None else None) for t, v in medians.items()}
            ratios["gm/wm"] = medians["cortex"]
            ratios["wm/gm"] = 1.0 / medians["cortex"] if medians["cortex"] else None
            ratios["csf/wm"] = medians["ventricles"]
            if "wmh" in labels:
                wmh = np.asarray(labels["wmh"].array) > 0
                near = ndimage.binary_dilation(wmh, iterations=3)
                nawm = _median(data, masks["wm"] & ~near)
                core = _median(data, wmh)
                ratios["wmh/nawm"] = core / nawm if core is not None and nawm else None
            if "cmb" in labels:
                cmb = np.asarray(labels["cmb"].array) > 0
                brain = _median(data, masks["wm"] | masks["cortex"])
                core = _median(data, cmb)
                ratios["cmb/brain"] = core / brain if core is not None and brain else None
        table[name] = {"medians": medians, "ratios": ratios, "modality": "CT" if is_ct else "MR"}
    return table

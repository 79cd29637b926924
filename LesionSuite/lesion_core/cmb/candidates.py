"""Stage 1 of the CMB detector: input normalisation and candidate extraction.

Stage 1 is a segmentation network run at a deliberately low threshold so that almost no
microbleed is missed; what it finds are *candidates*, which stage 2 (a patch classifier)
and stage 3 (the clean-up rules of :mod:`.cleanup`) then thin out.

* :func:`preprocess_swi` puts an SWI / T2*-GRE magnitude image into the convention the
  network was trained on (the SHIVA-CMB one): RAS axes, 1 mm isotropic voxels, intensities
  divided by the 99th percentile inside the brain and clipped to ``[0, 1.5]``.
* :func:`extract_candidates` turns the network's probability map into numbered
  components with their peak probability, centre (RAS mm) and size.

Arrays are indexed ``[i, j, k]`` with a 4x4 voxel-to-RAS affine (:class:`~lesion_core.volume.Volume`);
lengths are in mm, volumes in mm^3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..baselines.masks import mr_brain_mask, structure
from ..errors import InvalidImageError
from ..volume import Volume
from .cleanup import component_shape

#: Stage 1 threshold used to collect stage 2 examples and to calibrate: every plausible
#: candidate.
EXAMPLE_THRESHOLD = 0.1

#: Intensities above this many 99th percentiles are clipped (veins, fat and flow artefacts
#: are brighter than brain; the network was trained on this range).
CLIP_MAX = 1.5


@dataclass(frozen=True)
class CandidateConfig:
    """Settings of stage 1.

    Attributes:
        spacing_mm: isotropic voxel size (mm) of the network's input grid.
        normalisation_percentile: intensity percentile inside the brain mapped to 1.
        threshold: probability at or above which a voxel is a candidate voxel. Low on
            purpose (high sensitivity): false positives are stage 2's job.
        min_voxels: components with fewer voxels are dropped.
    """

    spacing_mm: float = 1.0
    normalisation_percentile: float = 99.0
    threshold: float = 0.3
    min_voxels: int = 1


@dataclass(frozen=True)
class Candidate:
    """One candidate component of the probability map.

    Attributes:
        id: label value of the component in the label volume (1..n, by ``probability``
            descending).
        probability: maximum probability inside the component.
        mean_probability: mean probability inside the component.
        centre_ras: probability-weighted centroid, RAS mm.
        volume_mm3: voxel count times the voxel volume (mm^3).
        diameter_mm: diameter of the sphere of the same volume (mm).
        voxels: number of voxels.
    """

    id: int
    probability: float
    mean_probability: float
    centre_ras: tuple[float, float, float]
    volume_mm3: float
    diameter_mm: float
    voxels: int


def ras_grid(image: Volume, spacing_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of an axis-aligned RAS grid of ``spacing_mm`` voxels covering ``image``.

    The grid spans the outer voxel edges of ``image`` (its bounding box in RAS for an
    oblique image), so for a non-oblique image it is the grid
    ``image.to_ras().resample_to_spacing(spacing_mm)`` would use.
    """
    shape = np.asarray(image.shape[:3])
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape], indexing="ij"))
    ras = image.voxel_to_ras(corners.reshape(3, -1).T)
    low, high = ras.min(axis=0), ras.max(axis=0)
    out_shape = np.maximum(np.round((high - low) / spacing_mm).astype(int), 1)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    # First voxel centre half a voxel inside the low edge.
    affine[:3, 3] = low + spacing_mm / 2.0
    return affine, tuple(int(n) for n in out_shape)


def preprocess_swi(image: Volume, brain: Volume | None = None,
                   config: CandidateConfig = CandidateConfig()) -> Volume:
    """SWI / T2*-GRE magnitude image as the stage 1 network expects it.

    The image is resampled (trilinear, 0 outside the field of view) to an axis-aligned RAS
    grid of ``config.spacing_mm`` (1 mm) voxels, whatever its orientation, obliquity or
    voxel size; intensities are divided by the ``config.normalisation_percentile`` (99th)
    percentile inside the brain and clipped to ``[0, 1.5]``. Microbleeds are *dark* spots
    (susceptibility signal loss); the network is trained on this normalised magnitude, not
    an inverted image, so nothing is inverted here.

    Args:
        image: the SWI or T2* magnitude, any grid.
        brain: brain mask (non-zero = brain) on any grid; resampled with nearest
            neighbour. When None, :func:`~lesion_core.baselines.masks.mr_brain_mask` of
            ``image`` on its own grid.

    Returns:
        float32 volume on the RAS grid, values in ``[0, 1.5]``.

    Raises:
        InvalidImageError: the brain mask is empty on the new grid, or the brain's
            percentile is not positive (a blank image).
    """
    if brain is None:
        brain = image.with_array(mr_brain_mask(image.array, image.spacing))
    return _normalised(image, brain, config)[0]


def _normalised(image: Volume, brain: Volume, config: CandidateConfig
                ) -> tuple[Volume, np.ndarray]:
    """:func:`preprocess_swi` with a given ``brain``, and that mask (bool) on the new grid."""
    affine, shape = ras_grid(image, config.spacing_mm)
    resampled = image.resample_to_grid(affine, shape, order=1, fill=0.0)
    # uint8: nearest-neighbour resampling keeps label dtypes, and bool is not supported.
    brain_mask = Volume((np.asarray(brain.array) > 0).astype(np.uint8), brain.affine)
    inside = brain_mask.resample_to_grid(affine, shape, order=0, fill=0).array > 0
    if not inside.any():
        raise InvalidImageError("the brain mask does not overlap the SWI image")
    values = resampled.array[inside]
    scale = float(np.percentile(values[np.isfinite(values)], config.normalisation_percentile))
    if not np.isfinite(scale) or scale <= 0:
        raise InvalidImageError(f"SWI brain intensity percentile is {scale}: blank image?")
    # In place: the same values as clip(nan_to_num(x / scale)) without three more copies.
    array = np.divide(resampled.array, scale, dtype=np.float32)
    np.clip(np.nan_to_num(array, copy=False), 0.0, CLIP_MAX, out=array)
    return Volume(array, affine, image.source,
                  {**image.meta, "normalisation_scale": scale}), inside


def normalised_input(image: Volume, config: CandidateConfig = CandidateConfig()
                     ) -> tuple[Volume, np.ndarray]:
    """:func:`preprocess_swi` with the intensity brain mask of ``image``
    (:func:`~lesion_core.baselines.masks.mr_brain_mask`), and that mask (bool) on the new
    grid: the one way training, prediction and fine-tuning prepare an image."""
    brain = image.with_array(mr_brain_mask(image.array, image.spacing))
    return _normalised(image, brain, config)


def extract_candidates(probability: Volume, config: CandidateConfig = CandidateConfig()
                       ) -> tuple[Volume, list[Candidate]]:
    """Threshold the stage 1 probability map into numbered candidates.

    Voxels with probability ``>= config.threshold`` are grouped into 26-connected
    components (a bleed cut obliquely touches only by corners); components smaller than
    ``config.min_voxels`` are dropped. Candidates are sorted by peak probability
    (descending; ties by size, then position) and numbered 1..n in that order.

    Returns:
        ``(labels, candidates)``: ``labels`` an int32 volume on the probability's grid,
        0 = background and ``candidate.id`` on each candidate's voxels.
    """
    prob = np.nan_to_num(np.asarray(probability.array, dtype=np.float32))
    components, n = ndimage.label(prob >= config.threshold, structure=structure(26))
    labels = np.zeros(prob.shape, dtype=np.int32)
    if n == 0:
        return probability.with_array(labels), []
    # Per-component figures inside each bounding box: the label-wide ndimage reductions
    # sort the whole volume, which costs seconds on a 1 mm head.
    facts = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        inside = components[box] == index
        count = int(inside.sum())
        if count < config.min_voxels:
            continue
        values = prob[box][inside].astype(np.float64)
        # The weighted centroid follows the network's confidence inside a blurry component.
        local = np.argwhere(inside) + [s.start for s in box]
        centre = (local * values[:, None]).sum(axis=0) / values.sum()
        facts.append((index, float(values.max()), float(values.mean()), count, centre, box, inside))
    facts.sort(key=lambda f: (-f[1], -f[3], f[0]))
    candidates = []
    for new_id, (index, peak, mean, count, centre, box, inside) in enumerate(facts, start=1):
        labels[box][inside] = new_id
        shape = component_shape(inside, probability.spacing)
        candidates.append(Candidate(
            id=new_id, probability=peak, mean_probability=mean,
            centre_ras=tuple(float(c) for c in probability.voxel_to_ras(centre)),
            volume_mm3=shape.volume_mm3, diameter_mm=shape.diameter_mm, voxels=shape.voxels))
    return probability.with_array(labels, kind="cmb_candidates"), candidates

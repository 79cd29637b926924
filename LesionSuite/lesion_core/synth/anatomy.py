"""One synthetic subject's anatomy: the MNI template warped by a known random transform.

The subject lives on an RAS grid of the chosen voxel size. Each subject voxel centre
``x`` (subject RAS, mm) has a known MNI position

    ``mni(x) = ventricle_pull(A @ x + u(x))``

with ``A`` a random similarity-plus-scaling affine, ``u`` a smooth random displacement
(elastic, a few mm) and ``ventricle_pull`` a radial contraction about the ventricles that
enlarges them with age (atrophy). Tissue maps are sampled ("pulled") from the template at
``mni(x)``; the dense map ``mni(x)`` is kept with the subject, so anything defined in MNI
space (e.g. the ARWMC region atlas) can be carried to the subject exactly and a
registration can be scored against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..volume import Volume
from .template import MNITemplate, load_template

#: MNI position (mm) about which the ventricles are enlarged.
VENTRICLE_CENTRE_MNI = np.array([0.0, -10.0, 12.0])


@dataclass(frozen=True)
class AnatomyConfig:
    """Random anatomy of one subject. Lengths in mm, angles in degrees."""

    spacing_mm: float = 1.0
    age_years: float | None = None        # drawn 55-90 when None
    max_rotation_deg: float = 8.0
    scale_range: tuple[float, float] = (0.92, 1.08)
    elastic_mm: float = 3.0               # RMS size of the smooth displacement
    elastic_smoothness_mm: float = 20.0   # its correlation length
    margin_mm: float = 6.0                # field of view beyond the scalp


@dataclass
class SubjectAnatomy:
    """Tissue probability maps (0-1) on the subject's RAS grid, and its map to MNI.

    ``tissues[name]`` arrays are indexed ``[i, j, k]`` like ``grid.array``;
    ``mni_coordinates`` has shape ``(I, J, K, 3)``: the MNI position (mm) of each voxel.
    """

    grid: Volume
    tissues: dict[str, np.ndarray]
    brain: np.ndarray
    mni_coordinates: np.ndarray
    age_years: float
    atrophy: float
    info: dict = field(default_factory=dict)

    def to_mni(self, ijk: np.ndarray) -> np.ndarray:
        """MNI mm of (continuous) subject voxel indices, ``(N, 3)`` -> ``(N, 3)``."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return np.stack([ndimage.map_coordinates(self.mni_coordinates[..., a], ijk.T, order=1,
                                                 mode="nearest") for a in range(3)], axis=1)

    def sample_mni_map(self, mni_map: np.ndarray, mni_affine: np.ndarray, order: int = 1) -> np.ndarray:
        """Carry a map defined on an MNI grid (e.g. an atlas, ``order=0``) to this subject."""
        inverse = np.linalg.inv(mni_affine)
        coords = self.mni_coordinates @ inverse[:3, :3].T + inverse[:3, 3]
        return ndimage.map_coordinates(mni_map, np.moveaxis(coords, -1, 0), order=order,
                                       mode="constant", cval=0)


def _smooth_field(rng: np.random.Generator, shape, spacing: float, rms_mm: float,
                  smoothness_mm: float) -> np.ndarray:
    """Random displacement ``(I, J, K, 3)`` in mm with the given RMS and correlation length.

    Gaussian noise on a coarse grid, smoothed, then interpolated linearly (cubic
    interpolation costs 5x more and the coarse field is already smooth).
    """
    step = max(int(round(smoothness_mm / (2 * spacing))), 1)
    coarse_shape = [max(n // step, 2) + 2 for n in shape]
    out = np.empty(tuple(shape) + (3,), np.float32)
    for axis in range(3):
        coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0)
        coarse *= rms_mm / max(coarse.std(), 1e-6)
        out[..., axis] = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse_shape)],
                                      order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in shape)]
    return out


def make_anatomy(seed: int, config: AnatomyConfig = AnatomyConfig(),
                 template: MNITemplate | None = None) -> SubjectAnatomy:
    """Draw one subject (reproducible from ``seed``)."""
    template = template or load_template()
    rng = np.random.default_rng(seed)
    age = float(config.age_years if config.age_years is not None else rng.uniform(55, 90))
    atrophy = float(np.clip((age - 50) / 40, 0, 1) * rng.uniform(0.15, 0.35))

    # Subject grid: the template's head bounding box (scalp) mapped into subject space.
    head = template.maps["scalp"] > 0
    rotation = Rotation.from_rotvec(rng.uniform(-1, 1, 3) * np.deg2rad(config.max_rotation_deg)
                                    / np.sqrt(3)).as_matrix()
    scales = rng.uniform(*config.scale_range, 3)
    subject_from_mni = rotation @ np.diag(scales)
    mni_from_subject = np.linalg.inv(subject_from_mni)
    idx = np.argwhere(head)
    corners = np.array([[a, b, c] for a in idx[:, 0][[0, -1]] for b in (idx[:, 1].min(), idx[:, 1].max())
                        for c in (idx[:, 2].min(), idx[:, 2].max())], float)
    mni_corners = corners @ template.affine[:3, :3].T + template.affine[:3, 3]
    subject_corners = mni_corners @ subject_from_mni.T
    lo = subject_corners.min(0) - config.margin_mm
    hi = subject_corners.max(0) + config.margin_mm
    spacing = config.spacing_mm
    shape = tuple(int(np.ceil((h - l) / spacing)) + 1 for l, h in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] *= spacing
    affine[:3, 3] = lo

    grid_ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape],
                                    indexing="ij"), -1)
    subject_ras = grid_ijk * spacing + lo.astype(np.float32)
    mni = subject_ras @ mni_from_subject.T.astype(np.float32)
    mni += _smooth_field(rng, shape, spacing, config.elastic_mm, config.elastic_smoothness_mm)
    # Atrophy: pull sampling points towards the ventricle centre (Gaussian weight, 25 mm),
    # which makes the ventricles and nearby sulci larger; monotone for atrophy < 0.4.
    offset = mni - VENTRICLE_CENTRE_MNI.astype(np.float32)
    weight = np.exp(-(offset ** 2).sum(-1, keepdims=True) / (2 * 25.0 ** 2))
    mni = VENTRICLE_CENTRE_MNI.astype(np.float32) + offset * (1 - atrophy * weight)

    inverse = np.linalg.inv(template.affine)
    coords = np.moveaxis(mni @ inverse[:3, :3].T.astype(np.float32) + inverse[:3, 3].astype(np.float32), -1, 0)
    tissues = {name: ndimage.map_coordinates(m, coords, order=1, mode="constant", cval=0).astype(np.float32)
               for name, m in template.maps.items()}
    brain = ndimage.map_coordinates(template.brain.astype(np.float32), coords, order=1) > 0.5
    grid = Volume(np.zeros(shape, np.float32), affine, meta={"space": "subject RAS"})
    return SubjectAnatomy(grid, tissues, brain, mni, age, atrophy,
                          {"seed": seed, "rotation": rotation.tolist(), "scales": scales.tolist()})

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
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..atlas.template import BRAIN_CHANNELS, HEAD_CHANNELS, MNITemplate, load_template, sampling_zone
from ..volume import Volume

_SAMPLERS: dict[int, tuple] = {}

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
        """Carry a map defined on an MNI grid (e.g. an atlas, ``order=0``) to this subject
        (outside the map: 0). Orders 0 and 1 keep ``mni_map``'s dtype for integer maps."""
        if order > 1:
            inverse = np.linalg.inv(mni_affine)
            coords = self.mni_coordinates @ inverse[:3, :3].T + inverse[:3, 3]
            return ndimage.map_coordinates(mni_map, np.moveaxis(coords, -1, 0), order=order,
                                           mode="constant", cval=0)
        grid = _sampling_grid(self.mni_coordinates, mni_affine, mni_map.shape)
        source = torch.from_numpy(np.ascontiguousarray(mni_map, dtype=np.float32))[None, None]
        out = F.grid_sample(source, grid, mode="nearest" if order == 0 else "bilinear",
                            padding_mode="zeros", align_corners=True)[0, 0].numpy()
        if np.issubdtype(mni_map.dtype, np.integer) or mni_map.dtype == bool:
            return (np.rint(out) if order else out).astype(mni_map.dtype)
        return out


def _sampling_grid(mni: np.ndarray, mni_affine: np.ndarray, shape) -> torch.Tensor:
    """``grid_sample`` grid ``(1, I, J, K, 3)`` (x = last template axis, align_corners=True)
    of MNI points ``(I, J, K, 3)`` on a template of ``shape`` whose affine is given."""
    inverse = np.linalg.inv(mni_affine)
    norm = 2.0 / np.maximum(np.asarray(shape[:3], float) - 1, 1)
    matrix = (norm[:, None] * inverse[:3, :3])[::-1]
    offset = (norm * inverse[:3, 3] - 1)[::-1]
    points = torch.from_numpy(np.ascontiguousarray(mni, dtype=np.float32)).reshape(-1, 3)
    grid = torch.addmm(torch.from_numpy(offset.astype(np.float32)), points,
                       torch.from_numpy(np.ascontiguousarray(matrix.T, dtype=np.float32)))
    return grid.reshape((1,) + mni.shape[:3] + (3,))


def _sampler(template: MNITemplate) -> tuple:
    """(brain channels, head channels, zone map) as tensors, and the scalp's bounding box
    (first and last index per axis) of ``template``; built once per template."""
    cached = _SAMPLERS.get(id(template))
    if cached is not None and cached[0] is template:
        return cached[1:]
    stack = template.stack
    if stack is None:  # a template built without load_template's stacked channels
        stack = np.stack([template.brain.astype(np.float32) if n == "brain" else template.maps[n]
                          for n in BRAIN_CHANNELS + HEAD_CHANNELS])
    zone = template.zone if template.zone is not None else sampling_zone(template.maps, template.brain)
    head = [np.flatnonzero((template.maps["scalp"] > 0).any(axis=tuple(b for b in range(3) if b != a)))
            for a in range(3)]
    tensor = torch.from_numpy(stack)[None]
    out = (tensor[:, :len(BRAIN_CHANNELS)], tensor[:, len(BRAIN_CHANNELS):],
           torch.from_numpy(zone.astype(np.float32))[None, None],
           [(int(h[0]), int(h[-1])) for h in head])
    _SAMPLERS.clear()
    _SAMPLERS[id(template)] = (template,) + out
    return out


def _sample_template(template: MNITemplate, grid: torch.Tensor) -> tuple[dict, np.ndarray]:
    """Trilinear samples of every template channel at ``grid`` (zeros outside), and the
    brain mask (sampled brain > 0.5); only voxels in the channels' zones are computed."""
    brain_stack, head_stack, zone, _ = _sampler(template)
    shape = tuple(grid.shape[1:4])
    points = grid.reshape(-1, 3)
    where = F.grid_sample(zone, grid, mode="nearest", align_corners=True).reshape(-1)
    tissues = {}
    for stack, names, select in ((brain_stack, BRAIN_CHANNELS, where > 1.5),
                                 (head_stack, HEAD_CHANNELS, where > 0.5)):
        index = torch.nonzero(select).reshape(-1)
        values = F.grid_sample(stack, points[index].reshape(1, 1, 1, -1, 3), mode="bilinear",
                               padding_mode="zeros", align_corners=True).reshape(len(names), -1)
        for name, channel in zip(names, values):
            full = torch.zeros(points.shape[0], dtype=torch.float32)
            full[index] = channel
            tissues[name] = full.reshape(shape).numpy()
    brain = tissues.pop("brain") > 0.5
    return {name: tissues[name] for name in template.maps}, brain


def _smooth_field(rng: np.random.Generator, shape, spacing: float, rms_mm: float,
                  smoothness_mm: float) -> np.ndarray:
    """Random displacement ``(I, J, K, 3)`` in mm with the given RMS and correlation length.

    Gaussian noise on a coarse grid, smoothed, then interpolated linearly (cubic
    interpolation costs 5x more and the coarse field is already smooth).
    """
    step = max(int(round(smoothness_mm / (2 * spacing))), 1)
    coarse_shape = [max(n // step, 2) + 2 for n in shape]
    coarse = np.empty([3] + coarse_shape, np.float32)
    for axis in range(3):
        channel = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0)
        coarse[axis] = channel * (rms_mm / max(channel.std(), 1e-6))
    # Trilinear, pixel edges aligned (scipy's zoom with grid_mode=True, edges clamped).
    fine = F.interpolate(torch.from_numpy(coarse)[None], size=tuple(shape), mode="trilinear",
                         align_corners=False)[0]
    return fine.permute(1, 2, 3, 0).contiguous().numpy()


def make_anatomy(seed: int, config: AnatomyConfig = AnatomyConfig(),
                 template: MNITemplate | None = None) -> SubjectAnatomy:
    """Draw one subject (reproducible from ``seed``)."""
    template = template or load_template()
    rng = np.random.default_rng(seed)
    age = float(config.age_years if config.age_years is not None else rng.uniform(55, 90))
    atrophy = float(np.clip((age - 50) / 40, 0, 1) * rng.uniform(0.15, 0.35))

    # Subject grid: the template's head bounding box (scalp) mapped into subject space.
    rotation = Rotation.from_rotvec(rng.uniform(-1, 1, 3) * np.deg2rad(config.max_rotation_deg)
                                    / np.sqrt(3)).as_matrix()
    scales = rng.uniform(*config.scale_range, 3)
    subject_from_mni = rotation @ np.diag(scales)
    mni_from_subject = np.linalg.inv(subject_from_mni)
    (lo_i, hi_i), (lo_j, hi_j), (lo_k, hi_k) = _sampler(template)[3]
    corners = np.array([[a, b, c] for a in (lo_i, hi_i) for b in (lo_j, hi_j) for c in (lo_k, hi_k)], float)
    mni_corners = corners @ template.affine[:3, :3].T + template.affine[:3, 3]
    subject_corners = mni_corners @ subject_from_mni.T
    lo = subject_corners.min(0) - config.margin_mm
    hi = subject_corners.max(0) + config.margin_mm
    spacing = config.spacing_mm
    shape = tuple(int(np.ceil((h - l) / spacing)) + 1 for l, h in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] *= spacing
    affine[:3, 3] = lo

    # mni = M @ (ijk * spacing + lo) + u, built axis by axis (no dense index grid); the
    # ventricle centre is subtracted here and added back after the atrophy pull.
    matrix = torch.from_numpy(mni_from_subject.astype(np.float32))
    centre = torch.from_numpy(VENTRICLE_CENTRE_MNI.astype(np.float32))
    axes = [torch.arange(n, dtype=torch.float32) * spacing + float(l) for n, l in zip(shape, lo)]
    offset = torch.from_numpy(_smooth_field(rng, shape, spacing, config.elastic_mm,
                                            config.elastic_smoothness_mm))
    offset += (axes[0][:, None, None, None] * matrix[:, 0] - centre)
    offset += axes[1][None, :, None, None] * matrix[:, 1]
    offset += axes[2][None, None, :, None] * matrix[:, 2]
    # Atrophy: pull sampling points towards the ventricle centre (Gaussian weight, 25 mm),
    # which makes the ventricles and nearby sulci larger; monotone for atrophy < 0.4.
    weight = torch.exp((offset * offset).sum(-1, keepdim=True) * (-1 / (2 * 25.0 ** 2)))
    offset *= 1 - atrophy * weight
    offset += centre
    mni = offset.numpy()

    tissues, brain = _sample_template(template, _sampling_grid(mni, template.affine, template.shape))
    grid = Volume(np.zeros(shape, np.float32), affine, meta={"space": "subject RAS"})
    return SubjectAnatomy(grid, tissues, brain, mni, age, atrophy,
                          {"seed": seed, "rotation": rotation.tolist(), "scales": scales.tolist()})

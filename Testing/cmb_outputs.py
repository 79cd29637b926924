"""Hand-made ``lesion-suite cmb predict`` outputs for the CMB Detector tests.

The files follow the contract of the command (see ``CMBDetectorLib.outputs``) and are
built here, without the network: a small SWI-like volume (48 x 48 x 40 voxels, oblique,
LPS-stored, 1 x 1 x 1.5 mm) with dark balls, and the candidates that a run would report
on them (kept, dropped by stage 2, dropped by the clean-up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geometry import oblique_lps_affine
from lesion_core import io as lesion_io
from lesion_core.volume import Volume

SHAPE = (48, 48, 40)


@dataclass(frozen=True)
class Spec:
    """One candidate: voxel centre, radius (voxels), probabilities, fate, MARS place."""

    voxel: tuple[int, int, int]
    radius: int
    p1: float
    p2: float | None
    dropped_by: str | None = None
    reason: str | None = None
    location: str = "lobar"
    region: str = "frontal"


SPECS = (
    Spec((12, 12, 10), 2, 0.95, 0.90),
    Spec((30, 15, 20), 2, 0.90, 0.80, location="deep", region="basal_ganglia"),
    Spec((20, 34, 12), 2, 0.70, 0.20, "stage2", "stage2_below_threshold", region="parietal"),
    Spec((36, 36, 30), 1, 0.50, 0.60, "cleanup", "elongated", region="occipital"),
    Spec((10, 38, 28), 2, 0.60, 0.70, location="infratentorial", region="cerebellum"),
)


def swi_volume(seed: int = 0) -> Volume:
    """A noisy bright head with the dark balls of :data:`SPECS` (seeded)."""
    rng = np.random.default_rng(seed)
    array = (400 + rng.normal(0, 10, SHAPE)).astype(np.float32)
    for spec in SPECS:
        array[_ball(spec)] = 60.0
    return Volume(array, oblique_lps_affine(spacing=(1.0, 1.0, 1.5)))


def _ball(spec: Spec) -> np.ndarray:
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.array(spec.voxel), axis=-1) <= spec.radius


def candidates(image: Volume, id_offset: int = 0, shift_mm=(0.0, 0.0, 0.0)) -> list[dict]:
    """The candidate entries; ``id_offset`` and ``shift_mm`` (RAS) mimic a re-run."""
    out = []
    for number, spec in enumerate(SPECS, 1):
        centre = image.voxel_to_ras(np.array(spec.voxel, float)) + np.asarray(shift_mm)
        voxels = int(_ball(spec).sum())
        volume = voxels * float(abs(np.linalg.det(image.affine[:3, :3])))
        out.append({"id": number + id_offset, "centre_ras": [float(c) for c in centre],
                    "volume_mm3": round(volume, 2),
                    "diameter_mm": round((6 * volume / np.pi) ** (1 / 3), 2),
                    "stage1_probability": spec.p1, "stage2_probability": spec.p2,
                    "kept": spec.dropped_by is None, "dropped_by": spec.dropped_by,
                    "reason": spec.reason, "location": spec.location,
                    "region": spec.region})
    return out


def write_outputs(folder: Path, image: Volume, id_offset: int = 0,
                  shift_mm=(0.0, 0.0, 0.0), image_path: str = "/data/swi.nii.gz") -> dict:
    """Write the three files of a run into ``folder``; returns the JSON written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = candidates(image, id_offset, shift_mm)
    every = np.zeros(SHAPE, np.int32)
    kept = np.zeros(SHAPE, np.int32)
    for spec, entry in zip(SPECS, entries):
        every[_ball(spec)] = entry["id"]
        if entry["kept"]:
            kept[_ball(spec)] = entry["id"]
    lesion_io.write_volume(image.with_array(kept), folder / "cmb_labels.nii.gz")
    lesion_io.write_volume(image.with_array(every), folder / "cmb_candidates_labels.nii.gz")
    data = {"model": {"name": "cmb_shiva_distilled", "version": "1.0"}, "image": image_path,
            "modality": "SWI", "count": sum(e["kept"] for e in entries),
            "thresholds": {"stage1": 0.3, "stage2": 0.5}, "candidates": entries}
    (folder / "cmb_candidates.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return data

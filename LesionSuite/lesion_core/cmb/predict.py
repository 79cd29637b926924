"""The CMB detector end to end: stage 1 candidates, stage 2 discrimination, stage 3 clean-up.

:func:`predict_cmb` runs the three stages of a :class:`~.model.CMBModel` on one SWI /
T2*-GRE magnitude image and returns every stage 1 candidate with its probability per stage,
whether it was kept, which stage dropped it and why, and its MARS location; the kept ones
also as a label map on the image's own grid (one component per microbleed, value = the
candidate's id). :func:`write_prediction` writes the files ``lesion-suite cmb predict``
promises (``cmb_labels.nii.gz``, ``cmb_candidates_labels.nii.gz``, ``cmb_candidates.json``
and ``.csv``); the Slicer module and the benchmark read the same objects.

Positions are RAS mm; volumes mm^3; locations by the MNI rules of
:func:`lesion_core.atlas.mars.classify_mni` after affine registration to the template.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..baselines.masks import bounding_box
from ..io import write_volume
from ..progress import Progress, ensure_progress
from ..validation import Modality, validate_image
from ..volume import Volume
from .candidates import extract_candidates, normalised_input
from .candidates_file import FILES
from .cleanup import judged_shape, rejection_reason
from .discriminator import predict_with_flips
from .model import CMBModel
from .patches import extract_patch
from .stage1 import stage1_probability

#: Candidates classified per forward pass of the discriminator.
_PATCH_BATCH = 64
#: Stage 2 runs in fp32 whatever ``precision`` asks: it decides each candidate at a
#: threshold, and bf16 autocast moved a student probability by 0.031 (0.33 -> 0.30, across
#: the threshold) on a synthetic case; its networks are small (0.3 s more per 40
#: candidates on 2 cores), so a reader gets the same candidates on any hardware.
STAGE2_PRECISION = "fp32"


@dataclass(frozen=True)
class CandidateResult:
    """One stage 1 candidate after all stages.

    ``dropped_by``: None (kept), ``"stage2"`` or ``"cleanup"``; ``reason``: None,
    ``"stage2_below_threshold"`` or a clean-up rule (:data:`.cleanup.REASONS`).
    ``teacher_probability`` is only filled when the teacher was asked for.
    ``location``: MARS category (lobar, deep, infratentorial; "outside" off the template
    brain; "unknown" when registration failed), ``region`` the finer name.
    """

    id: int
    centre_ras: tuple[float, float, float]
    volume_mm3: float
    diameter_mm: float
    stage1_probability: float
    stage2_probability: float
    kept: bool
    dropped_by: str | None
    reason: str | None
    location: str
    region: str
    teacher_probability: float | None = None


@dataclass
class CMBPrediction:
    """Result of :func:`predict_cmb`: ``labels`` (int32, image grid, kept CMBs),
    ``candidate_labels`` (every candidate), ``probability`` (stage 1, 1 mm RAS grid),
    ``brain_ml`` (the intensity brain mask's volume, mL) and ``out_of_distribution`` (why
    the input is not a head scan the model knows, when a result was asked for anyway;
    :mod:`lesion_core.head_check`)."""

    labels: Volume
    candidate_labels: Volume
    probability: Volume
    candidates: list[CandidateResult]
    model_id: str
    model_version: str
    sequence: str
    thresholds: dict[str, float]
    brain_ml: float | None = None
    out_of_distribution: tuple[str, ...] = ()

    @property
    def kept(self) -> list[CandidateResult]:
        return [c for c in self.candidates if c.kept]


def _template_air() -> tuple[np.ndarray, np.ndarray]:
    """The MNI template's sinus and mastoid air (uint8, the air map > 0.5) and its affine,
    cached on disk: all the air rule needs of the template, whose full load costs a
    second or two."""
    from ..atlas.template import cached_arrays, load_template

    def build() -> dict[str, np.ndarray]:
        template = load_template()
        return {"air": (template.maps["air"] > 0.5).astype(np.uint8), "affine": template.affine}

    stored = cached_arrays("mni_air", build, Path(__file__).read_text())
    return stored["air"], stored["affine"]


def _grown_box(mask: np.ndarray, spacing, margin_mm: float) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` grown by ``margin_mm`` (mm); None for an empty mask."""
    return bounding_box(mask, np.ceil(margin_mm / np.asarray(spacing)).astype(int))


def _locate(image: Volume, centres: np.ndarray, pre: Volume, inside: np.ndarray,
            reach_mm: float) -> tuple[list, list, np.ndarray | None]:
    """MARS (category, region) of each centre and the distance (mm) to sinus/mastoid air
    on ``pre``'s grid, both through an affine registration of ``image`` to MNI.
    Registration failure is not fatal: locations become "unknown" and the air rule is
    skipped.

    The air rule only asks at centres inside the brain (``inside``, on ``pre``'s grid)
    whether air lies nearer than ``reach_mm``, so the air is carried only into the brain's
    box grown by ``reach_mm`` + 2 mm, and the distance is ``inf`` outside it."""
    from ..registration import RegistrationError, register_to_mni
    from ..atlas.mars import classify_mni

    try:
        registration = register_to_mni(image, "SWI")
    except RegistrationError:
        return ["unknown"] * len(centres), [""] * len(centres), None
    box = _grown_box(inside, pre.spacing, reach_mm + 2.0)
    air_distance = None
    if box is not None:
        start = [s.start for s in box]
        affine = pre.affine.copy()
        affine[:3, 3] = pre.voxel_to_ras(start)
        grid = Volume(np.empty([s.stop - s.start for s in box], np.uint8), affine)
        air = registration.carry_mni_map(*_template_air(), 0, grid).array > 0
        air_distance = _air_distance(air, box, pre.shape, pre.spacing, reach_mm)
    if not len(centres):
        return [], [], air_distance
    category, region = classify_mni(registration.to_mni(centres))
    return [str(c) for c in category], [str(r) for r in region], air_distance


def _air_distance(air: np.ndarray, box: tuple[slice, ...], shape, spacing,
                  reach_mm: float) -> np.ndarray | None:
    """Distance (mm) to the nearest voxel of ``air`` (the crop at ``box`` of a grid of
    ``shape``), computed only in the air's bounding box grown by ``reach_mm`` + 2 mm (the
    rule looks no further); ``inf`` elsewhere. None when there is no air."""
    near = _grown_box(air, spacing, reach_mm + 2.0)
    if near is None:
        return None
    distance = np.full(shape, np.inf, np.float32)
    inner = tuple(slice(b.start + n.start, b.start + n.stop) for b, n in zip(box, near))
    distance[inner] = ndimage.distance_transform_edt(~air[near], sampling=spacing)
    return distance


def _on_image_grid(labels_1mm: Volume, keep: list[int], centres: np.ndarray, image: Volume
                   ) -> Volume:
    """Candidate labels ``keep`` resampled (nearest) to ``image``'s grid; a candidate too
    small for that grid still gets the voxel holding its centre."""
    lut = np.zeros(int(labels_1mm.array.max()) + 1, np.int32)
    lut[keep] = keep
    selected = labels_1mm.with_array(lut[labels_1mm.array])
    out = selected.resample_to_grid(image.affine, image.shape[:3], order=0, fill=0).array
    out = np.asarray(out, np.int32)
    present = set(np.flatnonzero(np.bincount(out.ravel(), minlength=1)).tolist())
    for ident in keep:
        if ident not in present:
            ijk = np.round(image.ras_to_voxel(centres[ident - 1])).astype(int)
            if np.all(ijk >= 0) and np.all(ijk < np.asarray(out.shape)):
                out[tuple(ijk)] = ident
    return image.with_array(out, kind="cmb_labels")


def _discriminate(net: torch.nn.Module, pre: Volume, centres: np.ndarray, size: int
                  ) -> np.ndarray:
    if not len(centres):
        return np.zeros(0, np.float32)
    probabilities = []
    for start in range(0, len(centres), _PATCH_BATCH):
        patches = np.stack([extract_patch(pre, c, size) for c in centres[start:start + _PATCH_BATCH]])
        probabilities.append(predict_with_flips(net, torch.from_numpy(patches)[:, None],
                                                STAGE2_PRECISION).numpy())
    return np.concatenate(probabilities)


def predict_cmb(image: Volume, model: CMBModel, sequence: str = "SWI",
                allow_other_sequence: bool = False, with_teacher: bool = False,
                locate: bool = True, progress: Progress | None = None,
                precision: str = "auto") -> CMBPrediction:
    """Detect microbleeds on ``image`` (SWI or T2*-GRE magnitude, any grid and orientation).
    Stage 1 runs on its device under ``precision`` (``auto``: bf16 autocast where the
    hardware has it, else fp32; ``fp32``; ``bf16``), stage 2 in fp32
    (:data:`STAGE2_PRECISION`).

    Raises :class:`~lesion_core.errors.InvalidImageError` for an image that is not a usable
    MR volume or of a sequence the model was not trained on (see
    :meth:`.model.CMBModel.check_sequence`).
    """
    progress = ensure_progress(progress)
    model.check_sequence(sequence, allow_other_sequence, image.source)
    image = validate_image(image, Modality.MR)
    config = model.config
    progress.update(0.05, "normalising")
    pre, inside = normalised_input(image, config.stage1.candidates)
    progress.update(0.15, "stage 1: candidate U-Net")
    probability = stage1_probability(model.stage1, pre, inside, config.stage1, precision)
    labels, candidates = extract_candidates(probability, config.stage1.candidates)
    centres = np.array([c.centre_ras for c in candidates], np.float64).reshape(-1, 3)
    progress.update(0.6, f"stage 2: {len(candidates)} candidates")
    student = _discriminate(model.student, pre, centres, config.patch_size)
    teacher = (_discriminate(model.teacher, pre, centres, config.patch_size)
               if with_teacher and model.teacher is not None else None)
    progress.update(0.7, "locating")
    categories, regions, air_distance = (
        _locate(image, centres, pre, inside, config.cleanup.min_air_distance_mm) if locate
        else (["unknown"] * len(centres), [""] * len(centres), None))
    progress.update(0.85, "stage 3: clean-up")
    results, boxes = [], ndimage.find_objects(labels.array)
    for index, candidate in enumerate(candidates):
        passed = bool(student[index] >= config.stage2_threshold)
        box = boxes[candidate.id - 1]
        shape = judged_shape(labels.array[box] == candidate.id, box, labels.spacing,
                             pre.array, config.cleanup)
        reason = rejection_reason(shape, inside, air_distance, config.cleanup, labels.spacing)
        dropped = None if passed and reason is None else ("stage2" if not passed else "cleanup")
        results.append(CandidateResult(
            candidate.id, tuple(round(v, 2) for v in candidate.centre_ras),
            round(candidate.volume_mm3, 2), round(candidate.diameter_mm, 2),
            round(candidate.probability, 4), round(float(student[index]), 4),
            dropped is None, dropped, "stage2_below_threshold" if not passed else reason,
            categories[index], regions[index],
            None if teacher is None else round(float(teacher[index]), 4)))
    keep = [r.id for r in results if r.kept]
    progress.update(1.0, f"{len(keep)} microbleeds")
    return CMBPrediction(_on_image_grid(labels, keep, centres, image),
                         _on_image_grid(labels, [r.id for r in results], centres, image),
                         probability, results, model.model_id, model.version, sequence,
                         {"stage1": config.stage1.candidates.threshold,
                          "stage2": config.stage2_threshold},
                         float(inside.sum() * pre.voxel_volume_ml))


CSV_FIELDS = ("id", "centre_r", "centre_a", "centre_s", "volume_mm3", "diameter_mm",
              "stage1_probability", "stage2_probability", "teacher_probability", "kept",
              "dropped_by", "reason", "location", "region")


def prediction_json(prediction: CMBPrediction, image_path: str | None = None) -> dict:
    """The JSON document of ``cmb_candidates.json``."""
    return {"model": {"name": prediction.model_id, "version": prediction.model_version},
            "image": image_path, "modality": prediction.sequence,
            "count": len(prediction.kept), "thresholds": prediction.thresholds,
            "brain_ml": prediction.brain_ml,
            "out_of_distribution": list(prediction.out_of_distribution),
            "candidates": [{**asdict(c), "centre_ras": list(c.centre_ras)}
                           for c in prediction.candidates]}


def write_prediction(prediction: CMBPrediction, out: str | Path,
                     image_path: str | None = None) -> dict[str, Path]:
    """Write the label maps, ``cmb_candidates.json`` and ``cmb_candidates.csv`` to ``out``."""
    from ..atomic import atomic_write_bytes

    paths = FILES.create(out)
    write_volume(prediction.labels, paths["labels"])
    write_volume(prediction.candidate_labels, paths["candidate_labels"])
    document = prediction_json(prediction, image_path)
    atomic_write_bytes(paths["json"], json.dumps(document, indent=1).encode("utf-8"))
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for c in document["candidates"]:
            r, a, s = c.pop("centre_ras")
            writer.writerow({**c, "centre_r": r, "centre_a": a, "centre_s": s})
    return paths

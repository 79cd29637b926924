"""Prediction of a WMH model on one image: atlases, network, segmentation, ratings, volumes.

Steps of :func:`predict`:

1. the image is validated as a 3D MR image (a CT is refused with the one clear error);
2. :func:`~lesion_core.wmh.atlases.subject_atlases`: affine registration to MNI
   (SimpleITK, mutual information), then the brain mask (registered template mask refined
   by intensity), the ARWMC region atlas and the deep-T1-WMH zone atlas carried onto the
   image grid; atlases given by the caller (any grid) are put on the image grid instead
   (:func:`~lesion_core.wmh.atlases.atlases_on_image`). Either way every brain voxel the
   atlases leave unlabelled (the brain mask's edge) takes the label of the nearest
   labelled voxel and labels outside the brain are 0, so each brain voxel has one
   region-side and one zone;
3. preprocessing onto the model's working grid, one whole-volume forward pass (the grid
   is small enough that no sliding window is needed), in bf16 autocast where the
   hardware has it (``precision="auto"``; the maps go back to float32 before anything
   else);
4. the map goes back to the image grid (trilinear) and is thresholded there, so the mask
   has the image's own resolution: DualTasker keeps voxels whose activation is above the
   calibrated level **and** whose FLAIR is above the calibrated brain percentile; the T1
   mode keeps voxels whose probability is above its level. The DualTasker's lesions
   grow from those voxels to lower growth levels where its calibration set them
   (:func:`~lesion_core.wmh.calibrate.segment`), and its mask keeps nothing in a
   region-side its head rates 0 (:mod:`.agreement`: the segmentation honours its own
   rating); a region-side segmented over the volume range of its level is segmented
   again with stricter FLAIR levels (:mod:`.within_levels`); the map is 0 outside the
   brain;
5. volumes (mL) per ARWMC region-side and per zone from the mask on the image grid (both
   add up to the lesion volume, as the mask lies in the brain);
   the DualTasker's ratings come from its ordinal head (per region-side: the expected
   rating and the most probable level; total = sum of levels, 0-30).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import io as lesion_io
from ..intensity import finite_float32
from ..jsonable import json_safe
from ..progress import Progress, ensure_progress
from ..atlas.arwmc import REGIONS
from ..training import autocast
from ..validation import Modality, validate_image
from ..volume import Volume
from .agreement import agreement, rating_consistent_mask
from .atlases import SubjectAtlases, atlases_on_image, subject_atlases
from .model import WMHModel
from .outputs_file import FILES, RATING_COLUMNS
from .preprocess import preprocess
from .within_levels import segment_within_levels
from .zones import zone_volumes_ml

__all__ = ["SubjectAtlases", "WMHPrediction", "predict", "subject_atlases",
           "write_prediction"]


@dataclass
class WMHPrediction:
    """The result on the input image's grid.

    Attributes:
        labels: ``uint8`` mask (1 = WMH).
        activation: ``float32`` map in [0, 1] (DualTasker activation or T1 probability),
            0 outside the brain.
        atlases: the subject's brain mask and atlases.
        ratings: expected ARWMC rating per region-side (0-3); ``None`` in the T1 mode.
        levels: most probable rating per region-side (0-3); ``None`` in the T1 mode.
        region_ml, zone_ml: lesion volume (mL) per ARWMC region-side and per zone.
        lesion_ml, brain_ml: totals (mL).
        flair_normalised: the FLAIR the DualTasker's FLAIR threshold is compared with
            (bias field divided out, brain median 1); ``None`` in the T1 mode.
        out_of_distribution: why the input is not a head scan the model knows
            (:mod:`lesion_core.head_check`), when the user asked for a result anyway;
            empty for an ordinary result.
    """

    labels: Volume
    activation: Volume
    atlases: SubjectAtlases
    ratings: dict[str, float] | None
    levels: dict[str, int] | None
    region_ml: dict[str, float]
    zone_ml: dict[str, float]
    lesion_ml: float
    brain_ml: float
    model_id: str
    model_version: str
    modality: str
    seconds: float = 0.0
    flair_normalised: Volume | None = None
    out_of_distribution: tuple[str, ...] = ()

    @property
    def total(self) -> int | None:
        """ARWMC total (0-30): the sum of the per-region levels."""
        return None if self.levels is None else int(sum(self.levels.values()))

    @property
    def agreement(self) -> float | None:
        """Fraction of region-sides whose segmented volume lies in the range of their
        predicted level (:mod:`.agreement`); ``None`` in the T1 mode."""
        return None if self.levels is None else agreement(self.levels, self.region_ml)

    def rating_rows(self) -> list[dict]:
        """One row per region-side: region, side, rating (expected), level, lesion_ml."""
        rows = []
        for name in REGIONS:
            region, side = name.rsplit("_", 1)
            rows.append({"region": region, "side": side, "key": name,
                         "rating": None if self.ratings is None else self.ratings[name],
                         "level": None if self.levels is None else self.levels[name],
                         "lesion_ml": self.region_ml[name]})
        return rows

    def summary(self) -> dict:
        """Everything but the images, as plain JSON values."""
        return json_safe({"model": self.model_id, "model_version": self.model_version,
                          "modality": self.modality, "arwmc_total": self.total,
                          "rating_segmentation_agreement": self.agreement,
                          "ratings": self.ratings, "levels": self.levels,
                          "lesion_ml": self.lesion_ml, "brain_ml": self.brain_ml,
                          "region_ml": self.region_ml, "zone_ml": self.zone_ml,
                          "seconds": self.seconds,
                          "out_of_distribution": list(self.out_of_distribution)})


def _levels(cumulative: torch.Tensor) -> list[int]:
    """Most probable rating from cumulative ``P(rating > k)`` ``[R, 3]`` (count of > 0.5)."""
    return (cumulative > 0.5).sum(dim=1).tolist()


@torch.no_grad()
def predict(image: Volume, model: WMHModel, atlases: SubjectAtlases | None = None,
            progress: Progress | None = None, precision: str = "auto") -> WMHPrediction:
    """Segment, rate and measure WMH on ``image`` (see the module notes).

    ``atlases``: give them to skip the registration (e.g. a known synthetic transform);
    on any grid (see :func:`~lesion_core.wmh.atlases.atlases_on_image`).
    ``precision``: ``auto``, ``fp32`` or ``bf16`` for the network pass
    (:func:`lesion_core.training.autocast`).
    """
    started = time.perf_counter()
    progress = ensure_progress(progress)
    image = validate_image(image, Modality.MR)
    if atlases is None:
        progress.update(0.05, "registering to MNI")
        atlases = subject_atlases(image, model.modality)
    else:
        atlases = atlases_on_image(atlases, image)
    progress.update(0.5, "preparing the image")
    config = model.config
    data = preprocess(image, atlases.brain, atlases.arwmc, config)
    progress.update(0.6, "running the network")
    device = next(model.net.parameters()).device
    x, regions = data.image[None].to(device), data.regions[None].to(device)
    ratings = levels = None
    with autocast(precision, device):
        if model.is_t1:
            working = torch.sigmoid(model.net(x).float())[0, 0]
        else:
            out = model.net(x, regions)
            working = out["activation"][0, 0]
    if not model.is_t1:
        ratings = dict(zip(REGIONS, out["expected"][0].float().cpu().tolist()))
        levels = dict(zip(REGIONS, _levels(out["cumulative"][0].float().cpu())))
    progress.update(0.85, "segmenting on the image grid")
    activation = data.to_input_grid(working.float().cpu(), order=1)
    brain = np.asarray(atlases.brain.array) > 0
    arwmc = np.asarray(atlases.arwmc.array)
    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    flair = None
    if model.is_t1:
        level = config.thresholds.activation_level
        mask = brain & (activation.array > (0.5 if level is None else level))
    else:
        bias = data.to_input_grid(data.bias, order=1).array
        flair = finite_float32(image.array) / (
            np.where(bias > 0, bias, 1.0) * data.scale)
        # the segmentation honours its own rating: no lesion where the head says level 0,
        # and stricter levels where a region-side is over its level's volume range
        allowed = rating_consistent_mask(brain, arwmc, levels)
        mask = segment_within_levels(activation.array, flair, allowed, arwmc, levels,
                                     config.thresholds, voxel_ml)
    region_ml = {name: float(np.sum(mask & (arwmc == i + 1)) * voxel_ml)
                 for i, name in enumerate(REGIONS)}
    progress.update(1.0, "done")
    return WMHPrediction(
        labels=image.with_array(mask.astype(np.uint8)),
        activation=image.with_array(np.where(brain, activation.array, 0.0).astype(np.float32)),
        atlases=atlases, ratings=ratings, levels=levels, region_ml=region_ml,
        zone_ml=zone_volumes_ml(mask, atlases.zones.array, voxel_ml),
        lesion_ml=float(mask.sum() * voxel_ml), brain_ml=float(brain.sum() * voxel_ml),
        model_id=model.model_id, model_version=model.version, modality=model.modality,
        seconds=time.perf_counter() - started,
        flair_normalised=None if flair is None else image.with_array(flair.astype(np.float32)))


def write_prediction(prediction: WMHPrediction, out: str | Path, stem: str = "wmh",
                     image_path: str | None = None) -> dict[str, Path]:
    """Write the label map, activation map and ARWMC atlas (NIfTI, the input's grid), the
    ratings table (CSV, one row per region-side) and the summary (JSON, naming
    ``image_path``, the input, when given) into ``out``: the files of
    :mod:`.outputs_file`, their names starting with ``stem``."""
    paths = FILES.create(out, stem)
    lesion_io.write_volume(prediction.labels, paths["labels"])
    lesion_io.write_volume(prediction.activation, paths["activation"])
    lesion_io.write_volume(prediction.atlases.arwmc, paths["regions"])
    with paths["ratings"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, RATING_COLUMNS)
        writer.writeheader()
        for row in prediction.rating_rows():
            writer.writerow({k: ("" if row[k] is None else
                                 round(row[k], 4) if isinstance(row[k], float) else row[k])
                             for k in writer.fieldnames})
    summary = {"image": image_path, **prediction.summary()}  # as CMB and ICH name theirs
    paths["summary"].write_text(json.dumps(summary, indent=2))
    return paths

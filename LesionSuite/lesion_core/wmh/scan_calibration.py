"""Calibrate a trained DualTasker's thresholds on rated scans, at the scans' own resolution.

:func:`~lesion_core.wmh.fit.fit_dualtasker` calibrates on its training subjects' working
grid (3 mm), where partial volume dims small lesions; prediction thresholds the map and
the FLAIR on the image's own grid, where lesions are brighter and noise is higher. On
scans of another acquisition the working-grid levels over-segment (for the shipped
DualTasker 2.0 the FLAIR level came out 1.10 x the brain median on the working grid and
1.43 on 16 rated validation scans). :func:`calibrate_on_scans` runs the model as
prediction does (registration included) on rated scans and chooses the levels there, by
the same rule (:func:`~lesion_core.wmh.calibrate.ratings_explained`, with the mask
honouring the predicted levels as at prediction), growth levels included: at a scan's own
resolution a lesion's rim is fainter than its core, which one pair of levels cannot keep
without keeping faint false positives too. The per-region-side step that prediction
applies after these levels (:mod:`.within_levels`) is not part of the score. Only the
ratings are read.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from .. import io as lesion_io
from ..baselines.masks import bounding_box
from ..progress import Progress, ensure_progress
from .calibrate import CalibrationCase, calibrate_thresholds
from .data import RatingRow
from .model import WMHModel
from .predict import predict

#: Percentile grids on the pooled scan brains: a scan has 30-60 times the voxels of the
#: working grid, so the useful activation and FLAIR levels lie further up.
ACTIVATION_PERCENTILES = (90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.8)
FLAIR_PERCENTILES = (90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.8)


def scan_case(row: RatingRow, model: WMHModel) -> CalibrationCase:
    """The model's maps on ``row.image`` (its own grid) with ``row``'s ratings."""
    image = lesion_io.read_volume(row.image)
    result = predict(image, model)
    brain = np.asarray(result.atlases.brain.array) > 0
    box = bounding_box(brain) or ()  # the brain's box: the threshold search runs faster
    return CalibrationCase(
        activation=np.asarray(result.activation.array, np.float32)[box],
        flair=np.asarray(result.flair_normalised.array, np.float32)[box],
        brain=brain[box], regions=np.asarray(result.atlases.arwmc.array)[box],
        total=math.nan if row.total is None else float(row.total),
        region_ratings=row.region_tensor().numpy(),
        voxel_ml=float(np.prod(image.spacing)) / 1000.0, levels=result.levels)


def calibrate_on_scans(model: WMHModel, rows: Sequence[RatingRow],
                       progress: Progress | None = None) -> tuple[WMHModel, list[dict]]:
    """``model`` with thresholds chosen on the rated scans of ``rows`` (a new
    :class:`WMHModel`, unsaved; the input is not changed) and the score of every pair."""
    if model.is_t1:
        raise ValueError("the T1 mode has no rating to calibrate on")
    progress = ensure_progress(progress)
    cases = []
    for index, row in enumerate(rows):
        progress.update(index / max(len(rows), 1), f"predicting {row.subject}")
        cases.append(scan_case(row, model))
    progress.update(0.95, "choosing the thresholds")
    thresholds, table = calibrate_thresholds(cases, model.config.voxel_ml,
                                             ACTIVATION_PERCENTILES, FLAIR_PERCENTILES,
                                             grow=True)
    config = dataclasses.replace(model.config, thresholds=thresholds)
    progress.update(1.0, "calibrated")
    return dataclasses.replace(model, config=config), table

"""What one WMH prediction produced, whether it ran in this process or in a child process.

:class:`WMHOutputs` holds the images (on the input image's voxel grid) and the summary of
:meth:`lesion_core.wmh.predict.WMHPrediction.summary`. It is built either from a
``WMHPrediction`` (in-process run) or from the files that
:func:`lesion_core.wmh.predict.write_prediction` wrote in the child's output folder, so the
node builder of :mod:`.logic` has one input whatever way the prediction ran.

Table rows (:func:`rating_rows`): one per ARWMC region-side in
:data:`lesion_core.atlas.arwmc.REGIONS` order, then the ``total`` row (ARWMC 0-30).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lesion_core.atlas.arwmc import REGIONS
from lesion_core.volume import Volume
from lesion_core.wmh.outputs_file import FILES, read_summary
from LesionSuiteLib import predictions

TOTAL = "total"  # the ARWMC total's target name, as in lesion_core.wmh.reader_ratings
#: Columns of the ARWMC table node, in order (``rating``: expected 0-3 from the ordinal
#: head; ``level``: most probable rating; ``lesion_ml``: WMH volume in mL).
TABLE_COLUMNS = ("region", "side", "rating", "level", "lesion_ml", "reader_rating")
READER_COLUMN = "reader_rating"


def region_targets() -> tuple[str, ...]:
    """The ARWMC region-sides, in table row order."""
    return tuple(REGIONS)


def rating_targets() -> tuple[str, ...]:
    """Every target a reader can rate, in table row order: the region-sides, then total."""
    return region_targets() + (TOTAL,)


class SummaryFacts(predictions.SummaryFacts):
    """Model and rating facts read from a prediction's ``summary`` dict (see
    :meth:`lesion_core.wmh.predict.WMHPrediction.summary`); mixed into the classes that
    carry one."""

    @property
    def total(self) -> int | None:
        """ARWMC total 0-30 (sum of the per-region levels); None in the T1 mode."""
        total = self.summary.get("arwmc_total")
        return None if total is None else int(total)

    @property
    def agreement(self) -> float | None:
        """Fraction of region-sides whose segmented volume lies in the range of their
        predicted ARWMC level (:mod:`lesion_core.wmh.agreement`); None in the T1 mode or
        for a result saved before it was reported."""
        value = self.summary.get("rating_segmentation_agreement")
        return None if value is None else float(value)


@dataclass
class WMHOutputs(SummaryFacts):
    """Images on the input grid and the prediction summary.

    Attributes:
        labels: ``uint8`` WMH mask (1 = WMH).
        activation: ``float32`` map in [0, 1].
        regions: ``uint8`` ARWMC region-side atlas (value = ``REGIONS`` index + 1).
        summary: ``WMHPrediction.summary()``: model, model_version, modality, arwmc_total,
            ratings, levels, lesion_ml, brain_ml, region_ml, zone_ml, seconds and
            out_of_distribution (the findings of a result asked for with ``--force`` on
            an image the head checks refuse; empty otherwise, absent in older files).
    """

    labels: Volume
    activation: Volume
    regions: Volume
    summary: dict[str, Any]

    @classmethod
    def from_prediction(cls, prediction) -> "WMHOutputs":
        """From a :class:`lesion_core.wmh.predict.WMHPrediction`."""
        return cls(prediction.labels, prediction.activation, prediction.atlases.arwmc,
                   prediction.summary())

    @classmethod
    def read(cls, folder: str | Path, grid: Volume, stem: str | None = None) -> "WMHOutputs":
        """Read what ``write_prediction(prediction, folder, stem)`` wrote (the files of
        :data:`lesion_core.wmh.outputs_file.FILES`; the summary checked).

        The images are put back on ``grid`` (the input image) exactly: NIfTI keeps the
        affine in float32, and the outputs must share the input's geometry bit for bit.
        """
        paths = FILES.paths(folder, stem)
        images = {key: predictions.read_on_grid(paths[key], grid)
                  for key in ("labels", "activation", "regions")}
        summary = read_summary(paths["summary"])
        labels = images["labels"].with_array(images["labels"].array.astype(np.uint8))
        activation = images["activation"].with_array(
            images["activation"].array.astype(np.float32))
        regions = images["regions"].with_array(images["regions"].array.astype(np.uint8))
        return cls(labels, activation, regions, summary)

    def rating_rows(self) -> list[dict[str, Any]]:
        """Rows of the ARWMC table (see :data:`TABLE_COLUMNS`); reader ratings empty.

        ``rating`` is rounded to 0.01 and ``lesion_ml`` to 0.001 mL (a microlitre is far
        below one voxel); in the T1 mode, which predicts no rating, both rating columns
        are None.
        """
        ratings = self.summary.get("ratings")
        levels = self.summary.get("levels")
        region_ml = self.summary.get("region_ml") or {}
        rows = []
        for name in region_targets():
            region, side = name.rsplit("_", 1)
            rows.append({
                "region": region, "side": side,
                "rating": None if ratings is None else round(float(ratings[name]), 2),
                "level": None if levels is None else int(levels[name]),
                "lesion_ml": round(float(region_ml.get(name, 0.0)), 3),
                READER_COLUMN: ""})
        rows.append({
            "region": TOTAL, "side": "",
            "rating": None if ratings is None else round(float(sum(ratings.values())), 2),
            "level": self.total,
            "lesion_ml": round(float(self.summary.get("lesion_ml", 0.0)), 3),
            READER_COLUMN: ""})
        return rows

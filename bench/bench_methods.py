"""The registry of benchmarked methods: name -> :class:`Method`.

A method is a callable ``predict(case) -> Prediction`` for one kind (``"wmh"``, ``"cmb"``
or ``"ich"``), where ``case`` is a :class:`bench_cases.Case` (shaped like a
``SyntheticSubject``: ``case.images[modality]``, ``case.primary_modality``, ``case.acquisition``).
It must use only the images, never ``case.labels`` or ``case.targets`` (ground truth).

Adding a method (e.g. a learned model of a later issue)::

    from bench_methods import Prediction, register

    @register("wmh_dualtasker", kind="wmh", device="auto",
              description="WMH-DualTasker, default bundled model")
    def _wmh_dualtasker(case):
        flair = case.images["FLAIR"]
        mask, rating = my_predict(flair)           # Volume on the FLAIR grid, 0-30
        return Prediction(labels=mask, rating=rating)

Put that in this file (or in a module passed with ``--plugin module_name``, which is
imported before methods are looked up) and run
``python bench/run_benchmark.py --method wmh_dualtasker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lesion_core.volume import Volume


@dataclass
class Prediction:
    """What a method returns for one case.

    Attributes:
        labels: mask / label map on the evaluated image's grid (``case.primary_modality``);
            WMH and ICH: lesion where >= 0.5; CMB: one positive id per detection.
        points_ras_mm: CMB: detection centres (N x 3, RAS mm) for the distance rule;
            ``None`` = centroids of ``labels``' ids.
        point_scores: CMB: one confidence per detection (higher = more likely).
        scan_score: ICH: scan-level score (higher = haemorrhage more likely).
        scan_threshold: ICH: scans with ``scan_score >= scan_threshold`` are called positive.
        slice_scores: ICH: one score per slice along ``case.acquisition[modality]["slice_axis"]``.
        slice_threshold: ICH: slices with a score >= this are called positive.
        rating: WMH: predicted ARWMC total (0-30), when the method predicts one.
        extra: anything else, JSON-able (kept in the per-case results).
    """

    labels: Volume
    points_ras_mm: np.ndarray | None = None
    point_scores: np.ndarray | None = None
    scan_score: float | None = None
    scan_threshold: float = 0.5
    slice_scores: np.ndarray | None = None
    slice_threshold: float = 0.5
    rating: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A benchmarked method: ``predict`` for one ``kind``; ``device``: "cpu", "cuda" or "auto"."""

    name: str
    kind: str
    predict: Callable[..., Prediction]
    description: str
    device: str = "cpu"


#: All registered methods, by name.
METHODS: dict[str, Method] = {}


def register(name: str, kind: str, description: str, device: str = "cpu"):
    """Decorator adding ``predict`` to :data:`METHODS` under ``name``."""
    if kind not in ("wmh", "cmb", "ich"):
        raise ValueError(f"kind must be wmh, cmb or ich, got {kind!r}")

    def decorate(predict: Callable[..., Prediction]) -> Callable[..., Prediction]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = Method(name, kind, predict, description, device)
        return predict
    return decorate


# ------------------------------------------------------------------ baselines
@register("wmh_threshold", kind="wmh",
          description="FLAIR intensity threshold (bias-corrected, mean + 2.5 SD of brain), lesion_core.baselines")
def _wmh_threshold(case) -> Prediction:
    from lesion_core.baselines import segment_wmh_threshold
    mask = segment_wmh_threshold(case.images["FLAIR"])
    return Prediction(labels=mask, extra={"threshold_normalised": mask.meta.get("threshold_normalised")})


@register("cmb_log", kind="cmb",
          description="Laplacian-of-Gaussian blob detector on SWI/T2*, lesion_core.baselines")
def _cmb_log(case) -> Prediction:
    from lesion_core.baselines import detect_cmb_log
    labels, candidates = detect_cmb_log(case.images[case.primary_modality])
    points = np.array([c.centre_ras_mm for c in candidates], dtype=np.float64).reshape(-1, 3)
    return Prediction(labels=labels, points_ras_mm=points,
                      point_scores=np.array([c.score for c in candidates]))


@register("ich_threshold", kind="ich",
          description="HU window 50-90 inside the CT brain mask, lesion_core.baselines")
def _ich_threshold(case) -> Prediction:
    from lesion_core.baselines import segment_ich_threshold, slice_areas_mm2
    mask = segment_ich_threshold(case.images["CT"])
    axis = int(case.acquisition.get("CT", {}).get("slice_axis", mask.meta["axial_axis"]))
    # Scan score: predicted blood volume (mL), positive from 0.1 mL (the smallest kept
    # component); slice score: predicted area (mm^2), positive from 1 mm^2.
    return Prediction(labels=mask, scan_score=float(mask.meta["volume_ml"]), scan_threshold=0.1,
                      slice_scores=slice_areas_mm2(mask, axis), slice_threshold=1.0)

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
from functools import lru_cache
from pathlib import Path
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


# ------------------------------------------------------------------ WMH models
REFERENCE_MODELS = Path(__file__).resolve().parent / "models"


@lru_cache(maxsize=None)
def _wmh_model(folder: str | None, t1: bool):
    from lesion_core.wmh.model import load_wmh_model
    return load_wmh_model(folder, t1=t1)


def _wmh_learned(case, folder: str | None = None, t1: bool = False,
                 rates: bool = True) -> Prediction:
    """A WMH bundle through ``lesion_core.wmh.predict`` (registration to MNI included);
    ``rates``: whether the model's ARWMC head was trained (not the voxel reference's)."""
    from lesion_core.wmh.predict import predict
    modality = "T1" if t1 else "FLAIR"
    result = predict(case.images[modality], _wmh_model(folder, t1))
    return Prediction(labels=result.labels, rating=result.total if rates else None,
                      extra={"modality": modality, "levels": result.levels if rates else None,
                             "agreement": result.agreement if rates else None})


@register("wmh_dualtasker", kind="wmh",
          description="WMH-DualTasker, shipped FLAIR model trained from ARWMC ratings only")
def _wmh_dualtasker(case) -> Prediction:
    return _wmh_learned(case)


@register("wmh_t1_mode", kind="wmh",
          description="deep-T1-WMH mode, shipped T1 model trained from 5 mm thick-slice FLAIR "
                      "labels; scored on the T1 grid against the T1 truth")
def _wmh_t1_mode(case) -> Prediction:
    return _wmh_learned(case, t1=True)


@register("wmh_voxel_reference", kind="wmh",
          description="upper reference: the DualTasker network on a 2 mm grid trained with "
                      "voxel labels (bench/train_wmh_reference.py; not shipped)")
def _wmh_voxel_reference(case) -> Prediction:
    return _wmh_learned(case, str(REFERENCE_MODELS / "wmh_voxel_reference"), rates=False)


@register("cmb_log", kind="cmb",
          description="Laplacian-of-Gaussian blob detector on SWI/T2*, lesion_core.baselines")
def _cmb_log(case) -> Prediction:
    from lesion_core.baselines import detect_cmb_log
    labels, candidates = detect_cmb_log(case.images[case.primary_modality])
    points = np.array([c.centre_ras_mm for c in candidates], dtype=np.float64).reshape(-1, 3)
    return Prediction(labels=labels, points_ras_mm=points,
                      point_scores=np.array([c.score for c in candidates]))


# ------------------------------------------------------------------ CMB detector
@lru_cache(maxsize=None)
def _cmb_model():
    from lesion_core.cmb.model import load_cmb_model
    return load_cmb_model()


def _cmb_stage(case, stage: str) -> Prediction:
    """The shipped CMB model's output after ``stage`` (lesion_core.cmb.evaluate.STAGES).
    A T2*-GRE case runs the SWI-trained model anyway (flagged in ``extra``); only the
    full pipeline registers to MNI (locations and the air rule of the clean-up)."""
    from lesion_core.cmb.evaluate import labels_of, stage_selections
    from lesion_core.cmb.predict import predict_cmb
    sequence = case.primary_modality
    result = predict_cmb(case.images[sequence], _cmb_model(), sequence,
                         allow_other_sequence=True, with_teacher=stage == "stage1+2 teacher",
                         locate=stage == "all stages")
    chosen = stage_selections(result)[stage]
    score = (lambda c: c.teacher_probability) if "teacher" in stage else (
        (lambda c: c.stage1_probability) if stage == "stage1" else (lambda c: c.stage2_probability))
    return Prediction(labels=labels_of(result, chosen),
                      points_ras_mm=np.array([c.centre_ras for c in chosen]).reshape(-1, 3),
                      point_scores=np.array([score(c) for c in chosen]),
                      extra={"sequence": sequence, "candidates": len(result.candidates),
                             "trained_on": list(_cmb_model().config.sequences)})


@register("cmb_stage1", kind="cmb",
          description="CMB detector, stage 1 only: U-Net candidates at the high-sensitivity threshold")
def _cmb_stage1(case) -> Prediction:
    return _cmb_stage(case, "stage1")


@register("cmb_stage12_teacher", kind="cmb",
          description="CMB detector, stages 1 + 2 with the teacher discriminator (898k parameters)")
def _cmb_stage12_teacher(case) -> Prediction:
    return _cmb_stage(case, "stage1+2 teacher")


@register("cmb_stage12_student", kind="cmb",
          description="CMB detector, stages 1 + 2 with the distilled student (143k parameters)")
def _cmb_stage12_student(case) -> Prediction:
    return _cmb_stage(case, "stage1+2 student")


@register("cmb_detector", kind="cmb",
          description="CMB detector, all stages (student + clean-up): the shipped pipeline")
def _cmb_detector(case) -> Prediction:
    return _cmb_stage(case, "all stages")


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


# ------------------------------------------------------------------ ICHWeakSeg
@lru_cache(maxsize=None)
def _ich_model(folder: str | None = None):
    from lesion_core.ich.model import load_ich_model
    return load_ich_model(folder)


def _ich_prediction(case, result, labels: Volume) -> Prediction:
    """Scores of an ICH prediction: scan = pooled classifier probability; slices = the
    classifier's probability per CT slice (the mask's area where the case's slice axis
    is not the CT's axial one)."""
    axis = int(case.acquisition.get("CT", {}).get("slice_axis", result.slice_axis))
    if axis == result.slice_axis:
        slices = result.slice_probabilities[:, 0].astype(np.float64)
    else:
        from lesion_core.baselines import slice_areas_mm2
        slices = slice_areas_mm2(labels, axis)
    return Prediction(labels=labels, scan_score=result.scan_probability,
                      scan_threshold=result.thresholds.scan, slice_scores=slices,
                      slice_threshold=result.thresholds.slice if axis == result.slice_axis else 1.0,
                      extra={"subtypes": result.subtypes, "volume_ml": result.volume_ml,
                             "combination": result.combination})


def _ich_stage(case, stage: str) -> Prediction:
    """One stage of the shipped ICHWeakSeg model (lesion_core.ich.predict.STAGES), each
    post-processed and subtyped as the final mask is; ``"final"``: the shipped output."""
    from lesion_core.ich.predict import predict_ich
    model, ct = _ich_model(), case.images["CT"]
    result = predict_ich(ct, model, stages=stage != "final")
    if stage == "final":
        return _ich_prediction(case, result, result.labels)
    labels = result.label_mask(result.stages[stage], model.config.refine.min_volume_ml)
    return _ich_prediction(case, result, ct.with_array(labels))


@register("ich_cam", kind="ich",
          description="ICHWeakSeg, class activation map alone (Grad-CAM through the GRU, "
                      "normalised, >= its threshold)")
def _ich_cam(case) -> Prediction:
    return _ich_stage(case, "cam")


@register("ich_pseudo_masks", kind="ich",
          description="ICHWeakSeg, CAM refined in HU (Gaussian mixture, morphology): the "
                      "pseudo-masks the segmenter learns from, made on the test scan")
def _ich_pseudo_masks(case) -> Prediction:
    return _ich_stage(case, "pseudo_mask")


@register("ich_weakseg", kind="ich",
          description="ICHWeakSeg, shipped model: 2.5D U-Net trained on pseudo-masks from "
                      "image-level labels only (final output)")
def _ich_weakseg(case) -> Prediction:
    return _ich_stage(case, "final")


@register("ich_supervised_lowdata", kind="ich",
          description="fully supervised low-data reference: the same 2.5D U-Net trained on "
                      "voxel labels of 8 subjects (bench/ich_data_fraction.py; not shipped)")
def _ich_supervised_lowdata(case) -> Prediction:
    from lesion_core.ich.model import ICHThresholds
    from lesion_core.ich.predict import label_components, segmenter_mask
    from lesion_core.ich.preprocess import preprocess
    model, ct = _ich_model(str(REFERENCE_MODELS / "ich_supervised_lowdata")), case.images["CT"]
    stack = preprocess(ct, model.config)
    no_subtypes = np.zeros((ct.shape[stack.input_axis], 5), np.float32)
    labels, _ = label_components(segmenter_mask(model, stack), no_subtypes, stack.input_axis,
                                 ICHThresholds(), ct.voxel_volume_ml, ct.spacing,
                                 model.config.refine.min_volume_ml)
    mask = ct.with_array(labels)
    axis = int(case.acquisition.get("CT", {}).get("slice_axis", stack.input_axis))
    from lesion_core.baselines import slice_areas_mm2
    # No classifier: scored like the HU baseline (volume in mL, area in mm^2).
    volume = float((labels > 0).sum()) * ct.voxel_volume_ml
    return Prediction(labels=mask, scan_score=volume, scan_threshold=0.1,
                      slice_scores=slice_areas_mm2(mask, axis), slice_threshold=1.0)

"""ICHWeakSeg end to end on one CT: probabilities, CAM, pseudo-mask, segmentation, subtypes.

:func:`predict_ich` (the CLI, the Slicer module and the benchmark all call it):

1. :func:`~.preprocess.preprocess` (checks first: an MR, a CT not in HU, a single slice or
   a scout raise the one clear error) -> the working stack of axial slices;
2. the classifier gives per-slice probabilities of "any" and the five subtypes; the scan's
   are their multiple-instance pooling (the same log-sum-exp as in training);
3. the CAM through the sequence model (:func:`~.cam.compute_cam`: Grad-CAM, or LayerCAM of
   ``CAMConfig.layer_stage``), normalised to [0, 1];
4. the segmenter's probability; with the combination ``"segmenter_and_pseudo_mask"`` also
   the CAM refined in HU into the scan's own pseudo-mask (:func:`~.refine.refine`);
5. every map goes to the CT's own grid by **linear** interpolation and is thresholded
   there (the working grid's 2 mm pixels would otherwise show as steps on a 0.5-0.9 mm
   CT); the final mask is the segmenter's, or its union with the pseudo-mask (the
   model's ``combination``); CT slices whose any-ICH probability is below the slice
   threshold are cleared in every mask (the classifier gates the segmenter);
   then the final mask grows into the blood connected to it (:mod:`~.grow`: smoothed
   calibrated HU in the blood window, away from bone, within reach of the mask);
6. 26-connected components smaller than ``refine.min_volume_ml`` go; the median distance
   of a remaining one's voxels to bone picks the subtypes it may be, against the bone its
   shape (:class:`~.config.SubtypePlaceConfig`), and the classifier's probabilities on
   its slices choose between them (no subtype at its threshold: "unknown", label value 1);
7. volumes in mL per subtype on the CT grid; per-slice area in mm^2.

Orientation: everything returned lies on the CT's own grid; per-slice arrays run along
the CT's axial array axis (``slice_axis``), in the file's voxel order.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..baselines.ich_threshold import slice_areas_mm2
from ..baselines.masks import bounding_box, remove_small_components
from ..errors import ModelBundleError
from ..progress import Progress, ensure_progress
from ..volume import Volume
from .cam import compute_cam
from .classifier import mil_pool
from .config import SUBTYPES, SubtypePlaceConfig
from .model import ICHModel, ICHThresholds
from .outputs_file import FILES, SLICE_COLUMNS
from .grow import confident_components, grow_into_blood, inner_table_seeds
from .preprocess import SliceStack, check_ct, checked_stack, inside_skull
from .refine import refine
from .segmenter import segment_stack

#: The stage masks :func:`predict_ich` can return (``stages=True``), for the evaluation.
STAGES = ("cam", "pseudo_mask", "segmenter", "segmenter_and_pseudo_mask")


@dataclass(frozen=True)
class Component:
    """One connected component of the final mask: label ``value`` (1-5), ``subtype`` (a
    key of :data:`SUBTYPES` or ``"unknown"``), volume (mL) and its first/last CT slice."""

    value: int
    subtype: str
    volume_ml: float
    first_slice: int
    last_slice: int


@dataclass
class ICHPrediction:
    """Result of :func:`predict_ich` (CT grid throughout).

    Attributes:
        labels: uint8 subtype label map; cam: float32 map in [0, 1].
        slice_probabilities: ``float32 [n_slices, 6]`` (any, then subtypes) per CT slice
            along ``slice_axis``; scan_probabilities: ``float32 [6]``.
        stages: with ``stages=True``, bool masks of :data:`STAGES` (CT grid).
        intracranial_ml: volume of the intracranial mask the growth step used (mL).
        bone, subtype_place: the bone mask (calibrated HU above ``SliceGrid.skull_hu``)
            and the rule that placed the components (:func:`label_components`).
        out_of_distribution: why the input is not a head CT the model knows
            (:mod:`lesion_core.head_check`), when a result was asked for anyway.
    """

    labels: Volume
    cam: Volume
    slice_probabilities: np.ndarray
    scan_probabilities: np.ndarray
    slice_axis: int
    components: list[Component]
    thresholds: ICHThresholds
    threshold_dict: dict
    combination: str
    model_id: str
    model_version: str
    seconds: float = 0.0
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    intracranial_ml: float | None = None
    bone: np.ndarray | None = None
    subtype_place: SubtypePlaceConfig | None = None
    out_of_distribution: tuple[str, ...] = ()

    def label_mask(self, mask: np.ndarray, min_volume_ml: float) -> np.ndarray:
        """Subtype label map of another CT-grid mask (a stage's), its components named
        as the final mask's are."""
        labels, _ = label_components(
            mask, self.slice_probabilities[:, 1:], self.slice_axis, self.thresholds,
            self.labels.voxel_volume_ml, self.labels.spacing, min_volume_ml, self.bone,
            self.subtype_place)
        return labels

    @property
    def scan_probability(self) -> float:
        return float(self.scan_probabilities[0])

    @property
    def present(self) -> bool:
        return self.scan_probability >= self.thresholds.scan

    @property
    def subtypes(self) -> list[str]:
        """Subtypes the scan-level (pooled) probabilities call present (none if the scan is not)."""
        if not self.present:
            return []
        return [k for k, p, t in zip(SUBTYPES, self.scan_probabilities[1:], self.thresholds.subtypes)
                if p >= t]

    @property
    def slice_present(self) -> np.ndarray:
        return self.slice_probabilities[:, 0] >= self.thresholds.slice

    @property
    def volume_ml_by_subtype(self) -> dict[str, float]:
        """mL per subtype key (all five, 0 when absent), plus ``"unknown"`` when any."""
        out = {k: 0.0 for k in SUBTYPES}
        for c in self.components:
            out[c.subtype] = out.get(c.subtype, 0.0) + c.volume_ml
        return {k: round(v, 3) for k, v in out.items()}

    @property
    def volume_ml(self) -> float:
        return round(float(np.count_nonzero(self.labels.array)) * self.labels.voxel_volume_ml, 3)

    def area_mm2(self) -> np.ndarray:
        """Final-mask area (mm^2) in each CT slice along ``slice_axis``."""
        return slice_areas_mm2(self.labels.with_array(self.labels.array > 0), self.slice_axis)


def classify(model: ICHModel, stack: SliceStack, precision: str = "auto"):
    """``(CAMResult, scan probabilities [6])`` of one stack: slice probabilities, CAM and
    the multiple-instance pooled scan probabilities (encoder in ``precision``)."""
    if model.classifier is None:
        raise ModelBundleError("this model has no slice classifier (a segmentation-only "
                               "baseline)", "choose an ICHWeakSeg model with a classifier")
    config = model.config
    cam = compute_cam(model.classifier, stack.image, config.cam, precision)
    logits = torch.logit(torch.from_numpy(cam.probabilities), eps=1e-6)[None]
    pooled = mil_pool(logits, None, config.classifier.pooling, config.classifier.lse_r)
    return cam, torch.sigmoid(pooled[0]).numpy().astype(np.float32)


def on_ct_grid(stack: SliceStack, values: np.ndarray, threshold: float) -> np.ndarray:
    """A stack map ``[S, H, W]`` (probability, or 0/1 mask) interpolated linearly onto
    the CT's grid and thresholded there: ``bool`` array of the CT's shape."""
    values = np.asarray(values, np.float32)
    if threshold > 0:
        values = _near_threshold(values, threshold)
    mapped = stack.to_input_grid(values, order=1).array
    return np.asarray(mapped) >= threshold


def _near_threshold(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values`` with 0 wherever no voxel of its 3x3x3 neighbourhood reaches
    ``threshold`` (> 0), which leaves the thresholded linear interpolation as it was
    and lets the resampling skip the zeros (:meth:`Volume.resample_to_grid`).

    A CT voxel's value is a convex combination of the 2x2x2 stack voxels around it, so
    it reaches the threshold only when one of them does (float rounding cannot lift a
    combination above its largest term by a float32 step); then all eight lie in that
    voxel's neighbourhood and keep their values. Otherwise all of them, 0 included, are
    below the threshold, and so is the combination."""
    near = ndimage.maximum_filter(values >= threshold, size=3, mode="constant")
    return np.where(near, values, np.float32(0))


def segmenter_mask(model: ICHModel, stack: SliceStack, precision: str = "auto") -> np.ndarray:
    """The segmenter's mask on the CT's grid (probability interpolated, then thresholded)."""
    return segmenter_masks(model, stack, precision)[0]


def segmenter_masks(model: ICHModel, stack: SliceStack, precision: str = "auto"
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """The segmenter's mask on the CT's grid (probability interpolated, then thresholded)
    and, of the same probability, where it reaches ``config.grow.seed_probability``
    (``None`` when that is not above the segmenter's threshold: every component counts)."""
    probability = segment_stack(model.segmenter, stack.image, model.config, precision=precision)
    threshold = model.config.segmenter.threshold
    mask = on_ct_grid(stack, probability, threshold)
    seed = model.config.grow.seed_probability
    return mask, (None if seed <= threshold else on_ct_grid(stack, probability, seed))


def label_components(mask: np.ndarray, slice_subtypes: np.ndarray, slice_axis: int,
                     thresholds: ICHThresholds, voxel_ml: float, spacing, min_volume_ml: float,
                     bone: np.ndarray | None = None, place: SubtypePlaceConfig | None = None
                     ) -> tuple[np.ndarray, list[Component]]:
    """Subtype label map (uint8) and components of a CT-grid ``mask`` (step 6).

    ``slice_subtypes``: subtype probabilities ``[n_slices, 5]`` along ``slice_axis``.
    ``bone`` (CT-grid mask) and ``place``: the component's distance to bone narrows the
    subtypes the classifier may choose from (:class:`~.config.SubtypePlaceConfig`)."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, np.uint8)
    region = bounding_box(mask)
    if region is None:
        return out, []
    # Labelled in the mask's bounding box only: the components, and their numbering
    # (raster order of their first voxel), are those of the whole grid.
    kept = remove_small_components(mask[region], min_volume_ml * 1000.0, spacing, 26)
    ids, n = ndimage.label(kept, structure=np.ones((3, 3, 3), bool))
    labelled = out[region]  # a view: filling it fills ``out``
    components = []
    by_place = bone is not None and place is not None and place.enabled
    for index, box in enumerate(ndimage.find_objects(ids), start=1):
        inside = ids[box] == index
        other = tuple(a for a in range(3) if a != slice_axis)
        offset = region[slice_axis].start + box[slice_axis].start
        slices = offset + np.flatnonzero(inside.any(axis=other))
        volume_ml = float(inside.sum()) * voxel_ml
        candidates = SUBTYPES
        if by_place:
            where = tuple(slice(r.start + b.start, r.start + b.stop) for r, b in zip(region, box))
            candidates = _candidates_by_place(bone, where, inside, spacing, place, volume_ml)
        value, subtype = _pick_subtype(slice_subtypes[slices].max(axis=0), thresholds,
                                       candidates)
        labelled[box][inside] = value
        components.append(Component(value, subtype, round(volume_ml, 3),
                                    int(slices.min()), int(slices.max())))
    return out, components


def _candidates_by_place(bone: np.ndarray, box: tuple[slice, ...], inside: np.ndarray,
                         spacing, place: SubtypePlaceConfig, volume_ml: float) -> tuple[str, ...]:
    """The subtypes a component (``inside`` of the CT-grid ``box``) may be, from the median
    and the largest distance of its voxels to ``bone`` and its volume (``place``)."""
    distances = bone_distances(bone, box, inside, spacing, place.deep_mm + 5.0)
    median = float(np.median(distances))
    if median > place.deep_mm:  # only a deep one needs bone looked for further off
        distances = bone_distances(bone, box, inside, spacing, place.ventricular_mm + 5.0)
        median = float(np.median(distances))
    return place.candidates(median, float(distances.max()), volume_ml)


def _pick_subtype(peak: np.ndarray, thresholds: ICHThresholds, candidates: tuple[str, ...]
                  ) -> tuple[int, str]:
    """Label value and subtype from a component's peak slice probabilities ``[5]``.

    No subtype at its threshold: "unknown" (value 1). Else the most probable candidate at
    its threshold, or, when none of the candidates is, the most probable candidate (the
    classifier saw blood there, the place says which kind it can be)."""
    allowed = peak >= np.asarray(thresholds.subtypes)
    if not allowed.any():
        return 1, "unknown"
    candidate = np.array([k in candidates for k in SUBTYPES])
    choice = candidate & allowed if (candidate & allowed).any() else candidate
    k = int(np.argmax(np.where(choice, peak, -1.0)))
    return k + 1, SUBTYPES[k]


def bone_distances(bone: np.ndarray, box: tuple[slice, ...], inside: np.ndarray,
                   spacing, reach_mm: float) -> np.ndarray:
    """Distance (mm) to the nearest ``bone`` voxel of each ``inside`` voxel of ``box`` (a
    CT-grid bounding box); bone is looked for only within ``reach_mm`` of the box (a far
    smaller distance transform than the whole CT's), so a distance beyond ``reach_mm`` is
    only known to be that far (all ``inf`` when no bone is in reach). The median and the
    largest of them are exact when they lie within ``reach_mm``."""
    pad = [int(np.ceil(reach_mm / float(s))) for s in spacing]
    grown = tuple(slice(max(b.start - p, 0), min(b.stop + p, n))
                  for b, p, n in zip(box, pad, bone.shape))
    near = np.asarray(bone[grown], bool)
    if not near.any():
        return np.full(int(np.sum(inside)), np.inf)
    distance = ndimage.distance_transform_edt(~near, sampling=spacing)
    within = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))
    return distance[within][inside]


def predict_ich(volume: Volume, model: ICHModel, progress: Progress | None = None,
                stages: bool = False, precision: str = "auto") -> ICHPrediction:
    """Run the model on one head CT in HU (any orientation; steps in the module notes).

    ``stages=True`` also returns the mask of every stage of :data:`STAGES` (evaluation).
    ``precision``: ``auto`` (bf16 autocast where the device has bf16 units), ``fp32`` or
    ``bf16`` for the classifier's encoder and the segmenter (:mod:`lesion_core.training`).
    Raises :class:`~lesion_core.errors.InvalidImageError` for input the model cannot read.
    """
    progress = ensure_progress(progress)
    start = time.perf_counter()
    config = model.config
    progress.update(0.02, "checking and resampling the CT")
    ct = check_ct(volume, config.grid)
    stack = checked_stack(ct, config)
    progress.update(0.2, "classifier and class activation map")
    cam, scan_probabilities = classify(model, stack, precision)
    progress.update(0.5, "segmenter")
    segmenter, confident = segmenter_masks(model, stack, precision)
    masks = {"segmenter": segmenter}
    progress.update(0.7, "final mask on the CT grid")
    if stages or model.combination == "segmenter_and_pseudo_mask":
        pseudo = refine(stack.hu, cam.cam, stack.spacing_mm, config.refine,
                        cam_threshold=config.cam.threshold, intracranial=stack.intracranial)
        masks["pseudo_mask"] = on_ct_grid(stack, pseudo.mask, 0.5)
        masks["segmenter_and_pseudo_mask"] = masks["segmenter"] | masks["pseudo_mask"]
    cam_ct = np.clip(np.asarray(stack.to_input_grid(cam.cam, order=1).array, np.float32), 0, 1)
    if stages:
        masks["cam"] = cam_ct >= config.cam.threshold
    per_slice = stack.per_input_slice(cam.probabilities).astype(np.float32)
    # Step 5b: slices the classifier calls negative hold no haemorrhage (its slice AUC is
    # far better than the segmenter's own false-positive control; docs/ich.md).
    shape = [1, 1, 1]
    shape[stack.input_axis] = -1
    gate = (per_slice[:, 0] >= model.thresholds.slice).reshape(shape)
    masks = {k: v & gate for k, v in masks.items()}
    progress.update(0.8, "growing into the connected blood")
    hu = np.asarray(ct.array, np.float32) + np.float32(stack.hu_offset)
    bone = hu > config.grid.skull_hu  # also what places the components (step 6)
    intracranial = inside_skull(bone, stack.input_axis)
    seeds = masks[model.combination]
    if confident is not None:
        seeds = confident_components(seeds, confident & gate)
    seeds = seeds | (inner_table_seeds(cam_ct, hu, bone, intracranial, ct.spacing,
                                       stack.input_axis, config.grow) & gate)
    final = grow_into_blood(seeds, hu, ct.spacing, intracranial, stack.input_axis, config.grow)
    progress.update(0.85, "components and subtypes")
    reference = Volume(np.zeros(stack.input_shape, np.uint8), stack.input_affine, stack.source)
    labels, components = label_components(
        final, per_slice[:, 1:], stack.input_axis, model.thresholds,
        reference.voxel_volume_ml, reference.spacing, config.refine.min_volume_ml,
        bone, config.subtype_place)
    progress.update(1.0, f"{len(components)} haemorrhage component(s)")
    return ICHPrediction(
        reference.with_array(labels, kind="ich_labels"),
        reference.with_array(cam_ct, kind="ich_cam"), per_slice, scan_probabilities,
        stack.input_axis, components, model.thresholds, model.thresholds.as_dict(config),
        model.combination, model.model_id, model.version, time.perf_counter() - start,
        {k: v for k, v in masks.items() if stages},
        float(intracranial.sum() * reference.voxel_volume_ml), bone, config.subtype_place)


def summary_json(prediction: ICHPrediction, image_path: str | None = None) -> dict:
    """The document of ``ich_summary.json`` (keys of ``outputs_file.SUMMARY_KEYS``)."""
    return {"model": {"name": prediction.model_id, "version": prediction.model_version},
            "image": image_path, "slice_axis": int(prediction.slice_axis),
            "scan_probability": round(prediction.scan_probability, 4),
            "present": bool(prediction.present), "subtypes": prediction.subtypes,
            "volume_ml": prediction.volume_ml,
            "volume_ml_by_subtype": prediction.volume_ml_by_subtype,
            "thresholds": prediction.threshold_dict, "combination": prediction.combination,
            "components": [asdict(c) for c in prediction.components],
            "seconds": round(prediction.seconds, 2),
            "intracranial_ml": prediction.intracranial_ml,
            "out_of_distribution": list(prediction.out_of_distribution)}


def write_prediction(prediction: ICHPrediction, out: str | Path,
                     image_path: str | None = None) -> dict[str, Path]:
    """Write the four files of :mod:`.outputs_file` into ``out`` (created)."""
    from ..atomic import atomic_write_bytes
    from ..io import write_volume

    paths = FILES.create(out)
    write_volume(prediction.labels, paths["labels"])
    write_volume(prediction.cam, paths["cam"])
    areas, present = prediction.area_mm2(), prediction.slice_present
    with open(paths["slices"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SLICE_COLUMNS)
        for k, row in enumerate(prediction.slice_probabilities):
            writer.writerow([k] + [f"{row[0]:.4f}", int(present[k])]
                            + [f"{p:.4f}" for p in row[1:]] + [f"{areas[k]:.2f}"])
    document = summary_json(prediction, image_path)
    atomic_write_bytes(paths["summary"], json.dumps(document, indent=1).encode("utf-8"))
    return paths

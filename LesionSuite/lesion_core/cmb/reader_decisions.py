"""A reader's decisions on CMB candidates in the feedback store, and the training points
they become.

Each decision is one record of :mod:`lesion_core.feedback`, written (and fsync-ed) at once:
kind :data:`DECISION_KIND`; target a *geometry key* of the candidate, ``"cmb@R,A,S"`` with
its centre in RAS millimetres rounded to 0.5 mm (:func:`geometry_key`), never the candidate
id, which changes from one run of the model to the next; payload::

    {"decision": "accept" | "reject" | "add", "centre_ras": [R, A, S],     # mm
     "diameter_mm": float | None, "volume_mm3": float | None,
     "stage1_probability": float | None, "stage2_probability": float | None,
     "candidate_id": int | None, "dropped_by": None | "stage2" | "cleanup",
     "modality": "SWI" | "T2star"}

plus the reader, the time and the model id/version, which :meth:`CaseFeedback.record`
stores. ``"add"`` is a microbleed the model missed, placed by the reader. The case's image
is named in ``case.json`` (:func:`lesion_core.feedback_cases.ensure_case_image`).

The latest record per target that is not undone stands (:func:`standing_decisions`). A
re-run of the model gives new candidates with new ids and slightly moved centres:
:func:`match_decisions` hands each of them the standing decision of the nearest earlier
decision within 3 mm (each decision to one candidate at most), so a re-run never loses or
overwrites what a reader decided. A later change of a matched decision is written under
the *same* target, so it supersedes the earlier one instead of standing beside it.

Coordinates are RAS millimetres of the image as stored (its voxel-to-RAS affine), the
convention of :class:`lesion_core.volume.Volume` and of ``cmb_candidates.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import FeedbackStoreError, InvalidImageError
from ..feedback import CaseFeedback, FeedbackStore, Record
from ..volume import Volume

DECISION_KIND = "cmb.decision"
ACCEPT, REJECT, ADD = "accept", "reject", "add"
DECISIONS = (ACCEPT, REJECT, ADD)
#: Decisions that make a point a microbleed (training label 1).
POSITIVE = (ACCEPT, ADD)
MODALITIES = ("SWI", "T2star")
#: Rounding of the geometry key (mm).
KEY_STEP_MM = 0.5
#: Largest distance (mm, RAS) between a re-run's candidate and an earlier decision it takes.
MATCH_DISTANCE_MM = 3.0
_CANDIDATE_FIELDS = ("diameter_mm", "volume_mm3", "stage1_probability", "stage2_probability")


@dataclass(frozen=True)
class DecisionPoint:
    """One training example from a reader's decision.

    Attributes:
        case_id: the feedback-store case.
        image_path: the case's image (``case.json``), an existing file.
        modality: ``"SWI"`` or ``"T2star"``.
        centre_ras: the point, RAS mm in the image's own coordinates.
        label: 1 for a microbleed (accepted or added), 0 for a rejected candidate.
    """

    case_id: str
    image_path: str
    modality: str
    centre_ras: tuple[float, float, float]
    label: int


# ------------------------------------------------------------------ checks


def check_centre(centre_ras, source=None) -> tuple[float, float, float]:
    """``centre_ras`` as three finite floats (RAS mm), else ``FeedbackStoreError``."""
    try:
        centre = tuple(float(c) for c in centre_ras)
    except (TypeError, ValueError):
        centre = ()
    if len(centre) != 3 or not all(math.isfinite(c) for c in centre):
        raise FeedbackStoreError(f"{centre_ras!r} is not a point in RAS millimetres",
                                 "Give three finite numbers (R, A, S) in mm", source=source)
    return centre  # type: ignore[return-value]


def check_decision(decision, source=None) -> str:
    """``decision`` as one of :data:`DECISIONS`, else ``FeedbackStoreError``."""
    text = str(decision or "").strip().lower()
    if text not in DECISIONS:
        raise FeedbackStoreError(f"{decision!r} is not a CMB decision",
                                 f"Use one of {', '.join(DECISIONS)}", source=source)
    return text


def _optional_number(name: str, value, source, high: float | None = None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    low_ok = number >= 0 if high is not None else number > 0
    if not (math.isfinite(number) and low_ok and (high is None or number <= high)):
        allowed = f"0-{high:g}" if high is not None else "a positive number"
        raise FeedbackStoreError(f"{name} {value!r} is not {allowed}",
                                 "Pass the candidate as cmb_candidates.json gives it",
                                 source=source)
    return number


def _whole_id(identifier, source) -> int:
    try:
        number = float(identifier)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(identifier, bool) or not number.is_integer():
        raise FeedbackStoreError(f"candidate id {identifier!r} is not a whole number",
                                 "Pass the candidate as cmb_candidates.json gives it",
                                 source=source)
    return int(number)


def geometry_key(centre_ras) -> str:
    """``"cmb@R,A,S"``: the centre (RAS mm) rounded to :data:`KEY_STEP_MM`."""
    centre = check_centre(centre_ras)
    parts = [round(c / KEY_STEP_MM) * KEY_STEP_MM + 0.0 for c in centre]  # no "-0.0"
    return "cmb@" + ",".join(f"{p:.1f}" for p in parts)


# ------------------------------------------------------------------ writing


def record_decision(case: CaseFeedback, decision: str, centre_ras,
                    candidate: Mapping[str, Any] | None = None, *, target: str | None = None,
                    modality: str = "SWI", diameter_mm: float | None = None,
                    reader: str | None = None, model_id: str | None = None,
                    model_version: str | None = None) -> Record:
    """Validate and store one decision at once; returns the record.

    Args:
        decision: ``"accept"``, ``"reject"`` (a candidate) or ``"add"`` (a missed CMB).
        centre_ras: the point, RAS mm.
        candidate: the candidate as in ``cmb_candidates.json`` (its id, sizes,
            probabilities and ``dropped_by`` are recorded); None for an added point.
        target: the record target; default :func:`geometry_key` of ``centre_ras``. Pass
            the target of the decision a re-run candidate was matched to, so the new
            decision supersedes it.
        modality: ``"SWI"`` or ``"T2star"``.
        diameter_mm: size of an added point (mm); a candidate's own is used otherwise.

    Raises:
        FeedbackStoreError: bad input (nothing is written) or the store is not writable.
    """
    source = case.records_path
    decision = check_decision(decision, source)
    centre = check_centre(centre_ras, source)
    if modality not in MODALITIES:
        raise FeedbackStoreError(f"modality {modality!r} is not one of the CMB modalities",
                                 f"Use one of {', '.join(MODALITIES)}", source=source)
    candidate = dict(candidate or {})
    if diameter_mm is not None:
        candidate["diameter_mm"] = diameter_mm
    payload: dict[str, Any] = {"decision": decision, "centre_ras": list(centre)}
    for name in _CANDIDATE_FIELDS:
        high = 1.0 if name.endswith("probability") else None
        payload[name] = _optional_number(name, candidate.get(name), source, high)
    identifier = candidate.get("id")
    payload["candidate_id"] = None if identifier is None else _whole_id(identifier, source)
    payload["dropped_by"] = candidate.get("dropped_by")
    payload["modality"] = modality
    return case.record(DECISION_KIND, target or geometry_key(centre), payload, reader=reader,
                       model_id=model_id, model_version=model_version)


def undo_decision(case: CaseFeedback, record_id: str, reader: str | None = None) -> Record:
    """Take back one decision record (the store's undo: an ``undo`` record is appended)."""
    return case.undo(record_id, reader=reader)


# ------------------------------------------------------------------ reading


def standing_decisions(case: CaseFeedback) -> dict[str, Record]:
    """The decisions that stand (latest per target, not undone): target -> record."""
    return case.state().of_kind(DECISION_KIND)


def decision_centre(record: Record) -> tuple[float, float, float] | None:
    """The RAS point (mm) of a decision record; None when its payload was damaged."""
    try:
        return check_centre(record.payload.get("centre_ras"))
    except FeedbackStoreError:
        return None


def _centre_of(item) -> tuple[float, float, float]:
    if isinstance(item, Mapping):
        return check_centre(item.get("centre_ras"))
    return check_centre(item)


def match_decisions(candidates: Sequence, decisions: Mapping[str, Record] | Iterable[Record],
                    max_distance_mm: float = MATCH_DISTANCE_MM) -> list[Record | None]:
    """The earlier decision each candidate takes over, aligned with ``candidates``.

    Pairs are made nearest first (RAS distance in mm, at most ``max_distance_mm``), each
    decision and each candidate used once, so two candidates near one earlier decision
    do not both inherit it.

    Args:
        candidates: dicts with ``centre_ras`` (as in ``cmb_candidates.json``) or points.
        decisions: :func:`standing_decisions` (or any records of :data:`DECISION_KIND`).
    """
    records = list(decisions.values()) if isinstance(decisions, Mapping) else list(decisions)
    records = [r for r in records if decision_centre(r) is not None]
    matched: list[Record | None] = [None] * len(candidates)
    if not candidates or not records:
        return matched
    points = np.array([_centre_of(c) for c in candidates], dtype=np.float64)
    earlier = np.array([decision_centre(r) for r in records], dtype=np.float64)
    distance = np.linalg.norm(points[:, None, :] - earlier[None, :, :], axis=2)
    used: set[int] = set()
    for flat in np.argsort(distance, axis=None, kind="stable"):
        c, d = np.unravel_index(flat, distance.shape)
        if distance[c, d] > max_distance_mm:
            break
        if matched[c] is None and d not in used:
            matched[c] = records[d]
            used.add(int(d))
    return matched


def training_points(store_root: str | Path, modality: str | None = None
                    ) -> list[DecisionPoint]:
    """Every standing decision of every case of a store as a labelled point.

    ``accept`` and ``add`` give label 1, ``reject`` label 0. ``modality`` (``"SWI"`` or
    ``"T2star"``) keeps only cases of that modality; None keeps all.

    Raises:
        FeedbackStoreError: a case with decisions names no image, or its image file is
            gone (the error names ``case.json`` and what to do).
    """
    store = FeedbackStore(store_root)
    points: list[DecisionPoint] = []
    for case_id in store.cases():
        case = store.case(case_id)
        decisions = standing_decisions(case)
        if not decisions:
            continue
        info = case.info()
        info_path = case.folder / "case.json"
        image = info.get("image")
        if not image:
            raise FeedbackStoreError(
                "this case has CMB decisions but names no image",
                "Open the image in the CMB Detector and make one decision (it names the "
                "image), or remove the case folder", source=info_path)
        if not Path(image).is_file():
            raise FeedbackStoreError(
                f"the case's image {image} does not exist",
                "Put the image back at that path, or remove the case folder",
                source=info_path)
        for record in decisions.values():
            case_modality = str(record.payload.get("modality") or info.get("modality")
                                or "SWI")
            centre = decision_centre(record)
            if centre is None or (modality is not None and case_modality != modality):
                continue
            label = 1 if record.payload.get("decision") in POSITIVE else 0
            points.append(DecisionPoint(case_id, str(image), case_modality, centre, label))
    return points


# ------------------------------------------------------------------ label map


def label_map_from_accepted(grid: Volume, centres_ras: Sequence, diameters_mm: Sequence,
                            components: Volume | None = None,
                            component_ids: Sequence[int | None] | None = None) -> Volume:
    """A label map of microbleeds on ``grid``: value ``n`` (1, 2, ...) on the n-th one.

    Each microbleed is the component of ``components`` (a label map on ``grid``, value =
    candidate id, e.g. ``cmb_candidates_labels.nii.gz``) with its ``component_ids`` entry
    when there is one, else a ball of ``diameters_mm`` (mm; None: 3 mm) around its
    centre (RAS mm), always holding at least the voxel nearest the centre.

    Raises:
        InvalidImageError: a centre lies outside the image, or ``components`` is on
            another grid.
    """
    n = len(centres_ras)
    ids = list(component_ids) if component_ids is not None else [None] * n
    if len(diameters_mm) != n or len(ids) != n:
        raise ValueError("give one diameter and one component id per centre")
    shape = tuple(int(s) for s in grid.shape[:3])
    if components is not None and tuple(components.shape[:3]) != shape:
        raise InvalidImageError(f"the candidate label map is {components.shape[:3]}, the image "
                                f"{shape}", "Use the label map written with this image",
                                source=components.source)
    out = np.zeros(shape, dtype=np.int32)
    for value, (centre, diameter, cid) in enumerate(zip(centres_ras, diameters_mm, ids), 1):
        mask = None
        if components is not None and cid is not None:
            mask = np.asarray(components.array) == int(cid)
            mask = mask if mask.any() else None
        if mask is None:
            mask = _ball(grid, check_centre(centre), 3.0 if diameter is None
                         else float(diameter))
        out[mask] = value
    return grid.with_array(out)


def _ball(grid: Volume, centre: tuple[float, float, float], diameter_mm: float) -> np.ndarray:
    """Voxels whose centres lie within ``diameter_mm / 2`` of ``centre`` (RAS mm), and the
    voxel nearest to it."""
    shape = np.array(grid.shape[:3])
    ijk = grid.ras_to_voxel(np.array(centre))
    nearest = np.round(ijk).astype(int)
    if np.any(nearest < 0) or np.any(nearest >= shape):
        raise InvalidImageError(f"the point {tuple(round(c, 1) for c in centre)} (RAS mm) "
                                "lies outside the image",
                                "Remove that point (Undo) and place it inside the image",
                                source=grid.source)
    radius = max(diameter_mm, 0.0) / 2.0
    reach = np.ceil(radius / grid.spacing).astype(int) + 1
    low = np.maximum(nearest - reach, 0)
    high = np.minimum(nearest + reach + 1, shape)
    axes = [np.arange(lo, hi) for lo, hi in zip(low, high)]
    box = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.linalg.norm(grid.voxel_to_ras(box) - np.array(centre), axis=1) <= radius
    mask = np.zeros(grid.shape[:3], dtype=bool)
    chosen = box[inside]
    mask[chosen[:, 0], chosen[:, 1], chosen[:, 2]] = True
    mask[tuple(nearest)] = True
    return mask

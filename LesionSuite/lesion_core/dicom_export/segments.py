"""A task's result as SEG segments: the segment map and one :class:`SegmentSpec` each.

Input: the result's label map (a :class:`~lesion_core.volume.Volume` on the source
image's grid, as ``predict`` writes it and a Slicer label node holds it) and its summary
(the JSON document ``predict`` writes: ``<stem>_summary.json``, ``cmb_candidates.json``,
``ich_summary.json``). Which segments:

* **WMH**: one segment, "White matter hyperintensity" (label value 1).
* **CMB**: one segment per kept microbleed, "Cerebral microbleed <id>" (the candidate id
  of ``cmb_candidates.json``; the label map holds that id), so that the SR's measurements
  and a reader's decision on each microbleed reference it alone. A result without a
  microbleed has one empty segment, "Cerebral microbleed".
* **ICH**: one segment per subtype present (label values 1-5 of
  ``lesion_core.labels.ICH_SUBTYPES``), plus "Intracranial haemorrhage, subtype unknown"
  for components whose subtype the model could not tell (they carry value 1 in the label
  map and ``"unknown"`` in the summary's ``components``). No haemorrhage: one empty
  segment, "Intracranial haemorrhage".

Segments are numbered 1..n in that order; the segment map holds each voxel's number.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..labels import CMB, ICH_ANY, ICH_SUBTYPE_KEYS, ICH_SUBTYPES, WMH, LesionLabel
from ..volume import Volume
from .specs import SegmentPlan, SegmentSpec

#: The tasks a plan can be made for.
TASKS = ("wmh", "cmb", "ich")
UNKNOWN_SUBTYPE = "unknown"
#: The segment of ICH components of unknown subtype: any haemorrhage's codes.
ICH_UNKNOWN = replace(ICH_ANY, name="Intracranial haemorrhage, subtype unknown",
                      color=(0.6, 0.6, 0.6),
                      description="Haemorrhage whose subtype the model could not tell.")


def _map_dtype(n_segments: int):
    return np.uint8 if n_segments < 256 else np.uint16


def wmh_plan(labels: Volume, summary: dict | None = None) -> SegmentPlan:
    """WMH: one segment (every voxel > 0 of ``labels``)."""
    mask = np.asarray(labels.array) > 0
    return SegmentPlan(labels.with_array(mask.astype(np.uint8)),
                       [SegmentSpec(1, WMH, "WMH", key="wmh")])


def cmb_plan(labels: Volume, summary: dict | None = None) -> SegmentPlan:
    """CMB: one segment per kept candidate id (``summary["candidates"]`` with ``kept``)
    and per other id found in ``labels`` (e.g. a microbleed a reader drew)."""
    array = np.asarray(labels.array)
    found = {int(v) for v in np.unique(array) if v > 0}
    kept = {int(c["id"]) for c in (summary or {}).get("candidates", []) if c.get("kept")}
    ids = sorted(kept | found)
    if not ids:
        return SegmentPlan(labels.with_array(np.zeros(array.shape, np.uint8)),
                           [SegmentSpec(1, CMB, "CMB", key="none")])
    lut = np.zeros(int(max(max(ids), array.max(initial=0))) + 1, _map_dtype(len(ids)))
    for number, ident in enumerate(ids, start=1):
        lut[ident] = number
    segment_map = lut[np.clip(array, 0, None).astype(np.int64)]
    specs = [SegmentSpec(n, CMB, f"CMB {ident}", key=str(ident),
                         segment_label=f"{CMB.name} {ident}")
             for n, ident in enumerate(ids, start=1)]
    return SegmentPlan(labels.with_array(segment_map), specs)


def _unknown_components(array: np.ndarray, summary: dict | None) -> np.ndarray | None:
    """Mask of the components the summary lists as of unknown subtype, or None when the
    label map's components do not match the summary's (e.g. an edited label map)."""
    from scipy import ndimage

    components = (summary or {}).get("components") or []
    if not any(c.get("subtype") == UNKNOWN_SUBTYPE for c in components):
        return None
    # The same labelling as the prediction's (26-connected, raster order): component i
    # of ndimage.label is the summary's components[i - 1].
    ids, n = ndimage.label(array > 0, structure=np.ones((3, 3, 3), bool))
    if n != len(components):
        return None
    unknown = np.zeros(array.shape, bool)
    for index, (component, box) in enumerate(zip(components, ndimage.find_objects(ids)),
                                             start=1):
        inside = ids[box] == index
        values = np.unique(array[box][inside])
        if len(values) != 1 or int(values[0]) != int(component.get("value", -1)):
            return None
        if component.get("subtype") == UNKNOWN_SUBTYPE:
            unknown[box] |= inside
    return unknown


def ich_plan(labels: Volume, summary: dict | None = None) -> SegmentPlan:
    """ICH: one segment per subtype value present, plus the unknown-subtype components
    of ``summary["components"]`` (when they match the label map) as their own."""
    array = np.asarray(labels.array)
    unknown = _unknown_components(array, summary)
    keyed = np.where(unknown, 0, array) if unknown is not None else array
    present = [label for label in ICH_SUBTYPES if np.any(keyed == label.value)]
    segment_map = np.zeros(array.shape, np.uint8)
    specs: list[SegmentSpec] = []
    for label in present:
        number = len(specs) + 1
        segment_map[keyed == label.value] = number
        key = ICH_SUBTYPE_KEYS.get(label.value, label.name.split()[0].lower())
        specs.append(SegmentSpec(number, label, f"ICH {key}", key=key))
    if unknown is not None and unknown.any():
        number = len(specs) + 1
        segment_map[unknown] = number
        specs.append(SegmentSpec(number, ICH_UNKNOWN, "ICH unknown subtype",
                                 key=UNKNOWN_SUBTYPE))
    if not specs:
        specs.append(SegmentSpec(1, ICH_ANY, "ICH", key="none"))
    return SegmentPlan(labels.with_array(segment_map), specs)


_PLANS = {"wmh": wmh_plan, "cmb": cmb_plan, "ich": ich_plan}


def segment_plan(task: str, labels: Volume, summary: dict | None = None) -> SegmentPlan:
    """The :class:`SegmentPlan` of ``task``'s result (``labels`` on the source grid,
    ``summary`` its JSON document)."""
    try:
        return _PLANS[task](labels, summary)
    except KeyError:
        raise ValueError(f"no DICOM export for task {task!r}; known: {', '.join(TASKS)}") \
            from None


def plain_plan(labels: Volume, catalogue: tuple[LesionLabel, ...]) -> SegmentPlan:
    """Any label map as one segment per label value present (``catalogue`` names them):
    for label maps that are not a task's result."""
    array = np.asarray(labels.array)
    by_value = {label.value: label for label in catalogue}
    values = [int(v) for v in np.unique(array) if v > 0]
    unknown = [v for v in values if v not in by_value]
    if unknown:
        raise ValueError(f"label values {unknown} are not in the catalogue")
    segment_map = np.zeros(array.shape, _map_dtype(len(values)))
    specs = []
    for number, value in enumerate(values, start=1):
        segment_map[array == value] = number
        specs.append(SegmentSpec(number, by_value[value], by_value[value].name,
                                 key=str(value)))
    if not specs:
        specs = [SegmentSpec(1, catalogue[0], catalogue[0].name, key="none")]
    return SegmentPlan(labels.with_array(segment_map), specs)

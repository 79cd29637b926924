"""A reader's slice labels and edited haemorrhage masks in the feedback store, and the
weak-label training scans they become.

**Slice labels.** Each label is one record of :mod:`lesion_core.feedback`, written (and
fsync-ed) at once: kind :data:`SLICE_KIND`, target ``"slice:<k>"``, payload::

    {"haemorrhage": true | false, "subtypes": ["subdural", ...], "slice_axis": 0 | 1 | 2}

plus the reader, the time and the model id/version, which :meth:`CaseFeedback.record`
stores. The latest record per slice that is not undone stands
(:func:`standing_slice_labels`); an undo is a record of its own, nothing is erased.

Slice numbering: ``k`` is the 0-based index along ``slice_axis``, the CT's axial array
axis (the voxel axis whose direction is nearest superior-inferior), in the voxel order of
the image named in the case's ``case.json`` (:func:`lesion_core.feedback_cases.
ensure_case_image`), so ``k`` is the ``slice`` column of ``ich_slices.csv`` and of a
weak-label table (:mod:`lesion_core.ich.data`).

Subtypes (keys of :data:`lesion_core.labels.ICH_SUBTYPE_KEYS`): on a slice marked
haemorrhage, the subtypes listed are present and the others absent; an empty list leaves
the subtypes unknown. A slice marked no haemorrhage has every subtype absent.

**Reader masks.** A segmentation the reader edited is stored as the label image
:data:`MASK_NAME` (:meth:`CaseFeedback.save_label_image`): ``[i, j, k]`` integers on the
case image's own grid with its voxel-to-RAS (mm) affine, 0 background, 1-5 the subtypes
(:data:`lesion_core.labels.ICH_SUBTYPES` values). Every save is a new version file; no
version is ever overwritten, and a re-run of the model writes none.

Pure Python without torch: the Slicer review imports this module; only
:func:`weak_scans_from_store` imports :mod:`lesion_core.ich.data` (torch), when called.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import FeedbackStoreError
from ..feedback import (CASE_INFO_FILE, CaseFeedback, FeedbackStore, FeedbackStoreWarning,
                        Record)
from ..labels import ICH_SUBTYPE_KEYS
from ..labels import ICH_SUBTYPE_ORDER as SUBTYPE_KEYS  # the five keys, label-value order
from ..volume import Volume

SLICE_KIND = "ich.slice_label"
MASK_NAME = "ich_reader_mask"
_TARGET_PREFIX = "slice:"


def slice_target(slice_index: int) -> str:
    """The record target of slice ``k``: ``"slice:<k>"``."""
    return f"{_TARGET_PREFIX}{int(slice_index)}"


def slice_of_target(target: str) -> int | None:
    """``k`` of a ``"slice:<k>"`` target; None for any other target."""
    text = str(target)
    number = text[len(_TARGET_PREFIX):]
    return int(number) if text.startswith(_TARGET_PREFIX) and number.isdigit() else None


@dataclass(frozen=True)
class SliceLabel:
    """A reader's label of one axial slice.

    Attributes:
        slice: ``k``, 0-based along ``slice_axis`` (see the module notes).
        haemorrhage: True when the slice shows haemorrhage.
        subtypes: the subtype keys marked present, in label-value order.
        slice_axis: the CT's axial array axis (0, 1 or 2) the index counts along.
        record: the standing record (None for a label not read from the store).
    """

    slice: int
    haemorrhage: bool
    subtypes: tuple[str, ...] = ()
    slice_axis: int = 2
    record: Record | None = None

    def labels(self) -> tuple[float | None, ...]:
        """Targets in ``lesion_core.ich.config.CLASSES`` order ("any", then the subtypes):
        1.0 present, 0.0 absent, None unknown (see the module notes)."""
        if not self.haemorrhage:
            return (0.0,) * (1 + len(SUBTYPE_KEYS))
        if not self.subtypes:
            return (1.0,) + (None,) * len(SUBTYPE_KEYS)
        return (1.0,) + tuple(float(k in self.subtypes) for k in SUBTYPE_KEYS)

    def describe(self) -> str:
        """``"haemorrhage: subdural, epidural"``, ``"haemorrhage"`` or ``"no haemorrhage"``."""
        if not self.haemorrhage:
            return "no haemorrhage"
        return "haemorrhage" + (f": {', '.join(self.subtypes)}" if self.subtypes else "")


# ------------------------------------------------------------------ checks


def _whole(value, what: str, low: int, high: int | None, source) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low or (high is not None and value > high):
        allowed = f"{low}-{high}" if high is not None else f"a whole number >= {low}"
        raise FeedbackStoreError(f"{what} {value!r} is not {allowed}",
                                 f"Give the {what} as a whole number", source=source)
    return int(value)


def check_slice_label(slice_index, haemorrhage, subtypes: Iterable[str] = (),
                      slice_axis=2, source=None) -> SliceLabel:
    """The label checked (before anything is written); ``FeedbackStoreError`` naming
    ``source`` when the slice index, the yes/no, a subtype key or the axis is not valid,
    or subtypes are given for a slice without haemorrhage."""
    k = _whole(slice_index, "slice index", 0, None, source)
    axis = _whole(slice_axis, "slice axis", 0, 2, source)
    if not isinstance(haemorrhage, (bool, np.bool_)) and haemorrhage not in (0, 1):
        raise FeedbackStoreError(f"haemorrhage {haemorrhage!r} is not yes or no",
                                 "Pass True (haemorrhage) or False (no haemorrhage)",
                                 source=source)
    if isinstance(subtypes, str):
        subtypes = [subtypes]
    wanted = {str(s).strip().lower() for s in subtypes or ()}
    unknown = sorted(wanted - set(SUBTYPE_KEYS))
    if unknown:
        raise FeedbackStoreError(f"{', '.join(unknown)} is not an ICH subtype",
                                 f"Use {', '.join(SUBTYPE_KEYS)}", source=source)
    if wanted and not haemorrhage:
        raise FeedbackStoreError("a slice without haemorrhage cannot have a subtype",
                                 "Mark the slice haemorrhage, or clear the subtypes",
                                 source=source)
    return SliceLabel(k, bool(haemorrhage), tuple(s for s in SUBTYPE_KEYS if s in wanted), axis)


# ------------------------------------------------------------------ slice labels


def record_slice_label(case: CaseFeedback, slice_index: int, haemorrhage: bool,
                       subtypes: Iterable[str] = (), *, slice_axis: int = 2,
                       reader: str | None = None, model_id: str | None = None,
                       model_version: str | None = None) -> Record:
    """Validate and store one slice label at once (fsync-ed before returning).

    Args:
        slice_index: ``k`` along ``slice_axis`` (see the module notes).
        haemorrhage: True: haemorrhage on the slice; False: none.
        subtypes: subtype keys present (only with ``haemorrhage``).
        slice_axis: the CT's axial array axis (0, 1 or 2).
        reader, model_id, model_version: stored with the record (reader default: login).
    """
    label = check_slice_label(slice_index, haemorrhage, subtypes, slice_axis,
                              case.records_path)
    payload = {"haemorrhage": label.haemorrhage, "subtypes": list(label.subtypes),
               "slice_axis": label.slice_axis}
    return case.record(SLICE_KIND, slice_target(label.slice), payload, reader=reader,
                       model_id=model_id, model_version=model_version)


def undo_slice_label(case: CaseFeedback, record_id: str, reader: str | None = None) -> Record:
    """Take back one slice-label record (an ``undo`` record is appended; the earlier
    standing label of that slice, if any, stands again)."""
    return case.undo(record_id, reader=reader)


def _from_record(record: Record) -> SliceLabel | None:
    """The label of a record; None when the record's target or payload was damaged."""
    k = slice_of_target(record.target)
    payload = record.payload
    try:
        label = check_slice_label(k, payload.get("haemorrhage"), payload.get("subtypes") or (),
                                  payload.get("slice_axis", 2))
    except FeedbackStoreError:
        return None
    return SliceLabel(label.slice, label.haemorrhage, label.subtypes, label.slice_axis, record)


def standing_slice_labels(case: CaseFeedback) -> dict[int, SliceLabel]:
    """The slice labels that stand (latest per slice, not undone): ``{k: label}``, sorted
    by ``k``. A damaged record is left out with a :class:`FeedbackStoreWarning`."""
    labels = {}
    for target, record in case.state().of_kind(SLICE_KIND).items():
        label = _from_record(record)
        if label is None:
            warnings.warn(f"{case.records_path}: slice label {target!r} (record "
                          f"{record.record_id}) cannot be read and is ignored",
                          FeedbackStoreWarning, stacklevel=2)
            continue
        labels[label.slice] = label
    return dict(sorted(labels.items()))


# ------------------------------------------------------------------ reader masks


def check_reader_mask(volume: Volume, source=None) -> Volume:
    """The mask as ``uint8`` 0-5 on the same grid; ``FeedbackStoreError`` when it is not a
    3D label map of background and the five subtype values."""
    array = np.asarray(volume.array)
    if array.ndim != 3 or array.dtype.kind not in "uib":
        raise FeedbackStoreError(f"a reader mask must be a 3D label map, not {array.ndim}D "
                                 f"{array.dtype}", "Export the segmentation as a label map",
                                 source=source)
    values = set(np.unique(array).tolist()) - {0}
    if not values <= set(ICH_SUBTYPE_KEYS):
        raise FeedbackStoreError(
            f"the mask holds label value(s) {sorted(values - set(ICH_SUBTYPE_KEYS))}, not "
            "an ICH subtype (1-5)", "Name each segment after its subtype, e.g. 'Subdural "
            "haemorrhage', or remove the other segments", source=source)
    return volume.with_array(array.astype(np.uint8))


def save_reader_mask(case: CaseFeedback, volume: Volume, *, reader: str | None = None,
                     model_id: str | None = None, model_version: str | None = None
                     ) -> Record:
    """Store a new version of the reader's mask (see the module notes); earlier versions
    are kept. Returns the ``label_image`` record (payload ``file``, ``version``)."""
    mask = check_reader_mask(volume, case.labels_dir)
    present = sorted(set(np.unique(mask.array).tolist()) - {0})
    return case.save_label_image(MASK_NAME, mask, reader=reader, model_id=model_id,
                                 model_version=model_version,
                                 payload={"subtypes": [ICH_SUBTYPE_KEYS[v] for v in present]})


def reader_mask_versions(case: CaseFeedback) -> list[Path]:
    """Every stored version of the reader's mask, oldest first."""
    return case.label_versions(MASK_NAME)


def latest_reader_mask(case: CaseFeedback) -> Volume | None:
    """The standing version of the reader's mask (latest not undone), or None when the
    reader never saved one. Its ``meta["version"]`` is the version number."""
    if not reader_mask_versions(case):
        return None
    mask = case.load_label_image(MASK_NAME)
    name = Path(str(mask.source)).name
    mask.meta["version"] = int(name[len(MASK_NAME) + 2:-len(".nii.gz")])
    return mask


# ------------------------------------------------------------------ training


def labelled_cases(store_root: str | Path) -> dict[str, dict[int, SliceLabel]]:
    """``{case id: standing slice labels}`` of every case of a store that has any (no
    image is opened; torch is not needed)."""
    store = FeedbackStore(store_root)
    found = {}
    for case_id in store.cases():
        labels = standing_slice_labels(store.case(case_id))
        if labels:
            found[case_id] = labels
    return found


def _single_axis(case_id: str, labels: dict[int, SliceLabel], source) -> dict[int, SliceLabel]:
    """The labels counted along the case's slice axis: the axis most of its labels count
    along (a tie: that of the latest label). Labels along another axis (written by a
    reading that took another axis as axial) are left out with a warning."""
    votes = Counter(lab.slice_axis for lab in labels.values())
    latest = {lab.slice_axis: lab.record.time if lab.record else "" for lab in
              sorted(labels.values(), key=lambda lab: lab.record.time if lab.record else "")}
    axis = max(votes, key=lambda a: (votes[a], latest[a]))
    kept = {k: lab for k, lab in labels.items() if lab.slice_axis == axis}
    if len(kept) < len(labels):
        warnings.warn(f"{source}: {len(labels) - len(kept)} slice label(s) of case {case_id} "
                      f"count along another axis than axis {axis} and are ignored",
                      FeedbackStoreWarning, stacklevel=3)
    return kept


def weak_scans_from_store(store_root: str | Path) -> list:
    """Every case of a store with standing slice labels as a
    :class:`lesion_core.ich.data.WeakScan`: ``scan`` = case id, ``image`` = the image of
    ``case.json``, scan-level labels unknown, and one ``(k, labels)`` pair per labelled
    slice (:meth:`SliceLabel.labels`); unlabelled slices are absent (unknown).

    Raises:
        FeedbackStoreError: a case with labels names no image, or its image is gone (the
            error names ``case.json`` and what to do).
    """
    from .data import WeakScan

    scans = []
    for case_id, labels in labelled_cases(store_root).items():
        case = FeedbackStore(store_root).case(case_id)
        info_path = case.folder / CASE_INFO_FILE
        image = case.info().get("image")
        if not image:
            raise FeedbackStoreError(
                "this case has ICH slice labels but names no image",
                "Open the CT in ICH WeakSeg and mark one slice (it names the image), or "
                "remove the case folder", source=info_path)
        if not Path(image).exists():
            raise FeedbackStoreError(f"the case's image {image} does not exist",
                                     "Put the image back at that path, or remove the case "
                                     "folder", source=info_path)
        kept = _single_axis(case_id, labels, info_path)
        slices = tuple((k, kept[k].labels()) for k in sorted(kept))
        scans.append(WeakScan(case_id, str(image), slices=slices))
    return scans


__all__ = ["MASK_NAME", "SLICE_KIND", "SUBTYPE_KEYS", "SliceLabel", "check_reader_mask",
           "check_slice_label", "labelled_cases", "latest_reader_mask",
           "reader_mask_versions", "record_slice_label", "save_reader_mask", "slice_of_target",
           "slice_target", "standing_slice_labels", "undo_slice_label",
           "weak_scans_from_store"]

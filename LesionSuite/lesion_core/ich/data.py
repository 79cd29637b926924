"""Weak-label training data of ICHWeakSeg: CT images and image-level labels. Nothing else.

A weak-label table (CSV) has these columns only:

- ``scan``: an identifier; ``image``: the CT (NIfTI, NRRD or a DICOM folder; relative
  paths are relative to the table's folder);
- ``slice``: empty for a scan-level row, else the 0-based index of an axial slice along
  the CT's axial array axis (the axis nearest superior-inferior), in the file's voxel order;
- ``any`` and the five subtypes of :data:`~lesion_core.ich.config.SUBTYPES`: 1 present,
  0 absent, empty unknown. ``any = 0`` makes unknown subtypes 0; a present subtype makes
  an unknown ``any`` 1.

A scan has at most one scan-level row and any number of slice rows (all naming the same
image). Any other column is refused, and so is an image whose file name marks it as
ground truth or a label map (:data:`TRUTH_WORDS`): the loader cannot be given voxel
labels. :class:`WeakLabelDataset` opens nothing but each scan's ``image`` and records
every path it opens in ``opened`` (the tests check it).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from .. import io as lesion_io
from ..errors import CohortError
from ..tables import read_csv_records, read_subject_targets
from ..volume import Volume
from .config import CLASSES, SUBTYPES, ICHConfig
from .preprocess import SliceStack, cached_stack

COLUMNS = ("scan", "image", "slice") + CLASSES
#: File-name fragments of ground-truth and label images, refused as training input.
TRUTH_WORDS = ("truth", "mask", "label", "_seg", ".seg.", "annotation")

Labels = tuple  # tuple[float | None, ...] in CLASSES order


class WeakLabelTableError(CohortError):
    """A weak-label table (or a synthetic cohort's labels) that cannot be used for training."""


#: What to do about a synthetic cohort whose labels cannot be read.
_COHORT_FIX = "regenerate the cohort with `lesion-suite synth ich --out DIR`"


@dataclass(frozen=True)
class WeakScan:
    """One scan of a weak-label table: scan-level labels and ``(CT slice index, labels)``
    pairs, labels in :data:`CLASSES` order (``None`` = unknown)."""

    scan: str
    image: str
    labels: Labels = (None,) * len(CLASSES)
    slices: tuple[tuple[int, Labels], ...] = ()


def refuse_truth_file(path: str | Path, source=None) -> None:
    """Raise when a file name marks a voxel label map (never training input here)."""
    name = Path(str(path)).name.lower()
    if any(word in name for word in TRUTH_WORDS):
        raise WeakLabelTableError(
            f"{Path(str(path)).name} is a label map or ground truth, not a CT image",
            "give the CT image; this model learns from image-level labels only", source)


def _value(raw, column: str, where: str, source) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if value not in (0.0, 1.0):
        raise WeakLabelTableError(f"{where}: {column} = {raw!r} is not 0 or 1",
                                  "write 1 (present), 0 (absent) or leave it empty", source)
    return value


def _complete(values: Sequence[float | None]) -> Labels:
    """Fill what the labels imply: any = 0 -> subtypes 0; a subtype 1 -> any = 1."""
    values = list(values)
    if values[0] == 0.0:
        values[1:] = [0.0 if v is None else v for v in values[1:]]
    if values[0] is None and any(v == 1.0 for v in values[1:]):
        values[0] = 1.0
    return tuple(values)


def parse_rows(records: Iterable[Mapping], source=None, base: Path | None = None) -> list[WeakScan]:
    """Validate table records (dicts of column -> value) into :class:`WeakScan` objects."""
    scans: dict[str, dict] = {}
    for record in records:
        unknown = [c for c in record if c not in COLUMNS]
        if unknown:
            truthy = [c for c in unknown if any(w in str(c).lower() for w in TRUTH_WORDS)]
            why = " (voxel labels are never training input)" if truthy else ""
            raise WeakLabelTableError(f"unknown column(s) {', '.join(map(str, unknown))}{why}",
                                      f"use only {', '.join(COLUMNS)}", source)
        scan, image = str(record.get("scan") or "").strip(), str(record.get("image") or "").strip()
        if not scan or not image:
            raise WeakLabelTableError("a row lacks its scan or image", "fill both columns", source)
        refuse_truth_file(image, source)
        if base is not None and not Path(image).is_absolute():
            image = str(base / image)
        entry = scans.setdefault(scan, {"image": image, "labels": None, "slices": {}})
        if entry["image"] != image:
            raise WeakLabelTableError(f"scan {scan} names two images", "one image per scan", source)
        raw_slice = str(record.get("slice") or "").strip()
        where = f"scan {scan}" + (f" slice {raw_slice}" if raw_slice else "")
        labels = _complete([_value(record.get(c), c, where, source) for c in CLASSES])
        if not raw_slice:
            if entry["labels"] is not None:
                raise WeakLabelTableError(f"scan {scan} has two scan-level rows", "keep one", source)
            entry["labels"] = labels
            continue
        if not raw_slice.isdigit() or int(raw_slice) in entry["slices"]:
            raise WeakLabelTableError(f"{where}: the slice index is not a new whole number >= 0",
                                      "number each labelled slice once, from 0", source)
        entry["slices"][int(raw_slice)] = labels
    return [WeakScan(scan, e["image"], e["labels"] or (None,) * len(CLASSES),
                     tuple(sorted(e["slices"].items()))) for scan, e in scans.items()]


def read_weak_table(path: str | Path) -> list[WeakScan]:
    """Read and validate a weak-label CSV (see the module notes)."""
    path = Path(path)
    return parse_rows(read_csv_records(path, WeakLabelTableError), source=path,
                      base=path.parent)


def write_weak_table(scans: Sequence[WeakScan], path: str | Path) -> Path:
    """Write scans as a weak-label CSV (one scan-level row each, then its slice rows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = lambda v: "" if v is None else f"{v:g}"  # noqa: E731
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for s in scans:
            writer.writerow([s.scan, s.image, ""] + [cell(v) for v in s.labels])
            for index, labels in s.slices:
                writer.writerow([s.scan, s.image, index] + [cell(v) for v in labels])
    return path


def table_from_synthetic_cohort(folder: str | Path, slice_level: bool = True,
                                subtypes: bool = True) -> list[WeakScan]:
    """Scans of a folder written by ``lesion_core.synth.make_cohort`` (kind ``"ich"``).

    Reads only the ``subject``, ``ct`` and ``targets`` columns of ``ich_labels.csv`` and,
    from each ``targets.json``, scan presence, subtypes and ``targets.slices`` (kept only
    when the CT was acquired in axial slices). Truth columns are never looked at.
    ``slice_level=False`` keeps scan labels only; ``subtypes=False`` keeps "any" only.
    A table or targets file of another shape is one :class:`WeakLabelTableError` naming it.
    """
    table = Path(folder) / "ich_labels.csv"
    try:
        cohort = [{k: r[k] for k in ("subject", "ct", "targets")}
                  for r in read_csv_records(table, WeakLabelTableError, _COHORT_FIX)]
    except KeyError as exc:
        raise WeakLabelTableError(f"the table has no column {exc}", _COHORT_FIX, table) from exc
    scans = []
    for record in cohort:
        source = Path(record["targets"])
        stored = read_subject_targets(source, _COHORT_FIX)
        try:
            scans.append(_scan_of_targets(record, stored, slice_level, subtypes))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # The file is JSON but not what `synth ich` writes (edited, or another kind).
            raise WeakLabelTableError(f"the targets are not those of a synthetic ICH subject "
                                      f"({type(exc).__name__}: {exc})", _COHORT_FIX,
                                      source) from exc
    return scans


def _scan_of_targets(record: dict, stored: dict, slice_level: bool,
                     subtypes: bool) -> WeakScan:
    """The :class:`WeakScan` of one cohort row and its ``targets.json`` (as read)."""
    targets = stored["targets"]
    axial = stored.get("acquisition", {}).get("CT", {}).get("slice_axis", 2) == 2

    def labels(present: bool, names: Iterable[str]) -> Labels:
        names = set(names)
        return _complete([float(present)] + [float(k in names) if subtypes else None
                                             for k in SUBTYPES])

    slices = tuple((int(s["index"]), labels(s["ich"], s["subtypes"]))
                   for s in targets.get("slices", [])) if slice_level and axial else ()
    return WeakScan(record["subject"], record["ct"],
                    labels(bool(targets["ich_present"]), targets.get("subtypes", [])), slices)


@dataclass
class WeakSample:
    """One preprocessed scan and its targets (``NaN`` = unknown), :data:`CLASSES` order.

    Attributes:
        slice_targets: ``float32 [S, K]`` on the working slices.
        scan_targets: ``float32 [K]``; where the table gave none, derived from the slices
            (positive if any slice is, negative if all slices are known negatives).
    """

    scan: str
    stack: SliceStack
    slice_targets: torch.Tensor
    scan_targets: torch.Tensor


def weak_sample(scan: WeakScan, stack: SliceStack) -> WeakSample:
    """The targets of ``scan`` mapped onto its preprocessed ``stack``."""
    per_slice = stack.slice_targets(dict(scan.slices), len(CLASSES))
    scan_targets = np.array([np.nan if v is None else v for v in scan.labels], np.float32)
    derived = np.where(np.isnan(per_slice).any(axis=0), np.nan, 0.0)
    derived = np.where((per_slice == 1.0).any(axis=0), 1.0, derived)
    scan_targets = np.where(np.isnan(scan_targets), derived, scan_targets).astype(np.float32)
    return WeakSample(scan.scan, stack, torch.from_numpy(per_slice), torch.from_numpy(scan_targets))


class WeakLabelDataset(torch.utils.data.Dataset):
    """Scans of a weak-label table as :class:`WeakSample` (read once, then kept in memory
    when ``cache``).

    The only file it opens per scan is ``scan.image``, through :meth:`read`, which refuses
    label-map names and appends each path to :attr:`opened`. With ``cache_dir``, the
    preprocessed stacks are kept on disk there (:func:`~.preprocess.cached_stack`), and a
    later run opens no image whose entry is there.
    """

    def __init__(self, scans: Sequence[WeakScan], config: ICHConfig = ICHConfig(),
                 cache: bool = True, cache_dir: str | Path | None = None):
        self.scans = list(scans)
        self.config = config
        self.cache = cache
        self.cache_dir = cache_dir
        self.opened: list[str] = []
        self._cached: dict[int, WeakSample] = {}

    def __len__(self) -> int:
        return len(self.scans)

    def read(self, path: str) -> Volume:
        refuse_truth_file(path)
        self.opened.append(str(path))
        return lesion_io.read_volume(path)

    def __getitem__(self, index: int) -> WeakSample:
        if index in self._cached:
            return self._cached[index]
        scan = self.scans[index]
        refuse_truth_file(scan.image)  # also when the stack comes from the disk cache
        sample = weak_sample(scan, cached_stack(scan.image, self.read, self.config,
                                                self.cache_dir))
        if self.cache:
            self._cached[index] = sample
        return sample

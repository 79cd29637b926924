"""Training data of WMH-DualTasker: a ratings table and the images it names. Nothing else.

A ratings table (CSV) has one row per subject and only these columns:

- ``subject``: an identifier;
- ``image``: the FLAIR (NIfTI, NRRD or a DICOM folder; relative paths are relative to the
  table's folder);
- ``total``: the ARWMC total 0-30 (optional, empty = unknown);
- one column per region-side of :data:`~lesion_core.atlas.arwmc.REGIONS` (optional, 0-3,
  empty = not rated).

Any other column is refused, and so is an image whose file name marks it as ground truth
(``*_truth*``) or a label map: the loader has no way to be given voxel labels, and
:class:`RatingsDataset` opens nothing but the ``image`` of each row. The brain mask and
the region atlas come from a *masker* callable (registration to MNI for real data, the
known transform for synthetic subjects). Preprocessed subjects can be kept in an on-disk
array cache (:func:`lesion_core.training.cache.cached_arrays`), so a rerun neither reads
nor registers an image again.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch

from .. import io as lesion_io
from ..errors import CohortError
from ..atlas.arwmc import REGIONS, arwmc_atlas_mni
from ..tables import read_csv_records, read_subject_targets
from ..training import EpochOrder, SampleContext
from ..training.cache import cached_arrays
from ..volume import Volume
from .config import DualTaskerConfig
from .preprocess import Preprocessed, preprocess, preprocessing_settings

COLUMNS = ("subject", "image", "total") + REGIONS
_LABEL_WORDS = ("truth", "label", "mask", "seg", "lesion", "wmh")

#: ``masker(image, subject_id) -> (brain_mask, region_atlas)``, Volumes in the image's RAS
#: world (any grid; usually the image grid). Atlas values as in ``REGIONS`` (label = index+1).
#: A masker with a ``cache_name`` attribute (how it makes its masks, e.g. "registration to
#: MNI (FLAIR)") lets the training loaders keep their preprocessed subjects on disk; one
#: without it is never cached, as nothing would tell its masks apart.
Masker = Callable[[Volume, str], tuple[Volume, Volume]]

T = TypeVar("T")

#: Part of every cache key of preprocessed training subjects: raise it when preprocessing
#: changes, so no entry made by older code is read.
PREPROCESS_VERSION = 1


def cached_subject(cache_dir: str | Path | None, kind: str, sources: Sequence[str],
                   masker: Masker, config: DualTaskerConfig,
                   compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of one training subject of ``kind``, made from the files ``sources`` by
    ``compute`` (which applies ``masker`` and ``config``), from ``cache_dir`` when they are
    there (see :data:`Masker` for when they are cached)."""
    name = getattr(masker, "cache_name", None)
    key = [f"wmh {kind} v{PREPROCESS_VERSION}", [Path(s) for s in sources], name,
           preprocessing_settings(config)]
    return cached_arrays(cache_dir if name is not None else None, key, compute)


def next_batch(order: EpochOrder, items: Sequence[T], ctx: SampleContext) -> list[T]:
    """The next ``ctx.batch_size`` training subjects (all of them when there are fewer) in
    epoch order (``order``, the sampler state a checkpoint carries)."""
    count = len(items)
    return [items[i] for i in order.take(min(ctx.batch_size, count), count, ctx.generator)]


class RatingsTableError(CohortError):
    """A ratings table (or a synthetic cohort's ratings) that cannot be used for training."""


@dataclass(frozen=True)
class RatingRow:
    """One subject of a ratings table. ``regions``: ratings in ``REGIONS`` order, ``None``
    where not rated; ``total``: ``None`` when unknown."""

    subject: str
    image: str
    total: float | None = None
    regions: tuple[float | None, ...] = (None,) * len(REGIONS)

    def region_tensor(self) -> torch.Tensor:
        """``[R]`` float tensor, ``NaN`` where not rated."""
        return torch.tensor([math.nan if v is None else float(v) for v in self.regions])

    def total_tensor(self) -> torch.Tensor:
        return torch.tensor(math.nan if self.total is None else float(self.total))


def _number(value, column: str, subject: str, high: float, source) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RatingsTableError(f"subject {subject}: {column} = {value!r} is not a number",
                                f"give a number 0-{high:g} or leave it empty", source) from None
    if math.isnan(number):
        return None
    if not 0 <= number <= high:
        raise RatingsTableError(f"subject {subject}: {column} = {number:g} is outside 0-{high:g}",
                                "correct the rating", source)
    return number


def parse_rows(records: Iterable[dict], source: str | Path | None = None,
               base: Path | None = None) -> list[RatingRow]:
    """Validate table records (dicts of column -> value) into :class:`RatingRow`."""
    rows = []
    for record in records:
        unknown = [c for c in record if c not in COLUMNS]
        if unknown:
            labelled = [c for c in unknown if any(w in c.lower() for w in _LABEL_WORDS)]
            why = " (voxel labels are never training input)" if labelled else ""
            raise RatingsTableError(f"unknown column(s) {', '.join(map(str, unknown))}{why}",
                                    f"use only {', '.join(COLUMNS)}", source)
        subject = str(record.get("subject") or "").strip()
        image = str(record.get("image") or "").strip()
        if not subject or not image:
            raise RatingsTableError("a row lacks its subject or image", "fill both columns",
                                    source)
        name = Path(image).name.lower()
        if "_truth" in name or name.endswith(".seg.nrrd") or "label" in name:
            raise RatingsTableError(f"subject {subject}: the image {image} is a label map",
                                    "give the FLAIR image; ratings are the only supervision",
                                    source)
        if base is not None and not Path(image).is_absolute():
            image = str(base / image)
        total = _number(record.get("total"), "total", subject, 30, source)
        regions = tuple(_number(record.get(r), r, subject, 3, source) for r in REGIONS)
        if total is None and all(v is None for v in regions):
            raise RatingsTableError(f"subject {subject} has no rating", "give a total or "
                                    "per-region ratings, or leave the subject out", source)
        rows.append(RatingRow(subject, image, total, regions))
    return rows


#: What to do about a ratings table that cannot be read or has no subjects.
_TABLE_FIX = ("give a ratings CSV with a header row (subject, image, total and region "
              "columns) and one row per subject")
#: ... and about a synthetic cohort whose ratings cannot be read.
_COHORT_FIX = "regenerate the cohort with `lesion-suite synth wmh --out DIR`"


def read_ratings_table(path: str | Path) -> list[RatingRow]:
    """Read and validate a ratings CSV (see the module notes)."""
    path = Path(path)
    return parse_rows(read_csv_records(path, RatingsTableError, _TABLE_FIX), source=path,
                      base=path.parent)


def write_ratings_table(rows: Sequence[RatingRow], path: str | Path) -> Path:
    """Write rows as a ratings CSV (empty cells for missing ratings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            cells = [row.total, *row.regions]
            writer.writerow([row.subject, row.image] + ["" if v is None else f"{v:g}" for v in cells])
    return path


def table_from_synthetic_cohort(folder: str | Path, modality: str = "FLAIR",
                                per_region: bool = True, total: bool = True) -> list[RatingRow]:
    """Rows from a folder written by :func:`lesion_core.synth.make_cohort` (kind ``"wmh"``).

    Keeps the subject, the ``modality`` image and the ARWMC ratings of ``targets.json``;
    every truth column (label-map paths) and every other target (lesion volumes) is dropped.
    ``per_region`` / ``total``: which ratings to keep (e.g. a site with totals only).
    """
    folder = Path(folder)
    table = folder / "wmh_labels.csv"
    cohort = read_csv_records(table, RatingsTableError, _COHORT_FIX)
    rows = []
    for record in cohort:
        source = Path(record["targets"])
        targets = read_subject_targets(source, _COHORT_FIX)["targets"]
        ratings = targets.get("arwmc", {})
        if not isinstance(ratings, dict):
            raise RatingsTableError("'arwmc' is not an object of ratings by region-side",
                                    _COHORT_FIX, source)
        rows.append({"subject": record["subject"], "image": record[modality.lower()],
                     "total": targets.get("arwmc_total") if total else None,
                     **{r: ratings.get(r) if per_region else None for r in REGIONS}})
    return parse_rows(rows, source=table)


@dataclass
class RatingSample:
    """One preprocessed subject and its ratings (``NaN`` = missing)."""

    subject: str
    data: Preprocessed
    region_ratings: torch.Tensor   # [R]
    total: torch.Tensor            # []


class RatingsDataset(torch.utils.data.Dataset):
    """Rows of a ratings table as :class:`RatingSample` (read once, then kept in memory
    when ``cache``; on disk in ``cache_dir`` when given and the masker has a
    ``cache_name``).

    Opens only ``row.image`` (through :func:`lesion_core.io.read_volume`); the brain mask
    and region atlas come from ``masker``. The samples hold no bias field (prediction
    needs it, training does not).
    """

    def __init__(self, rows: Sequence[RatingRow], masker: Masker,
                 config: DualTaskerConfig = DualTaskerConfig(), cache: bool = True,
                 cache_dir: str | Path | None = None):
        self.rows = list(rows)
        self.masker = masker
        self.config = config
        self.cache = cache
        self.cache_dir = cache_dir
        self._cached: dict[int, RatingSample] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> RatingSample:
        if index in self._cached:
            return self._cached[index]
        row = self.rows[index]

        def compute() -> dict[str, np.ndarray]:
            image = lesion_io.read_volume(row.image)
            brain, atlas = self.masker(image, row.subject)
            data = preprocess(image, brain, atlas, self.config)
            return dataclasses.replace(data, bias=None).to_arrays()

        arrays = cached_subject(self.cache_dir, "ratings sample", [row.image], self.masker,
                                self.config, compute)
        sample = RatingSample(row.subject, Preprocessed.from_arrays(arrays),
                              row.region_tensor(), row.total_tensor())
        if self.cache:
            self._cached[index] = sample
        return sample


def collate(samples: Sequence[RatingSample]) -> dict[str, torch.Tensor]:
    """Stack samples: ``image`` ``[B, 1, I, J, K]``, ``regions`` ``[B, I, J, K]``, ``brain``
    ``[B, I, J, K]``, ``region_ratings`` ``[B, R]``, ``total`` ``[B]``."""
    return {"image": torch.stack([s.data.image for s in samples]),
            "regions": torch.stack([s.data.regions for s in samples]),
            "brain": torch.stack([s.data.brain for s in samples]),
            "region_ratings": torch.stack([s.region_ratings for s in samples]),
            "total": torch.stack([s.total for s in samples])}


def known_transform_masks(subject) -> tuple[Volume, Volume]:
    """(brain mask, ARWMC atlas) of a synthetic subject from its *known* MNI transform, on
    its anatomy grid (``subject.anatomy``); for fast synthetic training without registration."""
    anatomy = subject.anatomy
    labels, affine, _ = arwmc_atlas_mni()
    atlas = anatomy.sample_mni_map(labels, affine, order=0).astype(np.uint8)
    return (anatomy.grid.with_array(anatomy.brain.astype(np.uint8)),
            anatomy.grid.with_array(atlas))


def registration_masker(modality: str = "FLAIR") -> Masker:
    """A masker that registers each image to MNI (affine, mutual information) through
    :func:`lesion_core.wmh.atlases.subject_atlases`: the same brain mask and filled ARWMC
    atlas that prediction uses."""
    def masker(image: Volume, subject: str) -> tuple[Volume, Volume]:
        from .atlases import subject_atlases

        atlases = subject_atlases(image, modality)
        return atlases.brain, atlases.arwmc
    masker.cache_name = f"registration to MNI ({modality})"
    return masker

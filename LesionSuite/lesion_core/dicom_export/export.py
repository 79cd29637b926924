"""One result as DICOM: the SEG and the SR of a task's prediction, from what it wrote.

The entry points:

* :func:`export_result` (the Slicer logic's and any caller's): a task name, the label
  map (a :class:`~lesion_core.volume.Volume` on the source grid), the summary document
  (the JSON ``predict`` writes) and the source series' pydicom datasets in slice order
  -> a :class:`DicomResult` (the SEG and SR datasets, not yet written);
* :func:`export_case` (``lesion-suite <task> predict --dicom``): the same from the source
  files, written as ``<stem>_seg.dcm`` and ``<stem>_sr.dcm`` into a folder (the output
  folder's staging folder, so they are published with the other files);
* :func:`check_dicom_input` / :func:`source_files`: refuse a non-DICOM source in one
  clear error before any work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import CommandError
from ..volume import Volume
from .review import Review
from .segments import segment_plan
from .specs import AlgorithmInfo, SegmentPlan

if TYPE_CHECKING:
    from pydicom import Dataset

#: File names in the output folder (``{stem}``: the task's stem, or the task name).
SEG_FILE = "{stem}_seg.dcm"
SR_FILE = "{stem}_sr.dcm"
#: The role, among a task's output files, of the summary document the export reads.
SUMMARY_ROLES = {"wmh": "summary", "cmb": "json", "ich": "summary"}
#: The algorithm each task's results come from (the model's name and version are added).
ALGORITHM_NAMES = {"wmh": "LesionSuite WMH", "cmb": "LesionSuite CMB detector",
                   "ich": "LesionSuite ICH WeakSeg"}
_CONTENT_LABELS = {"wmh": "WMH", "cmb": "CMB", "ich": "ICH"}
_DESCRIPTIONS = {"wmh": "White matter hyperintensities", "cmb": "Cerebral microbleeds",
                 "ich": "Intracranial haemorrhage by subtype"}


@dataclass
class DicomResult:
    """The SEG and SR of one result (pydicom datasets) and the segments they hold."""

    seg: "Dataset"
    sr: "Dataset"
    plan: SegmentPlan

    def write(self, folder: str | Path, stem: str) -> dict[str, Path]:
        """Write ``<stem>_seg.dcm`` and ``<stem>_sr.dcm`` into ``folder``; role -> path."""
        folder = Path(folder)
        paths = {"dicom_seg": folder / SEG_FILE.format(stem=stem),
                 "dicom_sr": folder / SR_FILE.format(stem=stem)}
        self.seg.save_as(paths["dicom_seg"], enforce_file_format=True)
        self.sr.save_as(paths["dicom_sr"], enforce_file_format=True)
        return paths


def algorithm_info(task: str, summary: dict) -> AlgorithmInfo:
    """The algorithm of a result: the task's, with the model of its summary (WMH:
    ``model`` / ``model_version``; CMB, ICH: ``model: {name, version}``)."""
    from .. import __version__

    model = summary.get("model")
    if isinstance(model, dict):
        name, version = model.get("name"), model.get("version")
    else:
        name, version = model, summary.get("model_version")
    return AlgorithmInfo(ALGORITHM_NAMES.get(task, f"LesionSuite {task}"), __version__,
                         str(name or "unknown"), str(version or "unknown"))


def export_result(task: str, labels: Volume, summary: dict,
                  source_datasets: Sequence["Dataset"], algorithm: AlgorithmInfo | None = None,
                  review: Review | None = None) -> DicomResult:
    """The SEG and SR of ``task``'s result.

    ``labels``: the result's label map on the source grid (``[i, j, k]``: column, row,
    slice in the order of ``source_datasets``), e.g. ``prediction.labels`` or a label
    node's volume; ``summary``: the result's JSON document (``<stem>_summary.json``,
    ``cmb_candidates.json``, ``ich_summary.json``); ``source_datasets``: the series the
    result was computed on, in slice order (pixel data not needed); ``review``: a
    reader's decisions on it (:func:`.review.review_from_store`), or None.
    Raises ValueError when ``labels`` is not on the source grid.
    """
    from .measurements import measurement_groups
    from .seg import build_seg
    from .sr import build_sr

    algorithm = algorithm or algorithm_info(task, summary)
    plan = segment_plan(task, labels, summary)
    seg = build_seg(source_datasets, plan, algorithm, _CONTENT_LABELS.get(task, "LESIONS"),
                    f"{_DESCRIPTIONS.get(task, task)} ({algorithm.model_name})")
    groups = measurement_groups(task, seg, plan, summary, source_datasets, algorithm, review)
    reader = review.reader if review else None
    return DicomResult(seg, build_sr(source_datasets, seg, groups, algorithm, reader), plan)


# ------------------------------------------------------------------ source series
def check_dicom_input(path: str | Path) -> None:
    """Refuse (one CommandError) a ``--dicom`` export whose input is not a DICOM series:
    a SEG and an SR reference the source images, which only a DICOM input has."""
    from ..io import image_format

    if image_format(path) != "dicom":
        raise CommandError("--dicom writes a DICOM SEG and SR that reference the source "
                           "DICOM series, but this input is not DICOM",
                           "give the DICOM series folder, or leave out --dicom", path)


def source_files(volume: Volume) -> list[str]:
    """The files of the series ``volume`` was read from, in slice order; one
    CommandError when it was not read from DICOM, or from one multi-frame file."""
    files = list(volume.meta.get("dicom_files") or [])
    if volume.meta.get("source_format") != "dicom" or not files:
        raise CommandError("--dicom needs an image read from a DICOM series",
                           "give the DICOM series folder, or leave out --dicom", volume.source)
    if len(set(files)) != len(files):
        raise CommandError("--dicom cannot reference the frames of an enhanced multi-frame "
                           "DICOM file yet",
                           "give a series of single-frame images, or leave out --dicom",
                           volume.source)
    return files


def read_source_datasets(files: Sequence[str | Path]) -> list["Dataset"]:
    """The headers of ``files`` (pixel data left out: the SEG and SR need none)."""
    import pydicom

    return [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]


def export_case(task: str, labels: Volume, summary_path: str | Path,
                files: Sequence[str | Path], folder: str | Path, stem: str | None = None,
                review: Review | None = None) -> dict[str, Path]:
    """Write ``task``'s SEG and SR into ``folder`` (``<stem>_seg.dcm``, ``<stem>_sr.dcm``;
    stem default: the task name) from its label map, the summary file it just wrote and
    the source series' ``files`` (slice order); role -> path."""
    summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    result = export_result(task, labels, summary, read_source_datasets(files), review=review)
    return result.write(folder, stem or task)

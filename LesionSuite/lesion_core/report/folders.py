"""Prediction folders: which task wrote one, and its files read with that task's torch-free
readers (:meth:`lesion_core.tasks.Task.read_outputs`).

A folder holds a task's result when its defining file is there: WMH ``<stem>_summary.json``
beside ``<stem>_ratings.csv`` (the stem is ``--stem`` of ``wmh predict``, default
``wmh``), CMB ``cmb_candidates.json``, ICH ``ich_summary.json`` beside ``ich_slices.csv``.
One folder may hold several results (two WMH stems, or results of two tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..errors import CommandError, UnreadableFileError

if TYPE_CHECKING:
    from ..volume import Volume

#: The tasks a report can be made for, in command-line order.
REPORTED_TASKS = ("wmh", "cmb", "ich")
#: How deep :func:`find_predictions` looks below each folder it is given, and how many
#: folders it visits at most (a folder of cases of case folders is depth 2).
SEARCH_DEPTH = 3
_MAX_FOLDERS = 20000
_WMH_SUMMARY = "_summary.json"
#: The file that holds each task's result (``{stem}``: the WMH stem).
SUMMARY_FILES = {"wmh": "{stem}_summary.json", "cmb": "cmb_candidates.json",
                  "ich": "ich_summary.json"}


@dataclass(frozen=True)
class PredictionFolder:
    """One task's result in a folder.

    Attributes:
        task: ``"wmh"``, ``"cmb"`` or ``"ich"``.
        folder: the output folder.
        stem: the WMH file stem (None for the other tasks).
        outputs: role -> parsed table or document, or the path of an image file
            (:meth:`lesion_core.tasks.Task.read_outputs`).
    """

    task: str
    folder: Path
    stem: str | None
    outputs: dict[str, Any]

    @property
    def summary(self) -> dict:
        """The result's JSON document (WMH and ICH summary, CMB candidates file)."""
        return self.outputs["json" if self.task == "cmb" else "summary"]

    @property
    def model(self) -> tuple[str, str]:
        """``(name, version)`` of the model that made the result."""
        model = self.summary.get("model")
        if isinstance(model, dict):
            return str(model.get("name", "?")), str(model.get("version", "?"))
        return str(model), str(self.summary.get("model_version", "?"))

    @property
    def out_of_distribution(self) -> list[str]:
        """Why the input was not a scan the model knows (empty for an ordinary result)."""
        found = self.summary.get("out_of_distribution") or []
        return [str(f) for f in found] if isinstance(found, list) else [str(found)]

    @property
    def image_path(self) -> Path | None:
        """The input image the summary names, or None (a WMH result written before its
        summary named it)."""
        image = self.summary.get("image")
        return Path(image) if isinstance(image, str) and image else None

    @property
    def name(self) -> str:
        """The folder's name, with the stem when it is not the default one."""
        stem = f" ({self.stem})" if self.stem not in (None, "wmh") else ""
        return f"{self.folder.name}{stem}"

    def file(self, role: str) -> Path:
        """The path of an image file of the result (``labels``, ``activation``...)."""
        return Path(self.outputs[role])

    def array_on(self, role: str, image: Volume) -> np.ndarray:
        """The image file of ``role`` as an ``[i, j, k]`` array on ``image``'s grid (where
        predict wrote it); a file on another grid means the wrong image was given: one
        clear error."""
        from ..io import read_volume

        path = self.file(role)
        volume = read_volume(path)
        same = volume.shape[:3] == image.shape[:3] and np.allclose(
            volume.affine, image.affine, atol=1e-3, rtol=0)
        if not same:
            raise CommandError(
                f"the result's {role} map ({'x'.join(map(str, volume.shape[:3]))} voxels) is "
                f"not on the grid of the image given "
                f"({'x'.join(map(str, image.shape[:3]))} voxels, or another position)",
                "give the image this prediction was made on (--image)", path)
        return np.asarray(volume.array)


def detect(folder: Path) -> list[tuple[str, str | None]]:
    """``(task, stem)`` of every result in ``folder`` (see the module notes)."""
    found: list[tuple[str, str | None]] = []
    for summary in sorted(folder.glob(f"*{_WMH_SUMMARY}")):
        stem = summary.name[:-len(_WMH_SUMMARY)]
        if stem and (folder / f"{stem}_ratings.csv").is_file():
            found.append(("wmh", stem))
    if (folder / "cmb_candidates.json").is_file():
        found.append(("cmb", None))
    if (folder / "ich_summary.json").is_file() and (folder / "ich_slices.csv").is_file():
        found.append(("ich", None))
    return found


def open_prediction(folder: str | Path, task: str | None = None,
                    stem: str | None = None) -> PredictionFolder:
    """The result of ``task`` (any task when None) in ``folder``, read and checked; a
    missing or damaged file, or a folder without a result, is one clear error."""
    from ..tasks import get_task

    folder = Path(folder)
    if not folder.is_dir():
        raise UnreadableFileError("is not a folder", "give the output folder of a "
                                  "lesion-suite <task> predict run", folder)
    found = [(t, s) for t, s in detect(folder)
             if task in (None, t) and (stem is None or s in (None, stem))]
    if task is not None and not found:
        stem = stem if task == "wmh" else None
        summary = folder / SUMMARY_FILES[task].format(stem=stem or "wmh")
        if not summary.is_file():
            raise UnreadableFileError(
                f"holds no {task.upper()} prediction: {summary.name} is missing",
                f"give the output folder of a lesion-suite {task} predict run", folder)
        found = [(task, stem)]  # the task's own reader names what else is wrong
    if not found:
        raise UnreadableFileError("holds no prediction (no WMH, CMB or ICH summary file)",
                                  "give the output folder of a lesion-suite <task> predict "
                                  "run", folder)
    if len(found) > 1:
        what = ", ".join(t if s is None else f"{t} (--stem {s})" for t, s in found)
        raise CommandError(f"holds several results: {what}",
                           "say which: give the task and, for WMH, --stem", folder)
    name, chosen = found[0]
    outputs = get_task(name).read_outputs(folder, chosen)
    return PredictionFolder(name, folder, chosen if name == "wmh" else None, outputs)


def find_predictions(roots: Iterable[str | Path], task: str | None = None
                     ) -> list[PredictionFolder]:
    """Every result (of ``task``, or any) in each of ``roots`` and the folders below it
    (:data:`SEARCH_DEPTH` levels, hidden folders skipped), in path order; a root that is
    not a folder, or holds no result, is one clear error."""
    results: list[PredictionFolder] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise UnreadableFileError("is not a folder", "give folders of prediction "
                                      "outputs", root)
        found = []
        for folder in prediction_folders(root):
            for name, stem in detect(folder):
                if task in (None, name):
                    found.append(open_prediction(folder, name, stem))
        if not found:
            what = f"{task.upper()} " if task else ""
            raise CommandError(f"holds no {what}prediction folder (searched "
                               f"{SEARCH_DEPTH} levels down)",
                               "give folders written by lesion-suite <task> predict", root)
        results += found
    return results


def prediction_folders(root: Path) -> list[Path]:
    """``root`` and its sub-folders down to :data:`SEARCH_DEPTH`, sorted, breadth first."""
    out, level, visited = [root], [root], 0
    for _ in range(SEARCH_DEPTH):
        below = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            visited += len(children)
            if visited > _MAX_FOLDERS:
                raise CommandError(f"holds more than {_MAX_FOLDERS} folders",
                                   "give the folders of the cases themselves", root)
            below += children
        out += below
        level = below
    return sorted(out)

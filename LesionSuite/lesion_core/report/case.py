"""One case's ``report.html``: a prediction folder and its input image as a page.

Sections (their ``id`` in the page): ``warnings`` (only when the result is marked out of
distribution), ``result`` (model, input, the headline figures), ``images`` (the axial
mosaic with the result drawn on it, :mod:`.mosaic`), ``measurements`` (the task's tables),
then the task's own sections (``reader``: the reader's decisions) and a footer saying what
made the page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

from .. import __version__
from ..errors import CommandError
from ..feedback import CaseFeedback
from ..volume import Volume
from . import cmb, ich, wmh
from .folders import PredictionFolder, open_prediction
from .html import Page, Section, Table, png_figure, render_page
from .mosaic import render_mosaic
from .reader import find_reader_case

#: Each reported task's module (``case_view`` and ``cohort_section``).
VIEWS: dict[str, ModuleType] = {"wmh": wmh, "cmb": cmb, "ich": ich}
#: The file name a case report gets in its prediction folder by default.
REPORT_FILE = "report.html"
#: Slices in the mosaic (fewer when the head has fewer), and tiles per row.
SLICES = 16
COLUMNS = 4
_TITLES = {"wmh": "WMH", "cmb": "Cerebral microbleeds", "ich": "Intracranial haemorrhage"}
NOT_A_DEVICE = ("Not a medical device: the bundled models are trained on synthetic data; "
                "their figures show that the software works, not clinical accuracy.")


@dataclass(frozen=True)
class CaseReport:
    """A built case report: the page, the result it shows, the mosaic's size in pixels
    ``(rows, columns)`` and the seconds it took to build."""

    page: Page
    result: PredictionFolder
    mosaic_shape: tuple[int, int]
    seconds: float

    def html(self) -> str:
        """The page as one self-contained HTML document."""
        return render_page(self.page)


def build_case_report(result: PredictionFolder, image: Volume, image_name: str,
                      reader: CaseFeedback | None = None, slices: int = SLICES) -> CaseReport:
    """The report of ``result`` drawn on ``image`` (the input it was predicted on, named
    ``image_name`` on the page), with the reader's decisions of ``reader`` (a feedback
    store case, or None)."""
    started = time.perf_counter()
    view = VIEWS[result.task].case_view(result, image, reader)
    mosaic = render_mosaic(image, view.family, view.layers, view.markers, view.focus,
                           view.extent, count=slices, columns=COLUMNS)
    hidden = (f" {mosaic.markers_hidden} of {len(view.markers)} circled points lie on "
              "slices not shown (see the tables)." if mosaic.markers_hidden else "")
    caption = (f"{view.caption} {len(mosaic.tiles)} axial slices, bottom to top, in the "
               "radiological convention (the patient's right on the left of each picture, "
               f"anterior at the top); S: height of the slice (mm). Window: "
               f"{mosaic.window.name}.{hidden}")
    name, version = result.model
    sections = []
    if result.out_of_distribution:
        sections.append(Section(
            "warnings", "Out of distribution",
            ("The input is not a scan the model knows; the result was asked for anyway "
             "(--force). Read it with care.",), items=tuple(result.out_of_distribution),
            warning=True))
    facts = (("model", f"{name} {version}"), ("input image", image_name),
             ("prediction folder", str(result.folder))) + view.headline
    sections += [
        Section("result", "Result", tables=(Table("headline", "", (), facts),)),
        Section("images", "Images", legend=view.legend, figures=(png_figure(
            "mosaic", mosaic.rgb, f"axial slices of {image_name} with the result drawn on them",
            caption),)),
        Section("measurements", "Measurements", tables=view.tables),
        *view.sections]
    page = Page(f"{_TITLES[result.task]} report: {result.name}",
                f"{name} {version} on {image_name}", tuple(sections),
                f"Made by lesion-suite {__version__} on "
                f"{datetime.now().strftime('%Y-%m-%d %H:%M')} from the files of the prediction "
                f"folder and its input image. {NOT_A_DEVICE}")
    return CaseReport(page, result, tuple(mosaic.rgb.shape[:2]), time.perf_counter() - started)


def write_case_report(folder: str | Path, task: str | None = None,
                      image: str | Path | None = None, out: str | Path | None = None,
                      stem: str | None = None, series: str | None = None,
                      feedback: str | Path | None = None, case_id: str | None = None,
                      slices: int = SLICES) -> tuple[Path, CaseReport]:
    """Read the prediction in ``folder`` (of ``task``; ``stem`` for WMH) and its input
    ``image`` (default: the image its summary names; ``series``: a DICOM series UID),
    build the report with the decisions of ``feedback`` (a store folder; ``case_id``:
    its case, default the image's) and write it to ``out`` (default
    ``folder/report.html``). Returns the path written and the report."""
    from ..atomic import atomic_write_bytes
    from ..io import read_volume

    result = open_prediction(folder, task, stem)
    image_path = Path(image) if image is not None else result.image_path
    if image_path is None or (image is None and not image_path.exists()):
        named = f" (the summary names {image_path}, which is not there)" if image_path else ""
        raise CommandError(f"the input image of this {result.task.upper()} result is not "
                           f"known{named}", "give it with --image", result.folder)
    volume = read_volume(image_path, series_uid=series)
    reader = (find_reader_case(feedback, volume, image_path, case_id)
              if feedback is not None else None)
    report = build_case_report(result, volume, str(image_path), reader, slices)
    target = Path(out) if out is not None else result.folder / REPORT_FILE
    if target.is_dir():
        raise CommandError("--out names a folder", "give the report's file name, e.g. "
                           "report.html", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, report.html().encode("utf-8"))
    return target, report

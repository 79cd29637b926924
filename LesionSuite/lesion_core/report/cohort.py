"""The cohort page: many prediction folders on one page, with plots.

The results are found under the folders given (:func:`.folders.find_predictions`), of one
task or of all. Sections (their ``id``): ``overview``, then one per task present (``wmh``,
``cmb``, ``ich``): the lesion load distribution (histogram of volumes or counts), WMH's
ARWMC total against WMH volume, CMB's microbleed and rejected-candidate counts, ICH's
volume by subtype, and a table of the cases. A case whose folder holds its
``report.html`` (:mod:`.case`) links to it; the link is relative, so the cohort page and
the case folders can be moved together.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from .. import __version__
from .case import NOT_A_DEVICE, REPORT_FILE, VIEWS
from .folders import REPORTED_TASKS, PredictionFolder, find_predictions
from .html import Link, Page, Section, render_page

#: The cohort page's file name when none is given.
COHORT_FILE = "cohort_report.html"


def case_names(results: Sequence[PredictionFolder], roots: Sequence[Path]) -> list[str]:
    """How the page names each result: its folder relative to the root it was found
    under (the folder's name for a root itself), with a non-default WMH stem."""
    names = []
    for result in results:
        root = next((r for r in roots if _under(result.folder, r)), result.folder.parent)
        relative = result.folder.resolve().relative_to(root.resolve()).as_posix()
        base = relative if relative != "." else result.folder.name
        names.append(base + (f" ({result.stem})" if result.stem not in (None, "wmh") else ""))
    return names


def _under(folder: Path, root: Path) -> bool:
    try:
        folder.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def report_link(result: PredictionFolder, name: str, page_folder: Path) -> Link | str:
    """A link from the page to the case's ``report.html`` when it exists, else the name."""
    report = result.folder / REPORT_FILE
    if not report.is_file():
        return name
    href = Path(os.path.relpath(report.resolve(), page_folder.resolve())).as_posix()
    return Link(name, quote(href))


def build_cohort_page(results: Sequence[PredictionFolder], roots: Sequence[Path],
                      page_folder: Path, title: str = "LesionSuite cohort report") -> Page:
    """The page over ``results`` (found under ``roots``), links relative to
    ``page_folder``."""
    names = case_names(results, roots)
    links = [report_link(r, n, page_folder) for r, n in zip(results, names)]
    sections, counts = [], []
    for task in REPORTED_TASKS:
        chosen = [i for i, r in enumerate(results) if r.task == task]
        if not chosen:
            continue
        counts.append(f"{task.upper()}: {len(chosen)} case(s)")
        sections.append(VIEWS[task].cohort_section(
            [results[i] for i in chosen], [names[i] for i in chosen], [links[i] for i in chosen]))
    linked = sum(isinstance(link, Link) for link in links)
    flagged = sum(bool(r.out_of_distribution) for r in results)
    overview = Section("overview", "Overview", (
        f"{len(results)} result(s) found under {', '.join(str(r) for r in roots)}; "
        f"{linked} with a case report (linked in the tables).",
        f"{flagged} result(s) marked out of distribution." if flagged else
        "No result is marked out of distribution."), items=tuple(counts))
    return Page(title, f"{len(results)} case(s)", (overview, *sections),
                f"Made by lesion-suite {__version__} on "
                f"{datetime.now().strftime('%Y-%m-%d %H:%M')} from the prediction folders' "
                f"files. {NOT_A_DEVICE}")


def write_cohort_report(roots: Sequence[str | Path], out: str | Path | None = None,
                        task: str | None = None, title: str | None = None
                        ) -> tuple[Path, Page, int, float]:
    """Find the results under ``roots`` (of ``task``, or all), write the cohort page to
    ``out`` (default: ``cohort_report.html`` in the first root); returns the path, the
    page, the number of cases and the seconds it took."""
    from ..atomic import atomic_write_bytes
    from ..errors import CommandError

    started = time.perf_counter()
    roots = [Path(r) for r in roots]
    results = find_predictions(roots, task)
    target = Path(out) if out is not None else roots[0] / COHORT_FILE
    if target.is_dir():
        raise CommandError("--out names a folder", "give the page's file name, e.g. "
                           "cohort.html", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    page = build_cohort_page(results, roots, target.parent,
                             title or "LesionSuite cohort report")
    atomic_write_bytes(target, render_page(page).encode("utf-8"))
    return target, page, len(results), time.perf_counter() - started

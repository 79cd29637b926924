"""The HTML reports (lesion_core.report, ``lesion-suite report``): the page's structure,
the tables against the result files, every embedded picture, the mosaic's pixels, the
cohort page and the errors. Prediction folders are hand-made (no network, no torch)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

import cmb_outputs
import ich_outputs
import wmh_outputs
from lesion_core import io as lesion_io
from lesion_core.atlas.arwmc import REGIONS
from lesion_core.cli import main
from lesion_core.errors import CommandError, UnreadableFileError
from lesion_core.feedback import FeedbackStore
from lesion_core.labels import CMB, ICH_SUBTYPES
from lesion_core.report.case import write_case_report
from lesion_core.report.folders import find_predictions, open_prediction
from lesion_core.report import cmb as cmb_view
from lesion_core.report import plots
from lesion_core.report.cohort import write_cohort_report
from lesion_core.report.display import choose_slices
from lesion_core.report.mosaic import LabelLayer, render_mosaic
from lesion_core.volume import Volume


class Parsed(HTMLParser):
    """What a test reads back from a page: title, section ids, tables (id -> rows of
    ``(text, data-value or None)``), images (src, width, height) and links."""

    def __init__(self, text: str):
        super().__init__()
        self.title, self.sections, self.tables = "", [], {}
        self.images, self.links, self.items = [], [], []
        self._in, self._table, self._row, self._cell = None, None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self._in = "title"
        elif tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "table":
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", attrs.get("data-value"), tag]
        elif tag == "img":
            self.images.append((attrs["src"], int(attrs["width"]), int(attrs["height"])))
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "li":
            self._in = "li"
            self.items.append("")

    def handle_endtag(self, tag):
        if tag in ("title", "li"):
            self._in = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(tuple(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self._row[0][2] == "td":
                self.tables[self._table].append([(t, v) for t, v, _ in self._row])
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "li":
            self.items[-1] += data
        if self._cell is not None:
            self._cell[0] += data


def number(cell) -> float | None:
    """A cell's whole value (``data-value``), or None for an empty cell."""
    return None if cell[1] is None else float(cell[1])


def decoded(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    picture = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)))
    picture.load()
    assert picture.format == "PNG"
    return picture


def assert_images_decode(parsed: Parsed) -> None:
    assert parsed.images
    for src, width, height in parsed.images:
        assert decoded(src).size == (width, height)


# ---------------------------------------------------------------- prediction folders
@pytest.fixture
def wmh_case(tmp_path):
    image = wmh_outputs.flair_volume()
    path = lesion_io.write_volume(image, tmp_path / "flair.nii.gz")
    summary = wmh_outputs.write_outputs(tmp_path / "cases" / "wmh_a", image)
    return tmp_path / "cases" / "wmh_a", path, summary


@pytest.fixture
def cmb_case(tmp_path):
    image = cmb_outputs.swi_volume()
    path = lesion_io.write_volume(image, tmp_path / "swi.nii.gz")
    folder = tmp_path / "cases" / "cmb_a"
    document = cmb_outputs.write_outputs(folder, image, image_path=str(path))
    # The fourth file of the contract; the report reads the JSON document only.
    (folder / "cmb_candidates.csv").write_text(
        "id\n" + "".join(f"{c['id']}\n" for c in document["candidates"]))
    return folder, path, document


@pytest.fixture
def ich_case(tmp_path):
    image = ich_outputs.ct_volume()
    path = lesion_io.write_volume(image, tmp_path / "ct.nii.gz")
    summary = ich_outputs.write_outputs(tmp_path / "cases" / "ich_a", image, image_path=str(path))
    return tmp_path / "cases" / "ich_a", path, summary


# -------------------------------------------------------------------------- WMH
def test_wmh_report_structure_and_tables_match_the_result(wmh_case):
    folder, image, summary = wmh_case
    path, report = write_case_report(folder, "wmh", image=image)
    assert path == folder / "report.html"
    parsed = Parsed(path.read_text(encoding="utf-8"))
    assert parsed.title == "WMH report: wmh_a"
    assert parsed.sections == ["result", "images", "measurements", "reader"]
    rows = parsed.tables["arwmc"]
    assert [f"{r[0][0].replace('-', '_')}_{r[1][0]}" for r in rows[:-1]] == list(REGIONS)
    for row, region in zip(rows, REGIONS):
        assert number(row[2]) == pytest.approx(summary["region_ml"][region], abs=1e-4)
        assert number(row[4]) == summary["levels"][region]
    assert rows[-1][0][0] == "total" and number(rows[-1][4]) == summary["arwmc_total"]
    assert number(rows[-1][2]) == pytest.approx(summary["lesion_ml"], abs=1e-3)
    zones = {r[0][0]: number(r[1]) for r in parsed.tables["zones"]}
    assert zones == {k.replace("_", " "): pytest.approx(v) for k, v in summary["zone_ml"].items()}
    headline = {r[0][0]: r[1][0] for r in parsed.tables["headline"]}
    assert headline["model"] == "wmh_flair_dualtasker 2.0"
    assert headline["WMH volume"] == f"{summary['lesion_ml']:.2f} mL"
    assert_images_decode(parsed)
    (src, width, height), = parsed.images
    assert (height, width) == report.mosaic_shape


def test_the_mosaic_draws_the_mask_where_it_is_in_radiological_convention():
    image = wmh_outputs.flair_volume()
    labels = wmh_outputs.mask()
    colour = (255, 0, 255)
    ball = wmh_outputs.BALLS[0]  # on the patient's right
    mosaic = render_mosaic(image, "MR", [LabelLayer(labels, {1: colour})],
                           focus=[ball.voxel], count=12)
    assert 1 <= len(mosaic.tiles) <= 12
    drawn = np.all(mosaic.rgb == colour, axis=-1)
    # The outline passes through the ball's edge voxel, on the tile of the ball's slice.
    i, j, k = ball.voxel
    edge = mosaic.pixel_of((i - ball.radius, j, k))
    assert edge is not None
    near = drawn[edge[0] - 2:edge[0] + 3, edge[1] - 2:edge[1] + 3]
    assert near.any()
    centre = mosaic.pixel_of(ball.voxel)
    assert not drawn[centre]  # outlined, not filled
    tile = next(t for t in mosaic.tiles if t.k == int(round(mosaic.ras_voxel(ball.voxel)[2])))
    rows, columns = mosaic.grid.rows, mosaic.grid.columns
    in_tile = drawn[tile.top:tile.top + rows, tile.left:tile.left + columns]
    # Radiological: the patient's right (this lesion) is on the left half of the tile;
    # the other lesion (left, higher up) is not on this slice.
    assert in_tile[:, :columns // 2].sum() > 0 and in_tile[:, columns // 2:].sum() == 0
    empty = [t for t in mosaic.tiles if not labels[:, :, _source_k(mosaic, t.k)].any()]
    assert empty, "some shown slices hold no lesion"
    for t in empty:
        assert not drawn[t.top:t.top + rows, t.left:t.left + columns].any()


def _source_k(mosaic, k: int) -> int:
    """The image's own slice index of RAS-ordered slice ``k`` (this affine is diagonal)."""
    ijk = np.linalg.inv(mosaic.source_affine) @ mosaic.ras_affine @ np.array([0, 0, k, 1.0])
    return int(round(ijk[2]))


def test_slices_are_spread_through_the_head_and_wanted_ones_are_kept():
    head = np.zeros((4, 4, 60), bool)
    head[:, :, 10:50] = True
    even = choose_slices(head, 8)
    assert len(even) == 8 and even[0] >= 10 and even[-1] <= 49
    assert np.all(np.diff(even) == 5)
    wanted = choose_slices(head, 8, wanted=[11, 48])
    assert 11 in wanted and 48 in wanted and len(wanted) == 8
    assert choose_slices(head, 100) == list(range(10, 50))


def test_the_reader_s_ratings_come_from_the_store_case_of_the_image(wmh_case, tmp_path):
    from lesion_core.feedback_cases import ensure_case_image
    from lesion_core.wmh.reader_ratings import record_rating

    folder, image, summary = wmh_case
    case = FeedbackStore(tmp_path / "store").case("reviewed")
    ensure_case_image(case, image, "FLAIR")
    record_rating(case, "frontal_left", 3, reader="dr_a")
    path, _ = write_case_report(folder, "wmh", image=image, feedback=tmp_path / "store")
    parsed = Parsed(path.read_text(encoding="utf-8"))
    assert [[c[0] for c in r] for r in parsed.tables["reader-ratings"]] == [
        ["frontal left", str(summary["levels"]["frontal_left"]), "3", "dr_a",
         parsed.tables["reader-ratings"][0][4][0]]]
    arwmc = {r[0][0] + " " + r[1][0]: r for r in parsed.tables["arwmc"]}
    assert number(arwmc["frontal left"][5]) == 3
    with pytest.raises(CommandError, match="has no case"):
        write_case_report(folder, "wmh", image=image, feedback=tmp_path / "store",
                          case_id="other")


def test_out_of_distribution_findings_are_shown_first(tmp_path):
    image = wmh_outputs.flair_volume()
    path = lesion_io.write_volume(image, tmp_path / "t1.nii.gz")
    finding = "the image covers only 90 mm across its second-longest axis"
    wmh_outputs.write_outputs(tmp_path / "out", image, stem="t1", t1=True,
                              out_of_distribution=(finding,))
    report, _ = write_case_report(tmp_path / "out", image=path)
    parsed = Parsed(report.read_text(encoding="utf-8"))
    assert parsed.sections[0] == "warnings" and finding in parsed.items
    assert parsed.title == "WMH report: out (t1)"
    levels = [r[4][1] for r in parsed.tables["arwmc"]]
    assert levels == [None] * len(levels)  # the T1 mode does not rate


# -------------------------------------------------------------------------- CMB
def test_cmb_report_circles_kept_and_rejected_candidates(cmb_case, tmp_path):
    folder, image_path, document = cmb_case
    path, report = write_case_report(folder, "cmb")  # the image the result names
    parsed = Parsed(path.read_text(encoding="utf-8"))
    assert parsed.title == "Cerebral microbleeds report: cmb_a"
    kept = [c for c in document["candidates"] if c["kept"]]
    rejected = [c for c in document["candidates"] if not c["kept"]]
    assert [int(number(r[0])) for r in parsed.tables["microbleeds"]] == [c["id"] for c in kept]
    assert [int(number(r[0])) for r in parsed.tables["rejected"]] == [c["id"] for c in rejected]
    assert [r[1][0] for r in parsed.tables["rejected"]] == [c["dropped_by"] for c in rejected]
    locations = {r[0][0]: number(r[1]) for r in parsed.tables["locations"]}
    assert locations["total"] == document["count"] == len(kept)
    assert_images_decode(parsed)
    (src, _, _), = parsed.images
    picture = np.asarray(decoded(src).convert("RGB"))
    image = lesion_io.read_volume(image_path)
    for candidate in document["candidates"]:
        colour = np.array(CMB.color_rgb255 if candidate["kept"] else cmb_view.REJECTED_RGB)
        mosaic_pixel = _circle_pixels(image, candidate, report)
        assert mosaic_pixel is not None, candidate["id"]
        row, column, radius = mosaic_pixel
        ring = picture[max(row - radius - 2, 0):row + radius + 3,
                       max(column - radius - 2, 0):column + radius + 3]
        assert np.all(ring == colour, axis=-1).sum() > 10, candidate["id"]


def _circle_pixels(image: Volume, candidate: dict, report):
    """Where the report's mosaic circles ``candidate``: (row, column, radius px)."""
    result = report.result
    view = cmb_view.case_view(result, image, None)
    mosaic = render_mosaic(image, view.family, view.layers, view.markers, view.focus)
    pixel = mosaic.pixel_of(image.ras_to_voxel(candidate["centre_ras"]))
    if pixel is None:
        return None
    radius = int(max((candidate["diameter_mm"] / 2 + 2.5) / mosaic.grid.pixel_mm, 6)) + 1
    return pixel[0], pixel[1], radius


def test_cmb_reader_decisions_are_matched_to_the_candidates(cmb_case, tmp_path):
    from lesion_core.cmb.reader_decisions import record_decision
    from lesion_core.feedback_cases import ensure_case_image

    folder, image_path, document = cmb_case
    case = FeedbackStore(tmp_path / "store").case("swi_case")
    ensure_case_image(case, image_path, "SWI")
    first, third = document["candidates"][0], document["candidates"][2]
    record_decision(case, "accept", first["centre_ras"], first, reader="dr_b")
    record_decision(case, "reject", third["centre_ras"], third, reader="dr_b")
    record_decision(case, "add", [c + 10 for c in first["centre_ras"]], diameter_mm=3.0,
                    reader="dr_b")
    path, _ = write_case_report(folder, "cmb", feedback=tmp_path / "store")
    parsed = Parsed(path.read_text(encoding="utf-8"))
    kept = {int(number(r[0])): r[7][0] for r in parsed.tables["microbleeds"]}
    rejected = {int(number(r[0])): r[7][0] for r in parsed.tables["rejected"]}
    assert kept[first["id"]] == "accept" and rejected[third["id"]] == "reject"
    decisions = sorted(r[0][0] for r in parsed.tables["reader-decisions"])
    assert decisions == ["accept", "add", "reject"]


# -------------------------------------------------------------------------- ICH
def test_ich_report_colours_components_by_subtype(ich_case):
    folder, image_path, summary = ich_case
    path, report = write_case_report(folder, "ich", image=image_path)
    parsed = Parsed(path.read_text(encoding="utf-8"))
    assert parsed.title == "Intracranial haemorrhage report: ich_a"
    volumes = {r[0][0]: number(r[1]) for r in parsed.tables["subtypes"]}
    for key, value in summary["volume_ml_by_subtype"].items():
        assert volumes[key] == pytest.approx(value)
    assert volumes["total"] == pytest.approx(summary["volume_ml"])
    slices = [int(number(r[0])) for r in parsed.tables["slices"]]
    assert slices == [k for k in range(ich_outputs.SHAPE[2])
                      if (ich_outputs.label_map()[:, :, k] > 0).any()]
    assert_images_decode(parsed)
    image = lesion_io.read_volume(image_path)
    from lesion_core.report import ich as ich_view

    view = ich_view.case_view(report.result, image, None)
    mosaic = render_mosaic(image, view.family, view.layers, view.markers, view.focus,
                           view.extent)
    for bleed in ich_outputs.BLEEDS:
        middle = (bleed.slices[0] + bleed.slices[1]) // 2
        row, column = mosaic.pixel_of((*bleed.centre, middle))
        colour = np.array(ICH_SUBTYPES[bleed.value - 1].color_rgb255, float)
        grey = mosaic.rgb[row, column].astype(float)
        # Filled at 45 % opacity: the pixel leans to the subtype's colour.
        assert np.linalg.norm(grey - colour) < np.linalg.norm(grey.mean() - colour)


# ----------------------------------------------------------------------- cohort
def test_cohort_page_lists_every_case_with_plots_and_report_links(
        wmh_case, cmb_case, ich_case, tmp_path):
    cases = tmp_path / "cases"
    image = wmh_outputs.flair_volume(seed=1)
    wmh_outputs.write_outputs(cases / "wmh_b", image)
    write_case_report(wmh_case[0], "wmh", image=wmh_case[1])
    write_case_report(ich_case[0], "ich")
    path, page, count, _ = write_cohort_report([cases], tmp_path / "pages" / "cohort.html")
    assert count == 4
    parsed = Parsed(path.read_text(encoding="utf-8"))
    assert parsed.sections == ["overview", "wmh", "cmb", "ich"]
    listed = {t: [r[0][0] for r in parsed.tables[f"{t}-cases"]] for t in ("wmh", "cmb", "ich")}
    assert listed == {"wmh": ["wmh_a", "wmh_b"], "cmb": ["cmb_a"], "ich": ["ich_a"]}
    assert sorted(parsed.links) == ["../cases/ich_a/report.html", "../cases/wmh_a/report.html"]
    assert all((path.parent / link).is_file() for link in parsed.links)
    assert len(parsed.images) == 6  # WMH: load, rating vs volume; CMB: 2; ICH: 2
    for src, width, height in parsed.images:
        assert decoded(src).size == (width, height) == plots.SIZE_PX
    totals = [number(r[5]) for r in parsed.tables["wmh-cases"]]
    assert totals[0] == wmh_case[2]["arwmc_total"]


def test_cohort_of_one_task_and_the_search_depth(wmh_case, cmb_case, tmp_path):
    found = find_predictions([tmp_path], "cmb")
    assert [r.folder.name for r in found] == ["cmb_a"]
    assert open_prediction(wmh_case[0]).task == "wmh"


# ----------------------------------------------------------------------- errors
def test_a_folder_without_a_result_is_one_clear_error(tmp_path, wmh_case, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnreadableFileError, match="wmh_summary.json is missing"):
        write_case_report(empty, "wmh", image=wmh_case[1])
    assert main(["report", "wmh", str(empty), "--image", str(wmh_case[1])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no WMH prediction" in err
    assert main(["report", "cohort", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no prediction folder" in err
    (wmh_case[0] / "wmh_summary.json").write_text("{not json")
    assert main(["report", "wmh", str(wmh_case[0]), "--image", str(wmh_case[1])]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_an_image_on_another_grid_is_refused(wmh_case, tmp_path):
    folder, _, _ = wmh_case
    other = lesion_io.write_volume(cmb_outputs.swi_volume(), tmp_path / "other.nii.gz")
    with pytest.raises(CommandError, match="not on the grid of the image given"):
        write_case_report(folder, "wmh", image=other)


def test_a_wmh_result_needs_its_image(wmh_case, capsys):
    assert main(["report", "wmh", str(wmh_case[0])]) == 2
    assert "Give it with --image" in capsys.readouterr().err


def test_the_report_command_runs_without_torch(cmb_case, tmp_path):
    folder, _, _ = cmb_case
    out = tmp_path / "page.html"
    code = ("import sys; from lesion_core.cli import main; "
            f"rc = main(['report', 'cmb', {str(folder)!r}, '--out', {str(out)!r}]); "
            "print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr
    assert out.is_file() and f"report: {out}" in done.stdout


def test_case_report_writes_json_safe_numbers(wmh_case):
    """Every data-value is a number JSON reads (no NaN, no numpy repr)."""
    folder, image, _ = wmh_case
    path, _ = write_case_report(folder, "wmh", image=image, out=folder / "r.html")
    parsed = Parsed(path.read_text(encoding="utf-8"))
    for rows in parsed.tables.values():
        for row in rows:
            for _, value in row:
                if value is not None:
                    json.loads(value)

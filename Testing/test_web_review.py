"""The browser review station (``lesion-suite review``), end to end in a real browser.

The server runs as the user runs it, ``python -m lesion_core review DIR --port P``, in a
child process on a free port, over hand-made output folders (``cmb_outputs``,
``wmh_outputs``, ``ich_outputs``); Debian's chromium, driven by Playwright, clicks and
types as a reader does. Checked, per task: the decisions (CMB accept / reject / a missed
microbleed added by a click in a view, WMH ARWMC ratings, ICH slice labels) reach the
feedback store at once, through the task's review state machine, exactly one record each;
a page reload shows them again. Then, without a browser: the case queue, the sessions on a
plain MRML scene, and the command's one-line install hint.

What the browser tests need (trame-slicer, Playwright, chromium) is installed by
``scripts/setup_env.sh``; where it is missing they fail saying how to install it, unless
``LESION_SUITE_ALLOW_MISSING_BROWSER=1`` asks to skip them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import cmb_outputs as co
import ich_outputs
import wmh_outputs
from lesion_core import io as lesion_io

REPO = Path(__file__).resolve().parent.parent
#: Where a chromium other than Debian's lies (else it is looked up on PATH).
CHROMIUM_VARIABLE = "LESION_SUITE_CHROMIUM"
ALLOW_MISSING = "LESION_SUITE_ALLOW_MISSING_BROWSER"
INSTALL = ("run scripts/setup_env.sh (it installs trame-slicer, Playwright and Debian's "
           "chromium with libegl1 libegl-mesa0 libgl1-mesa-dri), or set "
           f"{ALLOW_MISSING}=1 to skip the browser tests")
#: Seconds to wait for the server to answer, and for the page's parts.
START_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 30000


def chromium_path() -> str | None:
    """Debian's chromium (or the one :data:`CHROMIUM_VARIABLE` names)."""
    named = os.environ.get(CHROMIUM_VARIABLE)
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_browser_parts() -> list[str]:
    """What the browser tests need and this machine lacks."""
    missing = [name for name in ("trame_slicer", "playwright", "slicer")
               if importlib.util.find_spec(name) is None]
    if chromium_path() is None:
        missing.append("chromium")
    return missing


def require_browser() -> None:
    """Skip (only when :data:`ALLOW_MISSING` is 1) or fail, naming what is missing."""
    missing = missing_browser_parts()
    if not missing:
        return
    message = f"the browser review tests need {', '.join(missing)}"
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(f"{message} ({ALLOW_MISSING}=1)")
    pytest.fail(f"{message}: {INSTALL}", pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_cmb_case(root: Path, name: str = "case1", seed: int = 3) -> Path:
    """A CMB output folder ``root/name`` whose candidates file names its image."""
    image = co.swi_volume(seed=seed)
    image_path = root / "images" / f"{name}_swi.nii.gz"
    image_path.parent.mkdir(parents=True, exist_ok=True)
    lesion_io.write_volume(image, image_path)
    co.write_outputs(root / name, image, image_path=str(image_path))
    return root / name


def write_wmh_case(root: Path, name: str = "wmh1", seed: int = 1) -> Path:
    """A WMH output folder in the demo's layout (the WMH summary names no image):
    ``root/predictions/name`` beside ``root/synthetic/name/flair.nii.gz``."""
    image = wmh_outputs.flair_volume(seed)
    image_path = root / "synthetic" / name / "flair.nii.gz"
    image_path.parent.mkdir(parents=True, exist_ok=True)
    lesion_io.write_volume(image, image_path)
    wmh_outputs.write_outputs(root / "predictions" / name, image)
    return root / "predictions" / name


def write_ich_case(root: Path, name: str = "ich1", seed: int = 1) -> Path:
    """An ICH output folder ``root/name`` whose summary names its CT."""
    image = ich_outputs.ct_volume(seed)
    image_path = root / "images" / f"{name}_ct.nii.gz"
    image_path.parent.mkdir(parents=True, exist_ok=True)
    lesion_io.write_volume(image, image_path)
    ich_outputs.write_outputs(root / name, image, image_path=str(image_path))
    return root / name


class Server:
    """``lesion-suite review`` in a child process (started and stopped by the tests)."""

    def __init__(self, root: Path, port: int, log: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.url = f"http://127.0.0.1:{port}/"
        self.log = log
        self.started = time.perf_counter()
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lesion_core", "review", str(root), "--port", str(port),
                 "--reader", "dr-web"], stdout=out, stderr=subprocess.STDOUT, env=env)
        self.start_s = self._wait()

    def _wait(self) -> float:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the review server stopped: {self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"the review server did not answer in {START_TIMEOUT_S} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(),
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def cmb_server(tmp_path, browser):
    root = tmp_path / "outputs"
    write_cmb_case(root)
    server = Server(root, free_port(), tmp_path / "server.log")
    yield server, root
    server.stop()


@pytest.fixture
def served(tmp_path, browser):
    """``served(write)``: a server over ``tmp_path/outputs`` after ``write(root)``."""
    started = []

    def start(write):
        root = tmp_path / "outputs"
        write(root)
        started.append(Server(root, free_port(), tmp_path / "server.log"))
        started[-1].browser = browser
        return started[-1], root

    yield start
    for server in started:
        server.stop()


def rows(page, row_class: str = "cand-row") -> list[list[str]]:
    """A table's cells, row by row (CMB candidates by default)."""
    return [text.split("\t") for text in page.locator(f"tr.{row_class}").all_inner_texts()]


def wait_until(check, what: str, seconds: float = 20):
    """Poll ``check()`` until it is truthy (the server answers each click
    asynchronously); returns its value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_decisions(page, wanted: list[str]) -> list[list[str]]:
    """Wait until the table's decision column reads ``wanted`` (the server answers each
    click asynchronously)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = rows(page)
        if [r[1] if len(r) > 1 else "" for r in found] == wanted:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the table shows {rows(page)}, not the decisions {wanted}")


def wait_for_views(page, count: int = 3) -> None:
    """Wait for ``count`` views' images (not the loading splash): the three slice views
    (the 3D view, in the DOM after them, is the fourth)."""
    page.wait_for_function(
        "n => Array.from(document.querySelectorAll('img.image-display-area'))"
        ".filter(i => i.naturalWidth > 0).length >= n", arg=count, timeout=PAGE_TIMEOUT_MS)


def store_decisions(root: Path) -> list[str]:
    """The decisions the store holds (every record, undone ones too), in write order."""
    from lesion_core.cmb import reader_decisions as rd
    from lesion_core.feedback import FeedbackStore

    store = FeedbackStore(root / "feedback")
    records = [r for case in store.cases() for r in store.case(case).records()]
    return [r.payload.get("decision") if r.kind == rd.DECISION_KIND else r.kind
            for r in records]


def store_records(root: Path) -> list[tuple]:
    """``(kind, target, payload)`` of every record in the store, in write order."""
    from lesion_core.feedback import FeedbackStore

    store = FeedbackStore(root / "feedback")
    return [(r.kind, r.target, r.payload) for case in store.cases()
            for r in store.case(case).records()]


def view_mean(view, per_pixel: str) -> float:
    """The mean over a view's current image of ``per_pixel`` (a JS function of r, g, b,
    each 0..255, returning a number)."""
    return view.evaluate("""(img, perPixel) => {
        const value = eval(perPixel);
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let sum = 0;
        for (let i = 0; i < data.length; i += 4) sum += value(data[i], data[i + 1], data[i + 2]);
        return sum / (data.length / 4);
    }""", per_pixel)


def view_brightness(view) -> float:
    """The mean grey value (0..255) of a slice view's current image."""
    return view_mean(view, "(r, g, b) => r")


#: Per pixel, whether it counts (RGB 0..255): strongly coloured (a segment's surface,
#: not the grey background or the grey image), or the CMB points' magenta.
COLOURED = "(r, g, b) => Math.max(r, g, b) - Math.min(r, g, b) > 60"
MAGENTA = "(r, g, b) => r > 140 && g < 90 && b > 70"


def view_fraction(view, test: str = COLOURED) -> float:
    """The fraction of a view's current image's pixels that pass ``test`` (a JS function
    of r, g, b)."""
    return view_mean(view, f"(r, g, b) => (({test})(r, g, b) ? 1 : 0)")


def view_click(page, view: int = 0, right: float = 0.0) -> None:
    """A click in slice view ``view`` (0: axial), as a reader's mouse: in the middle (the
    current item), or ``right`` of the view's width to the right of it."""
    box = page.locator("img.image-display-area").nth(view).bounding_box()
    page.mouse.click(box["x"] + box["width"] * (0.5 + right), box["y"] + box["height"] / 2)


# ------------------------------------------------------------------ in the browser


def test_cmb_decisions_from_the_browser_reach_the_store_and_survive_a_reload(cmb_server,
                                                                             browser):
    server, root = cmb_server
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(server.url)
    page.wait_for_selector("tr.cand-row", timeout=PAGE_TIMEOUT_MS)
    wait_for_views(page, 4)
    assert [r[0] for r in rows(page)] == ["1", "2", "5"]  # kept candidates; 3, 4 dropped
    assert store_decisions(root) == []
    threed = page.locator("img.image-display-area").nth(3)
    assert page.locator(".surface-info").inner_text() == "3D: 3 candidate points"
    magenta = wait_until(lambda: view_fraction(threed, MAGENTA), "the points in 3D")

    page.locator(".action-accept").click()                # candidate 1, then on to 2
    wait_for_decisions(page, ["accept", "", ""])
    assert store_decisions(root) == ["accept"]            # written at once
    page.keyboard.press("a")                              # the shortcut: candidate 2
    wait_for_decisions(page, ["accept", "accept", ""])
    page.locator("tr.cand-row", has_text="infratentorial").click()
    page.keyboard.press("r")
    wait_for_decisions(page, ["accept", "accept", "reject"])
    wait_until(lambda: view_fraction(threed, MAGENTA) < 0.85 * magenta,  # now grey
               "the rejected candidate's point no longer magenta in 3D")

    page.locator(".show-rejected input").check()          # the stage-2 drop, 3, listed
    wait_until(lambda: [r[0] for r in rows(page)] == ["1", "2", "3", "5"], "candidate 3")
    page.locator(".show-rejected input").uncheck()
    wait_until(lambda: [r[0] for r in rows(page)] == ["1", "2", "5"], "3 hidden again")

    page.locator("tr.cand-row", has_text="deep").click()  # views centred on candidate 2
    page.locator(".action-add").click()                   # place mode, then a click
    time.sleep(0.5)
    view_click(page, right=0.12)                          # ~6 mm off it: a new point
    wait_for_decisions(page, ["accept", "accept", "reject", "add"])
    assert store_decisions(root) == ["accept", "accept", "reject", "add"]

    page.reload()
    page.wait_for_selector("tr.cand-row", timeout=PAGE_TIMEOUT_MS)
    wait_for_decisions(page, ["accept", "accept", "reject", "add"])
    assert store_decisions(root) == ["accept", "accept", "reject", "add"]
    page.close()


def test_two_tabs_on_one_cmb_case_share_one_session_and_the_last_decision_stands(
        cmb_server, browser, mrml_scene):
    """Two readers' tabs (two browser contexts) on one server: one shared state and one
    :class:`CaseSession` per server, so each tab shows the other's decision; an accept
    in one and a reject of the same candidate in the other are two whole records, and
    the later one stands when the case is opened again."""
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession

    server, root = cmb_server
    contexts = [browser.new_context(viewport={"width": 1400, "height": 800})
                for _ in range(2)]
    first, second = (context.new_page() for context in contexts)
    for page in (first, second):
        page.goto(server.url)
        page.wait_for_selector("tr.cand-row", timeout=PAGE_TIMEOUT_MS)
    first.locator(".action-retrain").click()              # nothing decided: said, not run
    wait_until(lambda: "no CMB decision" in second.locator(".retrain-text").inner_text(),
               "the retraining's reason in both tabs")
    first.locator("tr.cand-row", has_text="infratentorial").click()
    first.locator(".action-accept").click()
    wait_for_decisions(second, ["", "", "accept"])        # shown in the other tab too
    second.locator("tr.cand-row", has_text="infratentorial").click()
    second.locator(".action-reject").click()
    wait_for_decisions(first, ["", "", "reject"])
    assert store_decisions(root) == ["accept", "reject"]  # both records, in click order
    lines = [line for path in (root / "feedback").glob("*/records.jsonl")
             for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and all(json.loads(line)["kind"] for line in lines)

    third = contexts[0].new_page()                        # the case opened again
    third.goto(server.url)
    third.wait_for_selector("tr.cand-row", timeout=PAGE_TIMEOUT_MS)
    wait_for_decisions(third, ["", "", "reject"])
    again = CaseSession(mrml_scene, find_cases(root)[0], feedback_root(root))
    assert [r["decision"] for r in again.rows()] == ["", "", "reject"]  # a restart too
    again.close()
    for context in contexts:
        context.close()


def test_an_arwmc_rating_from_the_browser_reaches_the_store_and_survives_a_reload(served):
    server, root = served(write_wmh_case)
    page = server_page(server)
    page.wait_for_selector("tr.arwmc-row", timeout=PAGE_TIMEOUT_MS)
    table = rows(page, "arwmc-row")
    assert [r[:2] for r in table[:2]] == [["frontal", "left"], ["frontal", "right"]]
    assert table[-1][0] == "total" and len(table) == 11

    def select(index: int):
        return page.locator("tr.arwmc-row").nth(index).locator("select.rating-select")

    select(0).select_option("3")                          # frontal left
    wait_until(lambda: len(store_records(root)) == 1, "the first rating in the store")
    select(5).select_option("1")
    wait_until(lambda: len(store_records(root)) == 2, "the second rating in the store")
    target = rows(page, "arwmc-row")[5]
    wanted = [("wmh.rating", "frontal_left", {"rating": 3}),
              ("wmh.rating", f"{target[0].replace(' ', '_')}_{target[1]}", {"rating": 1})]
    assert store_records(root) == wanted

    page.reload()
    page.wait_for_selector("tr.arwmc-row", timeout=PAGE_TIMEOUT_MS)
    wait_until(lambda: select(0).input_value() == "3" and select(5).input_value() == "1",
               "the ratings shown again")
    assert [select(i).input_value() for i in (1, 2, 10)] == ["", "", ""]
    assert store_records(root) == wanted                  # the reload wrote nothing
    page.close()


def test_an_ich_slice_label_from_the_browser_reaches_the_store_and_survives_a_reload(served):
    server, root = served(write_ich_case)
    page = server_page(server)
    page.wait_for_selector("tr.slice-row", timeout=PAGE_TIMEOUT_MS)

    def reader_column():
        return [r[3] if len(r) > 3 else "" for r in rows(page, "slice-row")]

    axial = page.locator("img.image-display-area").nth(0)
    brain = view_brightness(axial)                        # the CT brain window (default)
    page.locator(".wl-preset").click()
    page.locator(".v-overlay .v-list-item", has_text="bone").click()
    wait_until(lambda: view_brightness(axial) < brain - 5,  # brain tissue darker in it
               "the bone window drawn")

    page.locator("tr.slice-row").nth(3).click()
    page.locator(".subtype-subdural input").check()
    page.locator(".action-haemorrhage").click()
    wait_until(lambda: reader_column()[3] == "haemorrhage: subdural", "slice 3's label")
    page.locator("tr.slice-row").nth(0).click()
    page.keyboard.press("0")                              # the shortcut: no haemorrhage
    wait_until(lambda: reader_column()[0] == "no haemorrhage", "slice 0's label")
    wanted = [("ich.slice_label", "slice:3", {"haemorrhage": True, "subtypes": ["subdural"],
                                              "slice_axis": 2}),
              ("ich.slice_label", "slice:0", {"haemorrhage": False, "subtypes": [],
                                              "slice_axis": 2})]
    assert store_records(root) == wanted

    page.reload()
    page.wait_for_selector("tr.slice-row", timeout=PAGE_TIMEOUT_MS)
    wait_until(lambda: reader_column()[0] == "no haemorrhage"
               and reader_column()[3] == "haemorrhage: subdural", "the labels shown again")
    assert sum(1 for text in reader_column() if text) == 2
    assert store_records(root) == wanted
    page.close()


def test_the_3d_view_shows_the_segmentation_as_closed_surfaces(served):
    """An ICH case: its segmentation's closed surfaces (made on the server, counted in
    the page's line) are drawn in the 3D view, a grey background without them; the
    *3D view* switch takes the view out of the page and back."""
    import re

    server, _root = served(write_ich_case)
    page = server_page(server, views=4)
    info = wait_until(lambda: re.fullmatch(r"3D: (\d+) surfaces?, (\d+) triangles",
                                           page.locator(".surface-info").inner_text()),
                      "the 3D view's line")
    assert int(info[1]) == 2 and int(info[2]) > 100      # the case's two subtypes
    threed = page.locator("img.image-display-area").nth(3)
    wait_until(lambda: view_fraction(threed) > 0.01, "coloured surfaces in the 3D view")
    assert view_fraction(page.locator("img.image-display-area").nth(0)) < \
        view_fraction(threed)                             # the axial view: mostly grey CT

    page.locator(".show-3d input").uncheck()              # three slice views only
    wait_until(lambda: page.locator("img.image-display-area").count() == 3,
               "the 3D view removed")
    page.locator(".show-3d input").check()
    wait_for_views(page, 4)
    wait_until(lambda: view_fraction(page.locator("img.image-display-area").nth(3)) > 0.01,
               "the surfaces drawn again")
    page.close()


def server_page(server, views: int = 3):
    """A page on the server with its three slice views (``views=4``: and the 3D view)
    drawn."""
    page = server.browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(server.url)
    wait_for_views(page, views)
    return page


def test_a_bad_case_folder_is_a_message_in_the_page(tmp_path, browser):
    root = tmp_path / "outputs"
    write_cmb_case(root)
    broken = root / "case0_broken"
    broken.mkdir()
    (broken / "cmb_candidates.json").write_text("{not json", encoding="utf-8")
    server = Server(root, free_port(), tmp_path / "server.log")
    try:
        page = browser.new_page()
        page.goto(server.url)
        message = page.wait_for_selector(".review-message", timeout=PAGE_TIMEOUT_MS)
        assert "cannot be shown" in message.inner_text()
        page.locator(".case-item", has_text="case1").click()   # the good case still opens
        page.wait_for_selector("tr.cand-row", timeout=PAGE_TIMEOUT_MS)
        page.close()
    finally:
        server.stop()


# ------------------------------------------------------------------ no browser


def test_the_case_queue_finds_results_and_their_images(tmp_path):
    from LesionSuiteLib.web_review.cases import find_cases

    root = tmp_path / "outputs"
    write_cmb_case(root, "b")
    lost = write_cmb_case(root, "a")
    data = json.loads((lost / "cmb_candidates.json").read_text())
    data["image"] = str(tmp_path / "gone.nii.gz")
    (lost / "cmb_candidates.json").write_text(json.dumps(data))
    cases = find_cases(root)
    assert [(c.task, c.folder.name) for c in cases] == [("cmb", "a"), ("cmb", "b")]
    assert cases[0].image is None and "gone.nii.gz" in cases[0].problem
    assert cases[1].image == root / "images" / "b_swi.nii.gz"


def test_a_session_drives_the_cmb_review_state_machine(tmp_path, mrml_scene):
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession

    root = tmp_path / "outputs"
    write_cmb_case(root)
    case = find_cases(root)[0]
    session = CaseSession(mrml_scene, case, feedback_root(root), reader="dr-web")
    assert type(session.review).__name__ == "CMBReview"   # the module's own review
    assert [r["id"] for r in session.rows()] == ["1", "2", "5"]
    assert session.act("accept") and session.act("reject")
    session.act("undo")
    assert [r["decision"] for r in session.rows()] == ["accept", "", ""]
    assert store_decisions(root) == ["accept", "reject", "undo"]  # one record each
    session.close()
    again = CaseSession(mrml_scene, case, feedback_root(root))  # a server restart
    assert [r["decision"] for r in again.rows()] == ["accept", "", ""]


def test_sessions_drive_the_wmh_and_ich_reviews_and_show_their_overlays(tmp_path,
                                                                       mrml_scene):
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession

    root = tmp_path / "outputs"
    write_wmh_case(root)
    write_ich_case(root)
    wmh, ich = sorted(find_cases(root), key=lambda c: c.task, reverse=True)

    session = CaseSession(mrml_scene, wmh, feedback_root(root), reader="dr-web")
    assert type(session.review).__name__ == "RatingReview"
    assert session.act("rate", "frontal_left", "2") and session.act("rate", "total", "")\
        is None                                          # clearing nothing writes nothing
    with pytest.raises(Exception, match="0-3"):
        session.act("rate", "frontal_left", "7")          # checked before any write
    assert session.rows()[0]["reader"] == "2"
    composite = [mrml_scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")]  # one view's
    session.show_overlay(0.7)
    assert composite and all(n.GetForegroundVolumeID() == session.result.activation.GetID()
                             and abs(n.GetForegroundOpacity() - 0.7) < 1e-6
                             for n in composite)
    session.close()

    session = CaseSession(mrml_scene, ich, feedback_root(root), reader="dr-web")
    session.select(3)
    assert session.act("haemorrhage", ["subdural"]) and session.act("no_haemorrhage", 0)
    session.act("undo")
    assert [r["reader"] for r in session.rows()][:4] == ["", "", "", "haemorrhage: subdural"]
    session.page.set_threshold(0.5)
    assert abs(session.page.threshold() - 0.5) < 1e-6
    session.show_overlay(0.3)
    assert all(n.GetForegroundVolumeID() == session.result.cam.GetID() for n in composite)
    assert sorted((k, t, p.get("rating", p.get("haemorrhage")))  # the cases in any order
                  for k, t, p in store_records(root) if k != "undo") == [
        ("ich.slice_label", "slice:0", False), ("ich.slice_label", "slice:3", True),
        ("wmh.rating", "frontal_left", 2)]


def test_a_cmb_session_adds_a_missed_point_and_keeps_the_points_locked(tmp_path,
                                                                       mrml_scene):
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession

    root = tmp_path / "outputs"
    write_cmb_case(root)
    session = CaseSession(mrml_scene, find_cases(root)[0], feedback_root(root))
    markups = session.result.markups
    far = session.review.items[1].centre_ras                # world = local: no transform
    assert session.act("add", [far[0] + 8.0, far[1], far[2]])
    session.act("show_rejected", True)
    assert [r["id"] for r in session.rows()] == ["1", "2", "3", "5", "+1"]
    assert all(markups.GetNthControlPointLocked(i)
               for i in range(markups.GetNumberOfControlPoints()))  # a drag moves none


def test_surfaces_for_the_3d_view_follow_the_task_and_the_cmb_decisions(tmp_path,
                                                                         mrml_scene):
    from LesionSuiteLib.web_review import surfaces
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession

    root = tmp_path / "outputs"
    write_wmh_case(root)
    write_cmb_case(root)
    cmb, wmh = sorted(find_cases(root), key=lambda c: c.task)
    session = CaseSession(mrml_scene, wmh, feedback_root(root))
    node = session.result.segmentation
    assert not node.GetSegmentation().ContainsRepresentation(surfaces.CLOSED_SURFACE)
    assert surfaces.surface_facts("wmh", session.result)["surfaces"] == 0
    surfaces.show_result_in_3d("wmh", session.result)
    assert node.GetSegmentation().ContainsRepresentation(surfaces.CLOSED_SURFACE)
    assert node.GetDisplayNode().GetVisibility3D()
    facts = surfaces.surface_facts("wmh", session.result)
    assert facts["surfaces"] == 1 and facts["triangles"] > 100 and facts["points"] == 0
    low = surfaces.result_bounds("wmh", session.result)[0::2]
    high = surfaces.result_bounds("wmh", session.result)[1::2]
    assert all(a < b for a, b in zip(low, high))
    session.close()

    session = CaseSession(mrml_scene, cmb, feedback_root(root))
    surfaces.show_result_in_3d("cmb", session.result)    # the points, not the voxels
    assert not session.result.segmentation.GetDisplayNode().GetVisibility3D()
    assert surfaces.surface_facts("cmb", session.result) == \
        {"surfaces": 0, "triangles": 0, "points": 3}
    markups = session.result.markups
    assert markups.GetDisplayNode().GetVisibility3D()
    session.act("reject", 0)                              # the same node: grey in 3D too
    assert markups.GetNthControlPointVisibility(0) and not markups.GetNthControlPointSelected(0)
    bounds = surfaces.result_bounds("cmb", session.result)
    centre = session.review.items[1].centre_ras
    assert all(bounds[2 * i] < centre[i] < bounds[2 * i + 1] for i in range(3))
    assert surfaces.describe({"surfaces": 0, "points": 1}) == "3D: 1 candidate point"


def test_the_command_says_how_to_install_the_review(monkeypatch, capsys, tmp_path):
    from lesion_core.cli import main
    from lesion_core.cli import review

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "trame_slicer" else real(name, *a))
    assert main(["review", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and 'pip install "lesion-suite[review]"' in error
    assert review.INSTALL_HINT.startswith("Install")


def test_the_command_module_imports_neither_trame_nor_slicer():
    import ast

    source = (REPO / "LesionSuite" / "lesion_core" / "cli" / "review.py").read_text()
    top = [node for node in ast.parse(source).body
           if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = {alias.name for node in top for alias in node.names} | \
        {getattr(node, "module", None) or "" for node in top}
    assert not any(n.split(".")[0] in ("trame", "trame_slicer", "slicer", "vtk", "torch",
                                       "LesionSuiteLib") for n in names)


def test_window_level_presets_set_the_image_display_node(tmp_path, mrml_scene):
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.reviews import apply_window_level, window_level_presets
    from LesionSuiteLib.web_review.session import CaseSession

    assert window_level_presets("ich") == ["brain", "subdural", "bone", "auto"]
    assert window_level_presets("cmb") == window_level_presets("wmh") == ["auto"]
    root = tmp_path / "outputs"
    write_ich_case(root)
    session = CaseSession(mrml_scene, find_cases(root)[0], feedback_root(root))
    display = session.volume_node.GetDisplayNode()
    for preset, wanted in (("brain", (80, 40)), ("subdural", (215, 75)),
                           ("bone", (2800, 600))):
        assert session.set_window_level(preset) == wanted
        assert not display.GetAutoWindowLevel()
        assert (display.GetWindow(), display.GetLevel()) == wanted
    with pytest.raises(ValueError, match="preset"):
        session.set_window_level("lung")
    assert (display.GetWindow(), display.GetLevel()) == (2800, 600)  # unchanged

    import numpy as np
    from LesionSuiteLib import mrml_bridge as mb
    from lesion_core.volume import Volume

    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)   # 0..999
    node = mb.volume_to_node(mrml_scene, Volume(values, np.eye(4)), "mr")
    window, level = apply_window_level(node, "wmh", "auto")          # 1st..99th percentile
    assert abs(level - 499.5) < 1e-3 and abs(window - 0.98 * 999) < 1e-3
    assert (node.GetDisplayNode().GetWindow(), node.GetDisplayNode().GetLevel()) == \
        pytest.approx((window, level))


def fake_training(steps: int, seconds: float = 0.0, fail: bool = False) -> str:
    """A child's script that prints ``steps`` progress lines (as ``--progress-lines``
    does), sleeping ``seconds`` after each, and exits 0 (1 with ``fail``)."""
    return ("import sys, time\n"
            "from lesion_core.progress import format_progress_line\n"
            f"for i in range({steps}):\n"
            f"    print(format_progress_line((i + 1) / {steps}, f'epoch {{i + 1}}'))\n"
            f"    time.sleep({seconds})\n"
            f"print('model written') if not {fail} else sys.exit('no GPU left')\n")


def test_retraining_from_a_session_runs_the_logic_child_reports_progress_and_cancels(
        tmp_path, mrml_scene, monkeypatch):
    from LesionSuiteLib.child_process import ChildProcess, child_env
    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession
    from lesion_core.errors import LesionSuiteError

    root = tmp_path / "outputs"
    write_cmb_case(root)
    session = CaseSession(mrml_scene, find_cases(root)[0], feedback_root(root))
    with pytest.raises(LesionSuiteError, match="no CMB decision"):
        session.start_retraining()                       # nothing decided yet
    session.act("accept")
    calls, scripts = [], [fake_training(3), fake_training(1, fail=True),
                          fake_training(50, seconds=1.0)]

    def start_training(store, init_model=None, out_folder=None, **_):  # the Logic's call
        calls.append((Path(store), init_model, Path(out_folder)))
        child = ChildProcess([sys.executable, "-c", scripts[len(calls) - 1]],
                             env=child_env())
        return child, Path(out_folder)

    monkeypatch.setattr(session.logic, "start_training", start_training)

    def run(job, until=lambda job: job.finished, seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until(job):
            job.poll()
            time.sleep(0.05)
        return job

    job = run(session.start_retraining())
    store = feedback_root(root)
    assert calls[0][:2] == (store, None)                  # the store, the shipped model
    assert calls[0][2].parent == store.parent and calls[0][2].name.startswith("cmb_reader_")
    assert job.succeeded and job.fraction == 1.0
    assert job.text == f"New model: {calls[0][2]}"

    job = run(session.start_retraining())
    assert job.finished and not job.succeeded and job.text == "Retraining failed: no GPU left"

    job = run(session.start_retraining(), until=lambda job: job.fraction > 0)
    assert job.text.startswith("2% epoch 1")
    job.cancel()
    run(job, seconds=20)
    assert job.finished and not job.succeeded and "cancelled" in job.text
    assert not job.child.running


def test_a_t1_mode_result_opens_on_the_image_its_summary_names(tmp_path, mrml_scene):
    """A WMH summary names its input (as predict and the demo write it), so a result
    outside the demo's layout, here one of the T1 mode, opens on that image."""
    import json

    from LesionSuiteLib.web_review.cases import feedback_root, find_cases
    from LesionSuiteLib.web_review.session import CaseSession

    root = tmp_path / "outputs"
    image = wmh_outputs.flair_volume(2)
    image_path = lesion_io.write_volume(image, tmp_path / "elsewhere" / "t1.nii.gz")
    folder = root / "real_t1_wmh"
    wmh_outputs.write_outputs(folder, image, t1=True)
    summary = json.loads((folder / "wmh_summary.json").read_text())
    (folder / "wmh_summary.json").write_text(json.dumps({"image": str(image_path), **summary}))
    [case] = find_cases(root)
    assert case.image == image_path and not case.problem, case.problem
    session = CaseSession(mrml_scene, case, feedback_root(root), reader="dr-web")
    assert session.result is not None
    session.close()

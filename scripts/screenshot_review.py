#!/usr/bin/env python3
"""Screenshots of the browser review station, one per task, and its latency figures.

    .venv/bin/python scripts/screenshot_review.py [DIR] [--out docs/images]

Starts ``lesion-suite review DIR`` on a free port (DIR default: a folder of small
hand-made WMH, CMB and ICH results in the demo's layout, built from the test helpers),
opens each case in turn in Debian's chromium (Playwright), waits for the three slice
views' and the 3D view's images (a plain ``chromium --screenshot`` only catches the
loading splash) and saves ``review_<task>.png`` of each task's first case (the ICH page
on its most probable slice). It prints, as JSON, what docs/benchmarks.md reports: server
start (to the first answer), first image (page load to the views' images), case switch,
the server's memory (resident and peak resident, ``VmRSS`` / ``VmHWM``, after each case
opened), slice-frame latency while scrolling the axial view (mouse wheel to the view's
next image, median and p95), 3D frame latency while rotating the WMH surfaces (a mouse
drag step to the 3D view's next image), and accept-click to store-write latency (median
of the clicks; these write records into DIR's feedback store, so give a copy of real
results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "Testing"))

import test_web_review as web  # noqa: E402  (the tests' server and browser helpers)


def build_examples(root: Path) -> Path:
    """Small WMH, CMB and ICH results in the demo's layout (``predictions/<id>`` beside
    ``synthetic/<id>/<modality>.nii.gz``)."""
    import cmb_outputs
    import ich_outputs
    import wmh_outputs
    from lesion_core import io as lesion_io

    for subject, modality, module, image in (
            ("wmh-demo", "flair", wmh_outputs, wmh_outputs.flair_volume(1)),
            ("cmb-demo", "swi", cmb_outputs, cmb_outputs.swi_volume(1)),
            ("ich-demo", "ct", ich_outputs, ich_outputs.ct_volume(1))):
        image_path = root / "synthetic" / subject / f"{modality}.nii.gz"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        lesion_io.write_volume(image, image_path)
        folder = root / "predictions" / subject
        if module is wmh_outputs:
            module.write_outputs(folder, image)
        else:
            module.write_outputs(folder, image, image_path=str(image_path))
    return root


def store_size(root: Path) -> int:
    return len(web.store_decisions(root))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="results to review (default: examples)")
    parser.add_argument("--out", default=str(REPO / "docs" / "images"))
    args = parser.parse_args(argv)
    if web.missing_browser_parts():
        sys.exit(f"screenshot_review: missing {', '.join(web.missing_browser_parts())}: "
                 f"{web.INSTALL}")
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="review-shots-"))
    root = Path(args.folder) if args.folder else build_examples(work / "outputs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = web.Server(root, web.free_port(), work / "server.log")
    figures = {"server_start_s": round(server.start_s, 2)}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=web.chromium_path(),
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            started = time.perf_counter()
            page.goto(server.url)
            web.wait_for_views(page, 4)
            figures["first_image_s"] = round(time.perf_counter() - started, 2)
            titles = page.locator(".case-item").all_inner_texts()
            shot_tasks, switches, memory = set(), [], {"start": server_memory(server)}
            for index, title in enumerate(titles):
                task = title.split()[0].lower()
                started = time.perf_counter()
                page.locator(".case-item").nth(index).click()
                page.wait_for_function(
                    "i => document.querySelector('.case-title').innerText.trim() === document"
                    ".querySelectorAll('.case-item')[i].querySelector('.v-list-item-title')"
                    ".innerText.trim()", arg=index, timeout=web.PAGE_TIMEOUT_MS)
                web.wait_for_views(page, 4)
                time.sleep(1.5)  # let the views' last frames after the switch arrive
                switches.append(time.perf_counter() - started - 1.5)
                memory[title.split("\n")[0].strip()] = server_memory(server)
                if task in shot_tasks:
                    continue
                if task == "ich":
                    show_most_probable_slice(page)
                page.screenshot(path=str(out / f"review_{task}.png"))
                if task == "wmh":
                    figures["slice_frame_s"] = scroll_latencies(page)
                    figures["threed_frame_s"] = rotate_latencies(page)
                shot_tasks.add(task)
                if task == "cmb":
                    figures["accept_click_to_store_s"] = click_latencies(page, root)
            figures["case_switch_s"] = round(statistics.median(switches), 2)
            figures["memory_mb"] = memory
            browser.close()
    finally:
        server.stop()
    figures["screenshots"] = sorted(str(p) for p in out.glob("review_*.png"))
    print(json.dumps(figures, indent=1))
    return 0


def server_memory(server) -> dict:
    """The server process's resident and peak resident memory (MB) from /proc."""
    fields = {}
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024)
    return {"rss": fields.get("VmRSS"), "peak": fields.get("VmHWM")}


def rotate_latencies(page, steps: int = 12) -> dict:
    """Seconds from one mouse-drag step in the 3D view (a rotation) to that view's next
    image: median and p95 of ``steps`` (take the picture before: the camera stays
    turned until the case is opened again)."""
    view = page.locator("img.image-display-area").nth(3)
    box = view.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    times = []
    for step in range(steps):
        before = view.get_attribute("src")
        started = time.perf_counter()
        page.mouse.move(x + 8 * (step + 1), y)
        try:
            page.wait_for_function(
                "old => document.querySelectorAll('img.image-display-area')[3].src !== old",
                arg=before, timeout=5000, polling=5)
        except Exception:  # no new frame: not a latency
            continue
        times.append(time.perf_counter() - started)
        time.sleep(0.1)
    page.mouse.up()
    times.sort()
    return {"median": round(statistics.median(times), 3),
            "p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
            "frames": len(times)} if times else {}


def show_most_probable_slice(page) -> None:
    """Click the ICH table's most probable slice (the CAM is on it) and let it draw."""
    rows = web.rows(page, "slice-row")
    best = max(range(len(rows)), key=lambda i: float(rows[i][1] or 0))
    page.locator("tr.slice-row").nth(best).click()
    # The click scrolled the panel to the row: back to its top for the picture.
    page.evaluate("document.querySelectorAll('.v-navigation-drawer__content')"
                  ".forEach(e => { e.scrollTop = 0; })")
    time.sleep(1.5)


def scroll_latencies(page, steps: int = 30) -> dict:
    """Seconds from one mouse-wheel step over the axial view to that view's next image
    (the server renders the slice and streams it): median and p95 of ``steps``."""
    view = page.locator("img.image-display-area").first
    box = view.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    times = []
    for step in range(steps):
        before = view.get_attribute("src")
        started = time.perf_counter()
        page.mouse.wheel(0, 100 if step < steps // 2 else -100)
        try:
            page.wait_for_function(
                "old => document.querySelector('img.image-display-area').src !== old",
                arg=before, timeout=5000, polling=5)
        except Exception:  # no new frame (e.g. at the volume's edge): not a latency
            continue
        times.append(time.perf_counter() - started)
        time.sleep(0.1)
    times.sort()
    return {"median": round(statistics.median(times), 3),
            "p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
            "frames": len(times)} if times else {}


def click_latencies(page, root: Path, clicks: int = 3) -> dict:
    """Median and maximum seconds from an Accept click to the record in the store."""
    times = []
    for _ in range(clicks):
        before = store_size(root)
        started = time.perf_counter()
        page.locator(".action-accept").click()
        while store_size(root) == before and time.perf_counter() - started < 20:
            time.sleep(0.005)
        times.append(time.perf_counter() - started)
        page.keyboard.press("u")  # undo: the store keeps both records
        while store_size(root) == before + 1 and time.perf_counter() - started < 20:
            time.sleep(0.005)
    return {"median": round(statistics.median(times), 3), "max": round(max(times), 3)}


if __name__ == "__main__":
    sys.exit(main())

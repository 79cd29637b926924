"""A screenshot (PNG) of an HTML report in headless Chromium, for the docs.

    python scripts/screenshot_report.py demo_output/synthetic/<subject>/prediction/report.html \
        docs/images/report_wmh.png [--width 1100 --height 1500]

Chromium draws the page as a browser window of ``--width`` x ``--height`` pixels and saves
that (the top of a longer page). It needs Debian's or Ubuntu's ``chromium`` package
(``sudo apt-get install -y chromium``); ``--browser`` names another Chromium-based browser
binary (``google-chrome``). Run as root (a container), the browser's sandbox is turned off,
as Chromium refuses to start as root otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Browser binaries tried in this order when --browser is not given.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("headless Chromium is needed: install it with "
                "'sudo apt-get install -y chromium' (Debian, Ubuntu), or name a "
                "Chromium-based browser with --browser")


def find_browser(name: str | None) -> str | None:
    """The path of the browser binary (``name``, or the first of :data:`BROWSERS`)."""
    for candidate in ([name] if name else BROWSERS):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def screenshot(page: Path, out: Path, width: int, height: int, browser: str,
               timeout_s: float = 120.0) -> None:
    """Save the top ``width`` x ``height`` pixels of ``page`` as the PNG ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # no state from a user's profile
        command = [browser, "--headless", "--disable-gpu", "--hide-scrollbars",
                   "--no-first-run", f"--user-data-dir={profile}",
                   f"--window-size={width},{height}", f"--screenshot={out.resolve()}",
                   page.resolve().as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.insert(1, "--no-sandbox")
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{browser} did not write {out}: " + " | ".join(tail))


def reduce_colours(png: Path, colours: int) -> None:
    """Rewrite ``png`` with an adaptive palette of ``colours`` (a page is mostly flat
    colour: a third of the size, no visible change)."""
    from PIL import Image

    with Image.open(png) as picture:
        reduced = picture.convert("RGB").quantize(colors=colours, dither=Image.Dither.NONE)
    reduced.save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report (.html)")
    parser.add_argument("out", type=Path, help="the screenshot (.png)")
    parser.add_argument("--width", type=int, default=1100, help="window width (pixels)")
    parser.add_argument("--height", type=int, default=1500, help="window height (pixels)")
    parser.add_argument("--browser", help="browser binary (default: chromium, found on PATH)")
    parser.add_argument("--colors", type=int, default=0,
                        help="reduce the PNG to this many colours (e.g. 256, for the docs; "
                             "default: keep every colour)")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"{args.page}: no such report", file=sys.stderr)
        return 2
    browser = find_browser(args.browser)
    if browser is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    try:
        screenshot(args.page, args.out, args.width, args.height, browser)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.colors:
        reduce_colours(args.out, args.colors)
    print(f"screenshot: {args.out} ({args.width} x {args.height}, "
          f"{args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

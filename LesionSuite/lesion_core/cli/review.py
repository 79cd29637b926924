"""``lesion-suite review DIR``: review the results under DIR in a web browser.

A trame-slicer server (:mod:`LesionSuiteLib.web_review`, the Slicer-side layer: it holds
an MRML scene) serves a page on ``--host`` (default 127.0.0.1, this machine only: use an
SSH tunnel from the reading workstation) with the case queue of every prediction folder
under DIR, linked slice views and each task's review, whose decisions go to the feedback
store ``DIR/feedback``.

Neither trame nor Slicer is imported until the command runs (``lesion-suite --help`` and
the other commands must work without the optional ``review`` extra); without them the
command says in one line how to install them.
"""

from __future__ import annotations

import argparse

from ..errors import CommandError

#: How to install what the review needs (the ``review`` extra of pyproject.toml).
INSTALL_HINT = ('Install it with pip install "lesion-suite[review]" (trame-slicer with '
                'slicer-core and vtk)')


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("review", help="review the results in a folder from a web browser "
                                           "(needs the review extra: trame-slicer)")
    parser.add_argument("folder", metavar="DIR",
                        help="a folder of prediction outputs (e.g. what demo, batch or "
                             "<task> predict wrote); the store is DIR/feedback")
    parser.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s: this machine only)")
    parser.add_argument("--reader", help="the reader's name in the store (default: the login)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.set_defaults(run=run)


def check_installed() -> None:
    """Raise the one-line ``CommandError`` naming the install when trame-slicer or the
    MRML library is missing."""
    import importlib.util

    missing = [name for name in ("trame_slicer", "slicer", "vtk")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(f"the browser review needs {', '.join(missing)}, which is not "
                           "installed", INSTALL_HINT)


def run(args: argparse.Namespace) -> int:
    check_installed()
    from LesionSuiteLib.web_review.server import serve  # the Slicer-side layer, lazily

    serve(args.folder, port=args.port, host=args.host, reader=args.reader,
          open_browser=args.open)
    return 0

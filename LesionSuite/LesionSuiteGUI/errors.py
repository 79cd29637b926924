"""Show an error to the user and carry on: what the panels' slots need.

``slicer.util.tryWithErrorDisplay`` shows the error and then raises it again (5.6 to
5.10 alike), so in a slot such as "show what the store holds after the reader's entry"
the redraw after the ``with`` block never runs when the entry is refused, and the error
escapes into Qt. :func:`showingErrors` shows it the same way, records it in the log
(in testing mode, where no dialog is shown, that is the only trace) and ends it there.
"""

import logging
from contextlib import contextmanager

import slicer


@contextmanager
def showingErrors(message: str, waitCursor: bool = False):
    """``with showingErrors(message):`` shows an exception raised in the block (message,
    error, traceback as details), logs it, and lets the code after the block run.
    ``waitCursor``: show the wait cursor while the block runs."""
    try:
        with slicer.util.tryWithErrorDisplay(message, waitCursor=waitCursor):
            yield
    except Exception:
        logging.exception(message)

"""``LesionSuiteGUI.errors.showingErrors``: an error is shown and the slot carries on.

``slicer.util.tryWithErrorDisplay`` re-raises after showing the error, so a panel's redraw
after a refused rating or point never ran. Here the wheel's own ``tryWithErrorDisplay``
runs (the one of Slicer's ``util.py``) with a stand-in for the application's dialogs.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from LesionSuiteGUI.errors import showingErrors  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


class FakeApp:
    def __init__(self, testing: bool):
        self.testing = testing

    def testingEnabled(self):
        return self.testing


@pytest.fixture()
def shown(monkeypatch):
    """Messages the error dialog would show; the application is not in testing mode."""
    messages = []
    monkeypatch.setattr(slicer, "app", FakeApp(testing=False), raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay",
                        lambda text, detailedText=None, **kw: messages.append(text))
    return messages


def test_an_error_is_shown_logged_and_the_code_after_the_block_runs(shown, caplog):
    after = []
    with caplog.at_level(logging.ERROR):
        with showingErrors("The rating was not saved."):
            raise ValueError("4 is off the 0-3 scale")
        after.append("redrawn")
    assert after == ["redrawn"]
    assert shown == ["The rating was not saved.\n\n4 is off the 0-3 scale"]
    assert "The rating was not saved." in caplog.text and "ValueError" in caplog.text


def test_nothing_is_shown_when_the_block_succeeds(shown):
    with showingErrors("Cannot undo."):
        value = 1
    assert value == 1 and shown == []


def test_in_testing_mode_the_error_is_only_logged(monkeypatch, caplog):
    monkeypatch.setattr(slicer, "app", FakeApp(testing=True), raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay",
                        lambda *a, **kw: pytest.fail("no dialog in testing mode"))
    with caplog.at_level(logging.ERROR):
        with showingErrors("Cannot export."):
            raise OSError("disk full")
    assert "disk full" in caplog.text


def test_panels_show_errors_through_showing_errors_only():
    """No slot uses ``tryWithErrorDisplay`` directly (it would end the slot with the
    error); only the helper wraps it."""
    helper = REPO / "LesionSuite" / "LesionSuiteGUI" / "errors.py"
    found = []
    for folder in ("LesionSuite", "WMHDualTasker", "CMBDetector", "ICHWeakSeg"):
        for path in (REPO / folder).rglob("*.py"):
            if path == helper:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, (ast.Attribute, ast.Name))
                      and getattr(node, "attr", getattr(node, "id", None)) == "tryWithErrorDisplay"]
    assert found == []

"""The task panels on the shared widget base (``LesionSuiteGUI.task_widget``), with stand-ins
for what only the Slicer application has (Qt, the parameter node wrapper, the hub's
dependency installer).

Each module file is imported as Slicer imports it; its widget is set up against its own
.ui (only the widget names the .ui holds exist) on a real MRML scene (slicer-core). What
is checked: every push button of the .ui is wired to a slot of the panel, the per-user
settings keep their keys, Apply and Train call the Logic with the hub's device and the
panel's options (retraining got no device for CMB and ICH before; the box that asks for a
result on an image the head checks refuse), the result summary starts with the
out-of-distribution warning of such a result, a refused review action is shown and the
panel redrawn, and the self-test skeleton runs every test in a fresh scene.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

REPO = Path(__file__).resolve().parent.parent
MODULES = ("WMHDualTasker", "CMBDetector", "ICHWeakSeg")
DEVICE = "cuda:0"


class Widget:
    """Any Qt object: attributes can be set, calls and connections are recorded."""

    def __init__(self, name: str = ""):
        self.__dict__.update(name=name, calls=[], connections={})

    def connect(self, signal, slot):
        self.connections[signal] = slot

    def __getattr__(self, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)

        def method(*args, **kwargs):
            self.calls.append((attribute, args))
            return Widget(attribute)

        return method


class Ui:
    """``childWidgetVariables`` of a .ui file: one Widget per named widget, nothing else."""

    def __init__(self, path: Path):
        self.classes = {w.get("name"): w.get("class")
                        for w in ET.parse(path).getroot().iter("widget")}
        for name in self.classes:
            setattr(self, name, Widget(name))


def _wrapper(cls):
    """``parameterNodeWrapper``: the fields with their defaults, bound to a node."""

    class Parameters:
        def __init__(self, node):
            self.node = node
            for field in cls.__annotations__:
                setattr(self, field, getattr(cls, field, None))

        def connectGui(self, ui):
            return "gui-tag"

        def disconnectGui(self, tag):
            assert tag == "gui-tag"

        def AddObserver(self, event, method, priority=0.0):
            return 1

        def RemoveObserver(self, tag):
            pass

    Parameters.__name__ = cls.__name__
    return Parameters


@pytest.fixture
def app(monkeypatch, mrml_scene):
    """The application's modules stood in for; returns what they recorded."""
    recorded = types.SimpleNamespace(settings={}, loaded=[], shown=[], panels=[])

    class Settings:
        def value(self, key, default=None):
            return recorded.settings.get(key, default)

        def setValue(self, key, value):
            recorded.settings[key] = value

    qt = types.ModuleType("qt")
    qt.QSettings = Settings
    qt.QTimer = Widget
    qt.QTimer.singleShot = staticmethod(lambda ms, slot: slot())
    for name in ("QTableWidgetItem", "QShortcut", "QKeySequence"):
        setattr(qt, name, Widget)
    qt.Qt = Widget("Qt")
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = _wrapper
    wrapper.Choice = wrapper.WithinRange = lambda *args: None
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[:-len("Widget")]
            self.parent = parent or Widget("parent")
            self.layout = Widget("layout")

        def resourcePath(self, filename):
            return str(REPO / self.moduleName / "Resources" / filename)

        def setup(self):
            pass

    scripted.ScriptedLoadableModule = ScriptedLoadableModule
    scripted.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    scripted.ScriptedLoadableModuleTest = unittest.TestCase
    dependencies = types.ModuleType("LesionSuiteGUI.dependencies")
    dependencies.ensure_dependencies = lambda: True
    dependencies.selected_device = lambda: DEVICE

    for name, module in (("qt", qt), ("slicer.i18n", i18n),
                         ("LesionSuiteGUI.dependencies", dependencies),
                         ("slicer.parameterNodeWrapper", wrapper),
                         ("slicer.ScriptedLoadableModule", scripted)):
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("LesionSuiteGUI.task_widget", *MODULES):  # imported again, on the stand-ins
        monkeypatch.delitem(sys.modules, name, raising=False)

    def load_ui(path):
        recorded.loaded.append(Path(path))
        return Widget("uiWidget")

    monkeypatch.setattr(slicer, "mrmlScene", mrml_scene, raising=False)
    application = Widget("app")  # in testing mode: errors are logged, no dialog
    application.__dict__["testingEnabled"] = lambda: True
    monkeypatch.setattr(slicer, "app", application, raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables",
                        lambda widget: Ui(recorded.loaded[-1]))
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers",
                        lambda **kwargs: recorded.shown.append(kwargs))
    yield recorded
    for panel in recorded.panels:  # as Slicer does on exit: no observer outlives its panel
        panel.cleanup()


def _load(module: str):
    spec = importlib.util.spec_from_file_location(module, REPO / module / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded  # the app fixture's monkeypatch removes it again
    spec.loader.exec_module(loaded)
    return loaded


def _panel(app, module: str):
    widget = getattr(_load(module), f"{module}Widget")()
    widget.setup()
    app.panels.append(widget)
    return widget


class RecordingLogic:
    """Stands in for a panel's Logic: records the calls that start work."""

    def __init__(self, logic):
        self.logic, self.calls = logic, []

    def start_prediction(self, *args, **kwargs):
        self.calls.append(("start_prediction", args, kwargs))
        return Widget("job")

    def start_training(self, *args, **kwargs):
        self.calls.append(("start_training", args, kwargs))
        return Widget("child"), Path("new-model")

    def __getattr__(self, name):
        return getattr(self.logic, name)


# ------------------------------------------------------------------ set-up


@pytest.mark.parametrize("module", MODULES)
def test_a_panel_sets_up_from_its_ui_with_every_button_wired(app, module):
    widget = _panel(app, module)
    assert app.loaded == [REPO / module / "Resources" / "UI" / f"{module}.ui"]
    buttons = {name for name, cls in widget.ui.classes.items() if cls == "QPushButton"}
    wired = {name for name in buttons
             if "clicked(bool)" in getattr(widget.ui, name).connections}
    assert wired == buttons and {"applyButton", "cancelButton", "undoButton",
                                 "trainButton"} <= buttons
    for name in buttons:
        slot = getattr(widget.ui, name).connections["clicked(bool)"]
        assert slot.__self__ is widget and callable(slot)
    assert type(widget.logic) is widget.logicClass
    # Per-user settings under the module's own keys, the feedback folder the Logic's.
    assert widget.settingsPrefix == f"LesionSuite/{module}/"
    assert widget.ui.feedbackFolderPathLineEdit.currentPath == str(
        widget.logic.retraining.default_feedback_root())
    widget.ui.readerLineEdit.text = " dr-w "
    widget.onSettingsChanged()
    assert app.settings[f"LesionSuite/{module}/reader"] == "dr-w"


@pytest.mark.parametrize("module", MODULES)
def test_the_module_is_listed_under_the_hub_and_loaded_after_it(app, module):
    parent = Widget("module")
    getattr(_load(module), module)(parent)
    assert parent.categories == ["LesionSuite"] and parent.dependencies == ["LesionSuite"]
    assert parent.title and "not for clinical use" in parent.helpText


# ------------------------------------------------------------------ apply and train


@pytest.mark.parametrize("module, options", [
    ("WMHDualTasker", {"t1": False, "force": False}),
    ("CMBDetector", {"modality": "SWI", "allow_modality_mismatch": False, "force": False}),
    ("ICHWeakSeg", {"feedback_root": "FEEDBACK", "force": False}),
])
def test_apply_starts_the_prediction_on_the_hubs_device(app, mrml_scene, module, options):
    node = _scan(mrml_scene)
    widget = _panel(app, module)
    assert widget._parameterNode.inputVolume is node  # the scene's first volume
    widget.updateButtons()  # what the parameter node's ModifiedEvent calls
    assert widget.ui.applyButton.enabled and not widget.ui.cancelButton.enabled
    widget.logic = RecordingLogic(widget.logic)
    widget.onApply()
    feedback = widget.ui.feedbackFolderPathLineEdit.currentPath
    options = {k: feedback if v == "FEEDBACK" else v for k, v in options.items()}
    assert widget.logic.calls == [("start_prediction", (node, None),
                                   {"device": DEVICE, **options})]
    assert widget.ui.cancelButton.enabled and not widget.ui.applyButton.enabled
    widget.onApply()  # busy: nothing more starts
    assert len(widget.logic.calls) == 1


@pytest.mark.parametrize("module", MODULES)
def test_the_force_box_asks_for_a_result_marked_out_of_distribution(app, mrml_scene,
                                                                    module):
    """The check box, bound to the parameter node, reaches ``start_prediction(force=)``."""
    _scan(mrml_scene)
    widget = _panel(app, module)
    box = "forceResultCheckBox"
    assert widget.ui.classes[box] == "QCheckBox" and not widget._parameterNode.forceResult
    assert _ui_property(module, box, "SlicerParameterName") == "forceResult"
    assert "out of distribution" in _ui_property(module, box, "toolTip")
    assert _ui_property(module, box, "text") == \
        "Report a result even if the image does not look like a head scan"
    widget._parameterNode.forceResult = True
    widget.logic = RecordingLogic(widget.logic)
    widget.onApply()
    (name, args, kwargs), = widget.logic.calls
    assert name == "start_prediction" and kwargs["force"] is True


@pytest.mark.parametrize("module, task", [("WMHDualTasker", "wmh"), ("CMBDetector", "cmb"),
                                          ("ICHWeakSeg", "ich")])
def test_the_summary_starts_with_the_warning_on_a_result_out_of_distribution(
        app, mrml_scene, tmp_path, module, task):
    import saved_work as sw

    widget = _panel(app, module)
    case = sw.make_case(task, mrml_scene, tmp_path / "work")
    widget._result = case.result
    # The WMH ratings table needs Qt's item flags: its summary is drawn without a review.
    widget._review = None if task == "wmh" else case.open_review(tmp_path / "store")
    widget.showReview()
    normal = widget.ui.resultSummaryLabel.text
    assert "Model:" in normal and "distribution" not in normal
    findings = ["the image has only 2 distinct values: a mask or label map, not a scan",
                "the brain mask measures 90 mL, outside the 600-2600 mL of an adult brain"]
    case.result.summary["out_of_distribution"] = findings
    widget.showReview()
    assert widget.ui.resultSummaryLabel.text == (
        f"Out of distribution: {findings[0]}; {findings[1]}. Treat this result with "
        f"caution.\n{normal}")


def _scan(scene):
    """A small scalar volume node: the scene's first volume, the panel's default input."""
    import numpy as np

    from lesion_core.volume import Volume
    from LesionSuiteLib import mrml_bridge as mb

    return mb.volume_to_node(scene, Volume(np.zeros((3, 3, 3), np.float32), np.eye(4)),
                             "scan")


def _ui_property(module: str, widget: str, name: str) -> str:
    """The text of a widget's property in the module's .ui."""
    root = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot()
    found = root.find(f".//widget[@name='{widget}']/property[@name='{name}']/string")
    return found.text


@pytest.mark.parametrize("module, options", [
    ("WMHDualTasker", {"steps": None}),
    ("CMBDetector", {"stage1": False}),
    ("ICHWeakSeg", {}),
])
def test_train_retrains_on_the_hubs_device_for_every_task(app, module, options):
    widget = _panel(app, module)
    widget.ui.modelFolderPathLineEdit.currentPath = " /models/mine "
    widget.logic = RecordingLogic(widget.logic)
    widget.onTrain()
    assert widget.logic.calls == [("start_training", (
        widget.ui.feedbackFolderPathLineEdit.currentPath, "/models/mine"),
        {"device": DEVICE, **options})]
    assert widget._trainedModel == Path("new-model")
    assert widget.ui.statusLabel.text == widget.trainingMessage


# ------------------------------------------------------------------ DICOM export


class ExportingLogic(RecordingLogic):
    """Records ``export_dicom`` and returns its paths, or raises ``error``."""

    error = None

    def export_dicom(self, result, folder, **kwargs):
        self.calls.append(("export_dicom", (result, folder), kwargs))
        if self.error is not None:
            raise self.error
        return {"dicom_seg": Path(folder) / "x_seg.dcm", "dicom_sr": Path(folder) / "x_sr.dcm"}


@pytest.mark.parametrize("module, task", [("WMHDualTasker", "wmh"), ("CMBDetector", "cmb"),
                                          ("ICHWeakSeg", "ich")])
def test_export_dicom_needs_a_dicom_input_and_shows_the_paths_or_the_error(
        app, mrml_scene, tmp_path, monkeypatch, caplog, module, task):
    """The button is wired, enabled only for a result on an input loaded from DICOM; it
    asks for a folder (remembered), calls the Logic's ``export_dicom`` with the panel's
    feedback folder, and shows the paths written, or the error."""
    import saved_work as sw
    from lesion_core.errors import InvalidImageError

    widget = _panel(app, module)
    button = widget.ui.exportDicomButton
    assert widget.ui.classes["exportDicomButton"] == "QPushButton"
    assert button.connections["clicked(bool)"] == widget.onExportDicom
    assert _ui_property(module, "exportDicomButton", "text") == "Export DICOM SEG + SR"
    widget.updateButtons()
    assert not button.enabled                                   # no result
    case = sw.make_case(task, mrml_scene, tmp_path / "work")
    widget._result = case.result
    widget.updateButtons()
    assert not button.enabled                                   # input not from DICOM
    case.result.input.SetAttribute("DICOM.instanceUIDs", "1.2.3.1 1.2.3.2")
    widget.updateButtons()
    assert button.enabled

    answers, starts = [str(tmp_path / "dicom"), "", str(tmp_path / "dicom")], []

    def ask(parent, title, start):
        starts.append(start)
        return answers.pop(0)

    monkeypatch.setattr(sys.modules["qt"], "QFileDialog",
                        types.SimpleNamespace(getExistingDirectory=ask), raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: None)
    widget.logic = ExportingLogic(widget.logic)
    widget.onExportDicom()
    feedback = widget.ui.feedbackFolderPathLineEdit.currentPath
    assert widget.logic.calls == [("export_dicom", (case.result, str(tmp_path / "dicom")),
                                   {"feedback_root": feedback})]
    assert widget.ui.statusLabel.text == (f"Written: {tmp_path / 'dicom' / 'x_seg.dcm'} and "
                                          f"{tmp_path / 'dicom' / 'x_sr.dcm'}.")
    widget.onExportDicom()                                      # the dialog cancelled
    assert len(widget.logic.calls) == 1 and starts[1] == str(tmp_path / "dicom")

    widget.logic.error = InvalidImageError("volume 'x' was not loaded from DICOM", "Load it")
    with caplog.at_level(logging.ERROR):
        widget.onExportDicom()
    assert "not loaded from DICOM" in caplog.text and len(widget.logic.calls) == 2
    assert "Written" in widget.ui.statusLabel.text              # unchanged


# ------------------------------------------------------------------ review


class RefusingReview:
    can_undo, current, skipped_lines, case_id = True, 0, [], "case-1"

    def undo(self):
        raise OSError("the store cannot be written")

    select = accept = mark_no_haemorrhage = undo


@pytest.mark.parametrize("module", MODULES)
def test_a_refused_action_is_shown_and_the_panel_redrawn(app, module, caplog):
    widget = _panel(app, module)
    redrawn = []
    widget.showReview = lambda jump=False: redrawn.append(jump)
    widget._review = RefusingReview()
    with caplog.at_level(logging.ERROR):
        widget.onUndo()
    assert "the store cannot be written" in caplog.text and redrawn == [False]
    if widget.rowView:
        widget.onRowClicked(Widget("index"))
        assert redrawn == [False, True]  # a row click centres the views on it
    assert widget.caseText(widget._review) == "Case case-1."
    widget._review.skipped_lines = ["line 4"]
    assert widget.caseText(widget._review, "Note.") == \
        "Case case-1. Note. " + widget.damagedLinesText.format(n=1)


# ------------------------------------------------------------------ self-test skeleton


def test_the_self_test_runs_every_test_in_a_fresh_scene(app, monkeypatch):
    _load("ICHWeakSeg")
    from LesionSuiteGUI.task_widget import TaskModuleTest

    runs, panel = [], _panel(app, "ICHWeakSeg")
    monkeypatch.setattr(slicer, "mrmlScene", types.SimpleNamespace(
        Clear=lambda: runs.append("clear")))
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(toymodule=1), raising=False)
    monkeypatch.setattr(slicer.util, "getModuleWidget", lambda name: panel)
    panel.ui.inputSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]

    class ToyModuleTest(TaskModuleTest):
        def checkParameterDefaults(self, parameters):
            runs.append(("defaults", parameters.camThreshold))

        def test_round_trip(self):
            runs.append("round trip")

    monkeypatch.setattr(panel.logicClass, "getParameterNode", lambda self: None)
    ToyModuleTest().runTest()
    assert runs == ["clear", ("defaults", 0.4), "clear", "round trip"]

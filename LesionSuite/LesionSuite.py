"""LesionSuite hub module: Python dependencies, compute device and installed models.

The task modules (WMHDualTasker, CMBDetector, ICHWeakSeg) depend on this module. Their
panels call :func:`ensure_dependencies` before first use and :func:`selected_device` for
the device: both are defined in :mod:`LesionSuiteGUI.dependencies` (the panels' package
imports no module file) and importable from here too (``import LesionSuite;
LesionSuite.selected_device()`` in the Python console). The logic is
:class:`LesionSuiteLib.hub_logic.LesionSuiteLogic` (no Qt, tested without the
application); this file holds the panel only (where the device choice is kept: see
:mod:`LesionSuiteGUI.dependencies`).
"""

import logging
import os

import qt

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

from LesionSuiteGUI.dependencies import deviceSettings, ensure_dependencies, selected_device
from LesionSuiteGUI.errors import showingErrors
from LesionSuiteLib.hub_logic import (DEVICE_CHOICES, DEVICE_SETTING, FORCE_CPU_SETTING,
                                      LesionSuiteLogic, skip_unless_installed)

__all__ = ["LesionSuite", "LesionSuiteLogic", "LesionSuiteTest", "LesionSuiteWidget",
           "ensure_dependencies", "selected_device"]

MODEL_COLUMNS = (("name", "Name"), ("task", "Task"), ("version", "Version"),
                 ("modality", "Modality"), ("source", "Source"), ("folder", "Folder"))


class LesionSuite(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LesionSuite")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = []
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = _(
            "Settings shared by the LesionSuite modules (WMH DualTasker, CMB Detector, "
            "ICH WeakSeg): install the Python packages they need (PyTorch through the PyTorch "
            "extension), choose the compute device, and see the installed models. The models "
            "shipped with the extension are trained on synthetic images only; they are not "
            "evidence of clinical accuracy and are not for clinical use.")
        self.parent.acknowledgementText = _(
            "LesionSuite implements published methods for label-efficient quantification of "
            "small vessel disease lesions and haemorrhage; see each task module for its "
            "method. It uses 3D Slicer, PyTorch and MONAI.")


#
# Widget
#


class LesionSuiteWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionSuite.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LesionSuiteLogic()

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.ui.openUserModelsFolderButton.connect("clicked(bool)", self.onOpenUserModelsFolder)

        table = self.ui.modelsTableWidget
        table.setColumnCount(len(MODEL_COLUMNS))
        table.setHorizontalHeaderLabels([_(title) for _key, title in MODEL_COLUMNS])
        table.horizontalHeader().setStretchLastSection(True)

        self.ui.devicePreferenceComboBox.addItems(list(DEVICE_CHOICES))
        preference, forceCPU = deviceSettings()
        self.ui.devicePreferenceComboBox.setCurrentIndex(DEVICE_CHOICES.index(preference))
        self.ui.forceCPUCheckBox.checked = forceCPU
        self.ui.devicePreferenceComboBox.connect("currentIndexChanged(int)",
                                                 self.onDeviceSettingsChanged)
        self.ui.forceCPUCheckBox.connect("toggled(bool)", self.onDeviceSettingsChanged)

        self.updateDependencyStatus()
        self.updateDeviceDescription()
        self.onRefreshModels()

    def onDeviceSettingsChanged(self, *args) -> None:
        settings = qt.QSettings()
        settings.setValue(DEVICE_SETTING, self.ui.devicePreferenceComboBox.currentText)
        settings.setValue(FORCE_CPU_SETTING, bool(self.ui.forceCPUCheckBox.checked))
        self.updateDeviceDescription()

    # ---------------------------------------------------------------- sections
    def updateDependencyStatus(self) -> None:
        try:
            self.ui.dependencyStatusLabel.text = self.logic.dependency_summary()
            complete = not self.logic.missing_requirements() and self.logic.torch_satisfied()
        except Exception as exc:  # a damaged installation: say so instead of failing setup
            logging.exception("Cannot check the LesionSuite dependencies")
            self.ui.dependencyStatusLabel.text = str(exc)
            complete = False
        self.ui.installDependenciesButton.enabled = not complete

    def onInstallDependencies(self) -> None:
        with showingErrors(_("Failed to install the Python dependencies.")):
            ensure_dependencies(askConfirmation=True)
        self.updateDependencyStatus()
        self.updateDeviceDescription()
        self.onRefreshModels()

    def updateDeviceDescription(self) -> None:
        label = self.ui.deviceDescriptionLabel
        if not self.logic.torch_satisfied():
            label.text = _("PyTorch is not installed: install the dependencies first.")
            return
        try:
            preference, forceCPU = deviceSettings()
            label.text = _("Computing on: {device}").format(
                device=self.logic.describe_device(preference, forceCPU))
        except Exception as exc:  # e.g. "cuda" chosen on a machine without a CUDA GPU
            label.text = str(exc)

    def onRefreshModels(self) -> None:
        table = self.ui.modelsTableWidget
        table.setRowCount(0)
        problems = []
        try:
            rows = self.logic.installed_models(problems=problems)
        except ImportError as exc:
            self.ui.modelsStatusLabel.text = _(
                "Models cannot be listed until the dependencies are installed ({error}).").format(
                error=exc)
            return
        for row in rows:
            index = table.rowCount
            table.insertRow(index)
            for column, (key, _title) in enumerate(MODEL_COLUMNS):
                item = qt.QTableWidgetItem(str(row[key]))
                item.setToolTip(row["folder"])
                table.setItem(index, column, item)
        table.resizeColumnsToContents()
        text = _("{count} model(s) installed.").format(count=len(rows))
        if problems:
            text += " " + _("Skipped: {problems}").format(
                problems="; ".join(str(p) for p in problems))
        self.ui.modelsStatusLabel.text = text

    def onOpenUserModelsFolder(self) -> None:
        with showingErrors(_("Cannot open the user models folder.")):
            folder = self.logic.user_models_dir()
            folder.mkdir(parents=True, exist_ok=True)
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(os.fspath(folder)))


#
# Test
#


class LesionSuiteTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_device_settings()
        self.setUp()
        self.test_missing_requirements()
        # Last: both are skipped (SkipTest ends runTest) until the dependencies are installed.
        self.setUp()
        self.test_device_with_force_cpu()
        self.setUp()
        self.test_installed_models()

    def test_device_settings(self):
        preference, forceCPU = deviceSettings()
        self.assertIn(preference, DEVICE_CHOICES)
        self.assertIsInstance(forceCPU, bool)

    def test_missing_requirements(self):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "requirements.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("numpy\nlesion-suite-no-such-package-xyz>=1\n")
            missing = LesionSuiteLogic().missing_requirements(path)
        self.assertEqual(missing, ["lesion-suite-no-such-package-xyz>=1"])

    def test_device_with_force_cpu(self):
        skip_unless_installed(self)
        logic = LesionSuiteLogic()
        self.assertEqual(logic.device("auto", force_cpu=True).type, "cpu")

    def test_installed_models(self):
        skip_unless_installed(self)
        for row in LesionSuiteLogic().installed_models():
            self.assertTrue(row["name"] and row["task"] and row["folder"])

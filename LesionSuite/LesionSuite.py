"""LesionSuite hub module: Python dependencies, compute device and installed models.

The task modules (WMHDualTasker, CMBDetector, ICHWeakSeg) depend on this module and call
:func:`ensure_dependencies` before first use and :func:`selected_device` for the device.
The logic is :class:`LesionSuiteLib.hub_logic.LesionSuiteLogic` (no Qt, tested without the
application); this file holds the Qt parts only. The device choice is a per-user
application setting (``qt.QSettings``, keys in :mod:`LesionSuiteLib.hub_logic`), not a
scene parameter: scenes are closed with every case and shared with others.
"""

import importlib
import logging
import os
import tempfile

import qt

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

from LesionSuiteGUI.errors import showingErrors
from LesionSuiteLib.hub_logic import (DEVICE_CHOICES, DEVICE_SETTING, FORCE_CPU_SETTING,
                                      TORCH_REQUIREMENT, LesionSuiteLogic, device_preference,
                                      pip_install_arguments, setting_flag,
                                      skip_unless_installed)

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
# Functions for the task modules
#


def deviceSettings():
    """``(preference, forceCPU)`` from the application settings: the preference is one of
    ``DEVICE_CHOICES`` ("auto" when nothing valid is stored)."""
    settings = qt.QSettings()
    return (device_preference(settings.value(DEVICE_SETTING, "auto")),
            setting_flag(settings.value(FORCE_CPU_SETTING, False)))


def _pipEnsureFunction():
    """``slicer.packaging.pip_ensure`` where this Slicer has it (after 5.10), else None."""
    try:
        module = importlib.import_module("slicer.packaging")
    except ImportError:
        return None
    return getattr(module, "pip_ensure", None)


def _installTorch() -> bool:
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            _("LesionSuite needs the PyTorch extension to install PyTorch. Install 'PyTorch' "
              "from the Extensions Manager, restart Slicer, and try again."))
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
    return torch is not None


def _pipInstall(requirements):
    """Install with pip, the installed torch pinned by a constraints file: torch comes from
    the PyTorch extension (the build matching the GPU driver), and pip must not replace it
    with a generic one while resolving MONAI's dependencies."""
    logic = LesionSuiteLogic()
    with tempfile.TemporaryDirectory(prefix="lesion-suite-pip-") as folder:
        constraints = logic.write_pip_constraints(folder)
        pipEnsure = _pipEnsureFunction()
        if pipEnsure is not None:
            from packaging.requirements import Requirement

            pipEnsure([Requirement(r) for r in requirements], constraints=str(constraints),
                      prompt_install=False, prompt_restart=False, requester="LesionSuite")
        else:
            slicer.util.pip_install(pip_install_arguments(list(requirements), constraints))
    importlib.invalidate_caches()


def _offerRestart() -> None:
    """Ask to restart Slicer now: modules that could not load before the installation, and
    packages already imported in an older version, work only after a restart."""
    if slicer.util.confirmYesNoDisplay(
            _("The Python packages are installed. Restart 3D Slicer now? Until it restarts, "
              "modules that could not load without them, and packages that were already "
              "loaded in another version, may not work."),
            windowTitle=_("LesionSuite dependencies")):
        slicer.util.restart()


def ensure_dependencies(askConfirmation: bool = True) -> bool:
    """Make sure PyTorch and the packages of ``Resources/requirements.txt`` are installed.

    Returns True when everything is installed (at once when nothing was missing). Missing
    packages are installed after the user agrees (one dialog lists them all): PyTorch
    through the PyTorch extension, the others with pip, the installed PyTorch pinned; then
    a restart is offered. Returns False when the user declines or PyTorch cannot be
    installed; raises when pip fails.
    """
    logic = LesionSuiteLogic()
    missing = logic.missing_requirements()
    needTorch = not logic.torch_satisfied()
    if not missing and not needTorch:
        return True
    installedTorch = logic.torch_version()
    if needTorch and installedTorch is not None:
        slicer.util.errorDisplay(
            _("LesionSuite needs PyTorch {requirement} but PyTorch {version} is installed. "
              "Uninstall it in the PyTorch Utils module, restart Slicer, and install "
              "dependencies again.").format(requirement=TORCH_REQUIREMENT,
                                            version=installedTorch))
        return False
    wanted = ([f"torch{TORCH_REQUIREMENT} (through the PyTorch extension)"] if needTorch else [])
    wanted += missing
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("LesionSuite needs these Python packages. They will be downloaded and installed "
              "now, which may take several minutes:") + "\n\n" + "\n".join(wanted),
            windowTitle=_("LesionSuite dependencies")):
        return False
    with slicer.util.WaitCursor():
        if needTorch and not _installTorch():
            return False
        importlib.invalidate_caches()  # the new torch's metadata, for the pin
        if missing:
            _pipInstall(missing)
    complete = not logic.missing_requirements() and logic.torch_satisfied()
    if complete:
        _offerRestart()
    return complete


def selected_device():
    """The ``torch.device`` chosen in the hub's Device section (auto, cpu, cuda, mps)."""
    preference, forceCPU = deviceSettings()
    return LesionSuiteLogic().device(preference, force_cpu=forceCPU)


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

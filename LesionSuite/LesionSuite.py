"""LesionSuite hub module: Python dependencies, compute device and installed models.

The task modules (WMHDualTasker, CMBDetector, ICHWeakSeg) depend on this module and call
:func:`ensure_dependencies` before first use and :func:`selected_device` for the device.
The logic is :class:`LesionSuiteLib.hub_logic.LesionSuiteLogic` (no Qt, tested without the
application); this file holds the Qt parts only.
"""

import importlib
import logging
import os
from typing import Annotated

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LesionSuiteLib.hub_logic import DEVICE_CHOICES, TORCH_REQUIREMENT, LesionSuiteLogic

__all__ = ["LesionSuite", "LesionSuiteLogic", "LesionSuiteParameterNode", "LesionSuiteTest",
           "LesionSuiteWidget", "ensure_dependencies", "selected_device"]

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
# Parameter node
#


@parameterNodeWrapper
class LesionSuiteParameterNode:
    """
    devicePreference - "auto" (GPU when there is one), "cpu", "cuda" or "mps".
    forceCPU - compute on the CPU whatever the preference (e.g. when the GPU is busy).
    """

    devicePreference: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    forceCPU: bool = False


#
# Functions for the task modules
#


def _pipEnsureFunction():
    """``pip_ensure`` of Slicer's package-management module, where this Slicer has one."""
    for name in ("pydeps", "packaging"):
        try:
            module = importlib.import_module(f"slicer.{name}")
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module.pip_ensure
    return None


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
    pipEnsure = _pipEnsureFunction()
    if pipEnsure is not None:
        from packaging.requirements import Requirement

        # torch comes from the PyTorch extension (the build matching the GPU driver); pip
        # must not replace it with a generic one while resolving monai's dependencies.
        pipEnsure([Requirement(r) for r in requirements], skip_packages=["torch"],
                  prompt_install=False, requester="LesionSuite")
    else:
        slicer.util.pip_install(list(requirements))
    importlib.invalidate_caches()


def ensure_dependencies(askConfirmation: bool = True) -> bool:
    """Make sure PyTorch and the packages of ``Resources/requirements.txt`` are installed.

    Returns True when everything is installed (at once when nothing was missing). Missing
    packages are installed after the user agrees (one dialog lists them all): PyTorch
    through the PyTorch extension, the others with pip. Returns False when the user declines
    or PyTorch cannot be installed; raises when pip fails.
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
        if missing:
            _pipInstall(missing)
    return not logic.missing_requirements() and logic.torch_satisfied()


def selected_device():
    """The ``torch.device`` chosen in the hub's Device section (auto, cpu, cuda, mps)."""
    logic = LesionSuiteLogic()
    parameters = LesionSuiteParameterNode(logic.getParameterNode())
    return logic.device(parameters.devicePreference, force_cpu=parameters.forceCPU)


#
# Widget
#


class LesionSuiteWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionSuite.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LesionSuiteLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModels)
        self.ui.openUserModelsFolderButton.connect("clicked(bool)", self.onOpenUserModelsFolder)

        table = self.ui.modelsTableWidget
        table.setColumnCount(len(MODEL_COLUMNS))
        table.setHorizontalHeaderLabels([_(title) for _key, title in MODEL_COLUMNS])
        table.horizontalHeader().setStretchLastSection(True)

        self.initializeParameterNode()
        self.updateDependencyStatus()
        self.onRefreshModels()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(LesionSuiteParameterNode(self.logic.getParameterNode()))

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.updateDeviceDescription)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.updateDeviceDescription)
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
        with slicer.util.tryWithErrorDisplay(_("Failed to install the Python dependencies.")):
            ensure_dependencies(askConfirmation=True)
        self.updateDependencyStatus()
        self.updateDeviceDescription()
        self.onRefreshModels()

    def updateDeviceDescription(self, caller=None, event=None) -> None:
        label = self.ui.deviceDescriptionLabel
        if not self.logic.torch_satisfied():
            label.text = _("PyTorch is not installed: install the dependencies first.")
            return
        try:
            parameters = self._parameterNode
            preference = parameters.devicePreference if parameters else "auto"
            forceCPU = parameters.forceCPU if parameters else False
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
        with slicer.util.tryWithErrorDisplay(_("Cannot open the user models folder.")):
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
        self.test_parameter_node_defaults()
        self.setUp()
        self.test_missing_requirements()
        self.setUp()
        self.test_device_with_force_cpu()
        self.setUp()
        self.test_installed_models()

    def test_parameter_node_defaults(self):
        parameters = LesionSuiteParameterNode(LesionSuiteLogic().getParameterNode())
        self.assertEqual(parameters.devicePreference, "auto")
        self.assertFalse(parameters.forceCPU)

    def test_missing_requirements(self):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "requirements.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("numpy\nlesion-suite-no-such-package-xyz>=1\n")
            missing = LesionSuiteLogic().missing_requirements(path)
        self.assertEqual(missing, ["lesion-suite-no-such-package-xyz>=1"])

    def test_device_with_force_cpu(self):
        logic = LesionSuiteLogic()
        if not logic.torch_satisfied():
            logging.info("PyTorch is not installed: device test skipped")
            return
        self.assertEqual(logic.device("auto", force_cpu=True).type, "cpu")

    def test_installed_models(self):
        logic = LesionSuiteLogic()
        if not logic.torch_satisfied():
            logging.info("PyTorch is not installed: model listing test skipped")
            return
        for row in logic.installed_models():
            self.assertTrue(row["name"] and row["task"] and row["folder"])

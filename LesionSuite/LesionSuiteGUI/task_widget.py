"""What every task panel (WMH DualTasker, CMB Detector, ICH WeakSeg) does the same way.

:class:`TaskWidget` is the base of a task module's widget. It gives the panel:

- the set-up: the module's ``Resources/UI/<Module>.ui`` loaded, the Logic made, Apply,
  Cancel, Undo and Train (and the panel's own buttons, :attr:`TaskWidget.buttonSlots`)
  wired, cleanup / enter / exit;
- the parameter node (the module's ``parameterNodeClass`` wrapper) bound to the .ui, with
  the first scalar volume of the scene as default input;
- per-user settings kept in the application settings, not in the scene (a scene shared
  with a colleague must not carry the reader's name or folders): the model folder, the
  feedback folder and the reader's name;
- the prediction and the training run in child processes that a timer polls, so the GUI
  never waits for them; Cancel ends the whole process tree; progress in the bar. Both
  run on the device chosen in the LesionSuite hub;
- the review of a result: opened when the prediction is finished, the reader's actions
  forwarded to it with errors shown (:func:`~LesionSuiteGUI.errors.showingErrors`), the
  case line with the damaged lines of the store;
- "Export DICOM SEG + SR": the result, as the reader left it, written into a folder the
  user picks (the Logic's ``export_dicom``); enabled when the input was loaded from DICOM.

A task's widget sets the class attributes (its Logic, parameter node, words) and writes
what is its own: ``setupPanel``, ``updatePanel``, the options its Logic calls take
(``predictionOptions``, ``trainingOptions``, ``reviewOptions``), ``showResult`` and
``showReview``. Its .ui has ``inputSelector``, ``applyButton``, ``cancelButton``,
``undoButton``, ``trainButton``, ``exportDicomButton``, ``progressBar``, ``statusLabel``,
``caseLabel``, ``modelFolderPathLineEdit``, ``feedbackFolderPathLineEdit`` and
``readerLineEdit``.

:class:`TaskModuleTest` is the self-test skeleton and :class:`TaskModule` the module
description every task module shares.
"""

import logging
import os
import unittest

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                            ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from .dependencies import ensure_dependencies, selected_device
from .errors import showingErrors

POLL_INTERVAL_MS = 200


class TaskModule(ScriptedLoadableModule):
    """A task module's description: listed under LesionSuite, loaded after the hub.

    The module class sets its (translated) :attr:`moduleTitle`, :attr:`moduleHelp` and
    :attr:`moduleAcknowledgement`; Slicer makes it with the module's ``parent``.
    """

    moduleTitle = ""
    moduleHelp = ""
    moduleAcknowledgement = ""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = self.moduleTitle
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = ["LesionSuite"]
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = self.moduleHelp
        self.parent.acknowledgementText = self.moduleAcknowledgement


class TaskWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    #: The module's Logic class (a ``LesionSuiteLib.task_logic.TaskLogic``).
    logicClass = None
    #: The module's parameter node wrapper class.
    parameterNodeClass = None
    #: The task's work in messages, e.g. "WMH analysis".
    taskName = ""
    #: The panel's own buttons: ``(ui name, slot name)``, connected to ``clicked``.
    buttonSlots = ()
    #: ui name of a table view whose clicked row selects the review's item, or "".
    rowView = ""
    #: Shown when the review of a result cannot be opened.
    reviewError = ""
    #: Shown when the review refuses an action (e.g. the store cannot be written).
    actionError = ""
    #: "{n} damaged line(s) of the ... file were skipped." (``n``: how many).
    damagedLinesText = ""
    #: Shown while the training runs.
    trainingMessage = ""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None            # running prediction (a BackgroundPrediction)
        self._training = None       # running training ChildProcess
        self._trainedModel = None   # the folder it writes
        self._result = None         # result nodes shown
        self._review = None         # the reader's review of that result

    @property
    def settingsPrefix(self) -> str:
        """Application-settings group of the panel's per-user choices."""
        return f"LesionSuite/{self.moduleName}/"

    def defaultFeedbackRoot(self):
        return self.logicClass.retraining.default_feedback_root()

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logicClass()

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent,
                         self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for name, slot in (("applyButton", "onApply"), ("cancelButton", "onCancel"),
                           ("undoButton", "onUndo"), ("trainButton", "onTrain"),
                           ("exportDicomButton", "onExportDicom"), *self.buttonSlots):
            getattr(self.ui, name).connect("clicked(bool)", getattr(self, slot))
        if self.rowView:
            getattr(self.ui, self.rowView).connect("clicked(QModelIndex)", self.onRowClicked)
        self._loadSettings()
        self.ui.progressBar.hide()
        self.setupPanel()
        self.initializeParameterNode()

    def setupPanel(self) -> None:
        """The panel's own widgets (after the common ones, before the parameter node)."""

    def cleanup(self) -> None:
        """Stop the timer and the children, drop the observers."""
        self._timer.stop()
        for child in (self._job, self._training):
            if child is not None:
                child.cancel()
        if self._job is not None:
            self._job.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    # ------------------------------------------------------------- parameters
    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        if self._job is not None:  # its input volume is about to go
            self._job.cancel()
        self._result = self._review = None
        self.onResultCleared()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onResultCleared(self) -> None:
        """The result and its review are gone (scene closed)."""
        self.showReview()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.parameterNodeClass(self.logic.getParameterNode()))
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume and not firstVolume.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.updateButtons)
            self.updateButtons()

    def updateButtons(self, caller=None, event=None) -> None:
        parameters, review, busy = self._parameterNode, self._review, self._busy()
        self.ui.applyButton.enabled = bool(parameters and parameters.inputVolume) and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.trainButton.enabled = not busy and self.canTrain(parameters)
        self.ui.undoButton.enabled = bool(review and review.can_undo)
        self.ui.exportDicomButton.enabled = not busy and self.canExportDicom()
        self.updatePanel(parameters, review, busy)

    def canExportDicom(self) -> bool:
        """Whether there is a result whose input names its DICOM source."""
        result = self._result
        return result is not None and self.logic.has_dicom_source(result.input)

    def canTrain(self, parameters) -> bool:
        """Whether the panel's choices allow training (when nothing runs)."""
        return True

    def updatePanel(self, parameters, review, busy: bool) -> None:
        """The panel's own widgets in step with the parameters and the review."""

    # --------------------------------------------------------------- settings
    def _loadSettings(self) -> None:
        settings = qt.QSettings()
        self.ui.modelFolderPathLineEdit.currentPath = settings.value(
            self.settingsPrefix + "modelFolder", "")
        self.ui.feedbackFolderPathLineEdit.currentPath = settings.value(
            self.settingsPrefix + "feedbackFolder", os.fspath(self.defaultFeedbackRoot()))
        self.ui.readerLineEdit.text = settings.value(self.settingsPrefix + "reader", "")
        for pathLineEdit in (self.ui.modelFolderPathLineEdit, self.ui.feedbackFolderPathLineEdit):
            pathLineEdit.connect("currentPathChanged(QString)", self.onSettingsChanged)
        self.ui.readerLineEdit.connect("editingFinished()", self.onSettingsChanged)

    def onSettingsChanged(self, *args) -> None:
        settings = qt.QSettings()
        settings.setValue(self.settingsPrefix + "modelFolder",
                          self.ui.modelFolderPathLineEdit.currentPath)
        settings.setValue(self.settingsPrefix + "feedbackFolder",
                          self.ui.feedbackFolderPathLineEdit.currentPath)
        settings.setValue(self.settingsPrefix + "reader", self.ui.readerLineEdit.text.strip())
        if self._review is not None:
            self._review.reader = self._reader()

    def _modelFolder(self):
        return self.ui.modelFolderPathLineEdit.currentPath.strip() or None

    def _feedbackFolder(self):
        folder = self.ui.feedbackFolderPathLineEdit.currentPath.strip()
        return folder or os.fspath(self.defaultFeedbackRoot())

    def _reader(self):
        return self.ui.readerLineEdit.text.strip() or None

    # --------------------------------------------------------------- progress
    def _busy(self) -> bool:
        return self._job is not None or self._training is not None

    def _showProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.show()
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def _stopped(self, message: str) -> None:
        self._timer.stop()
        self.ui.progressBar.hide()
        self.ui.statusLabel.text = message
        self.updateButtons()

    def onCancel(self) -> None:
        with slicer.util.WaitCursor():
            for child in (self._job, self._training):
                if child is not None:
                    child.cancel()

    def onPoll(self) -> None:
        if self._job is not None:
            self._showProgress(*self._job.poll())
            if self._job.done:
                self._finishPrediction()
        if self._training is not None:
            self._pollTraining()

    # ------------------------------------------------------------- prediction
    def onApply(self) -> None:
        parameters = self._parameterNode
        self.startPrediction(lambda device: self.logic.start_prediction(
            parameters.inputVolume, self._modelFolder(), device=device,
            **self.predictionOptions(parameters)))

    def predictionOptions(self, parameters) -> dict:
        """The task's keyword arguments of the Logic's ``start_prediction``."""
        return {}

    def startPrediction(self, start) -> None:
        """``self._job = start(device)`` (the Logic's ``start_prediction``), after making
        sure the dependencies are installed; errors are shown, not raised."""
        if self._busy():
            return
        with showingErrors(
                _("Cannot start the {task}.").format(task=self.taskName), waitCursor=True):
            if not ensure_dependencies():
                return
            self._job = start(str(selected_device()))
            self._showProgress(0.0, _("Starting..."))
            self.updateButtons()
            self._timer.start()

    def _finishPrediction(self) -> None:
        from lesion_core.errors import OperationCancelled

        job, self._job = self._job, None
        try:
            result = self.logic.finish_prediction(job)
        except OperationCancelled:
            self._stopped(_("Cancelled."))
            return
        except Exception as exc:
            logging.exception("%s failed", self.taskName)
            self._stopped(_("Failed."))
            slicer.util.errorDisplay(_("The {task} failed: {error}").format(
                task=self.taskName, error=exc))
            return
        # One result per input volume: a re-run replaces the nodes; decisions stay stored.
        if self._result is not None and self._result.input is result.input:
            self.logic.remove_result_nodes(self._result)
        self._result = result
        self._stopped(_("Done."))
        self.onPredictionFinished(result)

    def onPredictionFinished(self, result) -> None:
        self.showResult(result)
        self.openReview()

    def showResult(self, result) -> None:
        """Show a new result in the views (before its review opens)."""

    # ----------------------------------------------------------------- review
    def openReview(self) -> None:
        """Open the reader's review of the result shown (errors shown), then show it."""
        self._review = None
        with showingErrors(self.reviewError):
            self._review = self.logic.open_review(self._result, self._feedbackFolder(),
                                                  reader=self._reader(),
                                                  **self.reviewOptions())
        self.showReview(jump=True)

    def reviewOptions(self) -> dict:
        """The task's keyword arguments of the Logic's ``open_review``."""
        return {}

    def showReview(self, jump: bool = False) -> None:
        """Show the result and the review (``jump``: centre the views on its current
        item)."""
        raise NotImplementedError

    def caseText(self, review, *notes: str) -> str:
        """``Case <id>.``, then ``notes``, then how many damaged lines the store skipped."""
        text = " ".join([_("Case {case}.").format(case=review.case_id), *notes])
        if review.skipped_lines:
            text += " " + self.damagedLinesText.format(n=len(review.skipped_lines))
        return text

    def _act(self, method: str, *args, jump: bool = False, message: str = "") -> None:
        """Forward a click or key to the review (its ``method``), then redraw; a refused
        action shows ``message`` (default :attr:`actionError`) and redraws all the same."""
        if self._review is None:
            return
        with showingErrors(message or self.actionError):
            getattr(self._review, method)(*args)
        self.showReview(jump=jump)

    def onUndo(self) -> None:
        self._act("undo")

    def onRowClicked(self, index) -> None:
        self._act("select", index.row(), jump=True)

    def _jump(self) -> None:
        """Centre the slice views on the review's current item (reviews that have
        ``jump_position()``, RAS mm or None)."""
        review = self._review
        position = review.jump_position() if review is not None else None
        if position is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)

    # ------------------------------------------------------------------ DICOM
    def onExportDicom(self) -> None:
        """Ask for a folder, then write the result there as a DICOM SEG and SR (the
        Logic's ``export_dicom``, with the reader's edits and decisions); the paths go in
        the status line, an error in the error display."""
        if self._result is None or self._busy():
            return
        settings = qt.QSettings()
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Folder for the DICOM SEG and SR"),
            settings.value(self.settingsPrefix + "dicomExportFolder", ""))
        if not folder:
            return
        settings.setValue(self.settingsPrefix + "dicomExportFolder", folder)
        with showingErrors(_("The DICOM SEG and SR were not written."), waitCursor=True):
            paths = self.logic.export_dicom(self._result, folder,
                                            feedback_root=self._feedbackFolder())
            self.ui.statusLabel.text = _("Written: {seg} and {sr}.").format(
                seg=paths["dicom_seg"], sr=paths["dicom_sr"])

    # --------------------------------------------------------------- training
    def onTrain(self) -> None:
        self.startTraining(lambda device: self.logic.start_training(
            self._feedbackFolder(), self._modelFolder(), device=device,
            **self.trainingOptions(self._parameterNode)))

    def trainingOptions(self, parameters) -> dict:
        """The task's keyword arguments of the Logic's ``start_training``."""
        return {}

    def startTraining(self, start) -> None:
        """``self._training, self._trainedModel = start(device)`` (the Logic's
        ``start_training`` on the hub's device), then follow it with
        :attr:`trainingMessage` shown."""
        if self._busy():
            return
        with showingErrors(_("Cannot start the training."), waitCursor=True):
            if not ensure_dependencies():
                return
            self._training, self._trainedModel = start(str(selected_device()))
            self._showProgress(0.0, self.trainingMessage)
            self.updateButtons()
            self._timer.start()

    def _pollTraining(self) -> None:
        from LesionSuiteLib.child_process import FinishedEvent, ProgressEvent

        for event in self._training.poll():
            if isinstance(event, ProgressEvent):
                self._showProgress(event.fraction, event.message)
            elif isinstance(event, FinishedEvent):
                training, self._training = self._training, None
                if event.cancelled:
                    self._stopped(_("Training cancelled; no model was saved."))
                elif event.returncode != 0:
                    self._stopped(_("Training failed."))
                    slicer.util.errorDisplay(_("Training failed:") + "\n" + training.log_tail(),
                                             detailedText="\n".join(training.log))
                else:
                    self.ui.modelFolderPathLineEdit.currentPath = os.fspath(self._trainedModel)
                    self._stopped(_("New model saved in {folder} and selected for the next "
                                    "Apply.").format(folder=self._trainedModel))


class TaskModuleTest(ScriptedLoadableModuleTest):
    """The self-test of a task module ``<Module>Test`` (Developer mode: Reload and Test):
    every ``test_*`` method in name order, each in a cleared scene; ``test_module_loads``
    checks the panel and the parameter defaults (:meth:`checkParameterDefaults`)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for name in unittest.TestLoader().getTestCaseNames(type(self)):
            self.setUp()
            getattr(self, name)()

    def test_module_loads(self):
        moduleName = type(self).__name__[:-len("Test")]
        self.assertTrue(hasattr(slicer.modules, moduleName.lower()))
        widget = slicer.util.getModuleWidget(moduleName)
        self.assertEqual(list(widget.ui.inputSelector.nodeTypes), ["vtkMRMLScalarVolumeNode"])
        self.checkParameterDefaults(
            widget.parameterNodeClass(widget.logicClass().getParameterNode()))

    def checkParameterDefaults(self, parameters) -> None:
        """The module's parameter defaults."""

"""What every task panel (WMH DualTasker, CMB Detector, ...) does the same way.

:class:`TaskWidgetMixin` is mixed into a ``ScriptedLoadableModuleWidget`` that also derives
from ``VTKObservationMixin``. It gives the panel:

- the parameter node (the module's ``parameterNodeClass`` wrapper) bound to the .ui, with
  the first scalar volume of the scene as default input;
- per-user settings kept in the application settings, not in the scene (a scene shared
  with a colleague must not carry the reader's name or folders): the model folder, the
  feedback folder and the reader's name;
- the prediction and the training run in child processes that a timer polls, so the GUI
  never waits for them; Cancel ends the whole process tree; progress in the bar.

The widget sets :attr:`settingsPrefix`, :attr:`parameterNodeClass`, :attr:`taskName` and
:meth:`defaultFeedbackRoot`; has ``self.logic`` (``getParameterNode``,
``finish_prediction``) and a .ui with ``applyButton``, ``cancelButton``, ``progressBar``,
``statusLabel``, ``modelFolderPathLineEdit``, ``feedbackFolderPathLineEdit`` and
``readerLineEdit``; and implements ``updateButtons``, ``onPredictionFinished(result)`` and
``onResultCleared()``.
"""

import logging
import os

import qt
import vtk

import slicer
from slicer.i18n import tr as _

from .errors import showingErrors

POLL_INTERVAL_MS = 200


class TaskWidgetMixin:
    settingsPrefix = ""
    parameterNodeClass = None
    #: The task's work in messages, e.g. "WMH analysis".
    taskName = ""

    def defaultFeedbackRoot(self):
        raise NotImplementedError

    def initTaskWidget(self) -> None:
        """Call in ``__init__``."""
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None            # running prediction (a BackgroundPrediction)
        self._training = None       # running training ChildProcess
        self._trainedModel = None   # the folder it writes
        self._result = None         # result nodes shown
        self._review = None         # the reader's review of that result

    def setupTaskWidget(self) -> None:
        """Call in ``setup`` once ``self.ui`` and ``self.logic`` exist."""
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent,
                         self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        settings = qt.QSettings()
        self.ui.modelFolderPathLineEdit.currentPath = settings.value(
            self.settingsPrefix + "modelFolder", "")
        self.ui.feedbackFolderPathLineEdit.currentPath = settings.value(
            self.settingsPrefix + "feedbackFolder", os.fspath(self.defaultFeedbackRoot()))
        self.ui.readerLineEdit.text = settings.value(self.settingsPrefix + "reader", "")
        for pathLineEdit in (self.ui.modelFolderPathLineEdit, self.ui.feedbackFolderPathLineEdit):
            pathLineEdit.connect("currentPathChanged(QString)", self.onSettingsChanged)
        self.ui.readerLineEdit.connect("editingFinished()", self.onSettingsChanged)
        self.ui.progressBar.hide()

    def cleanupTaskWidget(self) -> None:
        """Call in ``cleanup``: stop the timer and the children, drop the observers."""
        self._timer.stop()
        for child in (self._job, self._training):
            if child is not None:
                child.cancel()
        if self._job is not None:
            self._job.cleanup()
        self.removeObservers()

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

    # --------------------------------------------------------------- settings
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
    def _jump(self) -> None:
        """Centre the slice views on the review's current item (panels whose review object
        has ``jump_position()``, RAS mm or None)."""
        review = getattr(self, "_review", None)
        position = review.jump_position() if review is not None else None
        if position is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)

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
    def startPrediction(self, start) -> None:
        """``self._job = start(device)`` (the Logic's ``start_prediction``), after making
        sure the dependencies are installed; errors are shown, not raised."""
        if self._busy():
            return
        from LesionSuite import ensure_dependencies, selected_device

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

    # --------------------------------------------------------------- training
    def startTraining(self, start, message: str) -> None:
        """``self._training, self._trainedModel = start()`` (the Logic's
        ``start_training``), then follow it with ``message`` shown."""
        if self._busy():
            return
        from LesionSuite import ensure_dependencies

        with showingErrors(_("Cannot start the training."), waitCursor=True):
            if not ensure_dependencies():
                return
            self._training, self._trainedModel = start()
            self._showProgress(0.0, message)
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

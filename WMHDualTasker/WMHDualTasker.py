"""WMH DualTasker: white matter hyperintensities and ARWMC ratings (WMH-DualTasker, deep-T1-WMH).

The logic is :class:`WMHDualTaskerLib.logic.WMHDualTaskerLogic` (no Qt, tested without the
application) and the reader's ratings :class:`WMHDualTaskerLib.review.RatingReview`; this
file holds the Qt parts only. The prediction and the training run in child processes that
a timer polls, so the GUI never waits for them.
"""

import logging
import os
from pathlib import Path
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from WMHDualTaskerLib.logic import WMHDualTaskerLogic, default_feedback_root

__all__ = ["WMHDualTasker", "WMHDualTaskerLogic", "WMHDualTaskerParameterNode",
           "WMHDualTaskerTest", "WMHDualTaskerWidget"]

#: Per-user choices kept in the application settings, not in the scene: a scene file
#: shared with a colleague must not carry the reader's name or folders.
SETTINGS_PREFIX = "LesionSuite/WMHDualTasker/"
RATING_COLUMNS = (_("Region"), _("Side"), _("Predicted"), _("Level"), _("WMH (mL)"),
                  _("Your rating"))
READER_COLUMN_INDEX = len(RATING_COLUMNS) - 1
POLL_INTERVAL_MS = 200


class WMHDualTasker(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("WMH DualTasker")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = ["LesionSuite"]
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = _(
            "White matter hyperintensity (WMH) segmentation with the ARWMC visual rating "
            "(0-3 in each of five regions per side, total 0-30), from a FLAIR volume "
            "(WMH-DualTasker, learned from ratings only), or WMH segmentation from a 3D T1 "
            "alone (T1 mode, deep-T1-WMH). Apply gives the WMH segmentation, the activation "
            "map, the ARWMC table and the region atlas. Type your own ratings in the table: "
            "each is saved at once in the ratings folder, and 'Train from my ratings' "
            "fine-tunes a copy of the model from them in the background. The shipped models "
            "are trained on synthetic images only and are not for clinical use.")
        self.parent.acknowledgementText = _(
            "WMH-DualTasker learns WMH segmentation and ARWMC rating from visual ratings "
            "alone, with consistency between transformed views; deep-T1-WMH segments WMH on "
            "3D T1 taught from labels made on FLAIR. Part of the LesionSuite extension; see "
            "the LesionSuite module for dependencies, device and installed models.")


#
# Parameter node
#


@parameterNodeWrapper
class WMHDualTaskerParameterNode:
    """
    inputVolume - the FLAIR volume (or the 3D T1 volume in the T1 mode) to analyse.
    modality - "FLAIR": segmentation and ARWMC ratings; "T1": segmentation from T1 alone.
    showRegions - show the ARWMC region atlas of the current result.
    trainingSteps - steps of "Train from my ratings"; 0 keeps the command's default.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modality: Annotated[str, Choice(["FLAIR", "T1"])] = "FLAIR"
    showRegions: bool = False
    trainingSteps: Annotated[int, WithinRange(0, 100000)] = 0


#
# Widget
#


class WMHDualTaskerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None          # running BackgroundPrediction
        self._training = None     # running ChildProcess of the training command
        self._trainedModel = None
        self._result = None       # WMHResultNodes shown
        self._review = None       # RatingReview of that result

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WMHDualTasker.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = WMHDualTaskerLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent,
                         self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.ratingsTableWidget.connect("itemChanged(QTableWidgetItem*)",
                                           self.onRatingEdited)

        settings = qt.QSettings()
        self.ui.modelFolderPathLineEdit.currentPath = settings.value(
            SETTINGS_PREFIX + "modelFolder", "")
        self.ui.feedbackFolderPathLineEdit.currentPath = settings.value(
            SETTINGS_PREFIX + "feedbackFolder", os.fspath(default_feedback_root()))
        self.ui.readerLineEdit.text = settings.value(SETTINGS_PREFIX + "reader", "")
        for pathLineEdit in (self.ui.modelFolderPathLineEdit, self.ui.feedbackFolderPathLineEdit):
            pathLineEdit.connect("currentPathChanged(QString)", self.onSettingsChanged)
        self.ui.readerLineEdit.connect("editingFinished()", self.onSettingsChanged)

        table = self.ui.ratingsTableWidget
        table.setColumnCount(len(RATING_COLUMNS))
        table.setHorizontalHeaderLabels(list(RATING_COLUMNS))
        table.horizontalHeader().setStretchLastSection(True)
        self.ui.progressBar.hide()

        self.initializeParameterNode()

    def cleanup(self) -> None:
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

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        if self._job is not None:  # its input volume is about to go
            self._job.cancel()
        self._result = self._review = None
        self.showRatings()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(WMHDualTaskerParameterNode(self.logic.getParameterNode()))
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

    # ---------------------------------------------------------------- state
    def _busy(self) -> bool:
        return self._job is not None or self._training is not None

    def updateButtons(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        busy = self._busy()
        self.ui.applyButton.enabled = bool(parameters and parameters.inputVolume) and not busy
        self.ui.cancelButton.enabled = busy
        # Ratings fine-tune the FLAIR DualTasker; the T1 mode learns from labels instead.
        self.ui.trainButton.enabled = not busy and bool(parameters) \
            and parameters.modality == "FLAIR"
        self.ui.undoButton.enabled = bool(self._review and self._review.can_undo)
        if self._result is not None and parameters is not None:
            self.logic.set_regions_visible(self._result, parameters.showRegions)

    def onSettingsChanged(self, *args) -> None:
        settings = qt.QSettings()
        settings.setValue(SETTINGS_PREFIX + "modelFolder",
                          self.ui.modelFolderPathLineEdit.currentPath)
        settings.setValue(SETTINGS_PREFIX + "feedbackFolder",
                          self.ui.feedbackFolderPathLineEdit.currentPath)
        settings.setValue(SETTINGS_PREFIX + "reader", self.ui.readerLineEdit.text.strip())
        if self._review is not None:
            self._review.reader = self.ui.readerLineEdit.text.strip() or None

    def _modelFolder(self):
        return self.ui.modelFolderPathLineEdit.currentPath.strip() or None

    def _feedbackFolder(self):
        folder = self.ui.feedbackFolderPathLineEdit.currentPath.strip()
        return folder or os.fspath(default_feedback_root())

    def _reader(self):
        return self.ui.readerLineEdit.text.strip() or None

    def _showProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.show()
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def _stopped(self, message: str) -> None:
        self._timer.stop()
        self.ui.progressBar.hide()
        self.ui.statusLabel.text = message
        self.updateButtons()

    # ---------------------------------------------------------------- apply
    def onApply(self) -> None:
        if self._busy():
            return
        from LesionSuite import ensure_dependencies, selected_device

        with slicer.util.tryWithErrorDisplay(_("Cannot start the WMH analysis."),
                                             waitCursor=True):
            if not ensure_dependencies():
                return
            self._job = self.logic.start_prediction(
                self._parameterNode.inputVolume, self._modelFolder(),
                t1=self._parameterNode.modality == "T1", device=str(selected_device()))
            self._showProgress(0.0, _("Starting..."))
            self.updateButtons()
            self._timer.start()

    def onPoll(self) -> None:
        if self._job is not None:
            self._showProgress(*self._job.poll())
            if self._job.done:
                self._finishPrediction()
        if self._training is not None:
            self._pollTraining()

    def _finishPrediction(self) -> None:
        from lesion_core.errors import OperationCancelled

        job, self._job = self._job, None
        try:
            result = self.logic.finish_prediction(job)
        except OperationCancelled:
            self._stopped(_("Cancelled."))
            return
        except Exception as exc:
            logging.exception("WMH analysis failed")
            self._stopped(_("Failed."))
            slicer.util.errorDisplay(_("The WMH analysis failed: {error}").format(error=exc))
            return
        # One result per input volume: a re-run replaces the nodes; ratings stay in the store.
        if self._result is not None and self._result.input is result.input:
            self.logic.remove_result_nodes(self._result)
        self._result = result
        self._stopped(_("Done."))
        slicer.util.setSliceViewerLayers(background=result.input,
                                         foreground=result.activation,
                                         foregroundOpacity=0.4, fit=True)
        self.openReview()

    def onCancel(self) -> None:
        with slicer.util.WaitCursor():
            for child in (self._job, self._training):
                if child is not None:
                    child.cancel()

    # ---------------------------------------------------------------- review
    def openReview(self) -> None:
        self._review = None
        with slicer.util.tryWithErrorDisplay(_("Cannot open your ratings of this case.")):
            self._review = self.logic.open_review(self._result, self._feedbackFolder(),
                                                  reader=self._reader())
        self.showRatings()

    def showRatings(self) -> None:
        table = self.ui.ratingsTableWidget
        wasBlocked = table.blockSignals(True)
        try:
            table.setRowCount(0)
            review, result = self._review, self._result
            if result is None:
                self.ui.resultSummaryLabel.text = _("Apply to see the results.")
                self.ui.caseLabel.text = ""
                return
            if result.total is None:
                total = _("not rated in the T1 mode")
            else:
                total = _("{total} (predicted)").format(total=result.total)
            self.ui.resultSummaryLabel.text = _(
                "ARWMC total: {total}. WMH volume: {ml:.2f} mL. Model: {model} {version}."
            ).format(total=total, ml=float(result.summary.get("lesion_ml", 0.0)),
                     model=result.model_id, version=result.model_version)
            if review is None:
                return
            for row in review.rows():
                index = table.rowCount
                table.insertRow(index)
                cells = (row.region.replace("_", " "), row.side, _format(row.predicted, 2),
                         _format(row.level), _format(row.lesion_ml, 3), _format(row.reader))
                for column, text in enumerate(cells):
                    item = qt.QTableWidgetItem(text)
                    if column != READER_COLUMN_INDEX:
                        item.setFlags(item.flags() & ~qt.Qt.ItemIsEditable)
                    else:
                        item.setToolTip(
                            _("Your rating, 0-{high}; empty clears it.").format(high=row.high))
                    table.setItem(index, column, item)
            table.resizeColumnsToContents()
            text = _("Case {case}.").format(case=review.case_id)
            if review.skipped_lines:
                text += " " + _("{n} damaged line(s) of the ratings file were skipped.").format(
                    n=len(review.skipped_lines))
            self.ui.caseLabel.text = text
        finally:
            table.blockSignals(wasBlocked)
            self.updateButtons()

    def onRatingEdited(self, item) -> None:
        if self._review is None or item.column() != READER_COLUMN_INDEX:
            return
        target = self._review.targets[item.row()]
        with slicer.util.tryWithErrorDisplay(_("The rating was not saved.")):
            self._review.set_rating_text(target, item.text())
        # Always redraw from the store, so a refused entry goes back to the saved rating;
        # later, because the table must not be rebuilt inside its own itemChanged signal.
        qt.QTimer.singleShot(0, self.showRatings)

    def onUndo(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot undo.")):
            if self._review is not None:
                self._review.undo()
        self.showRatings()

    # ---------------------------------------------------------------- training
    def onTrain(self) -> None:
        if self._busy():
            return
        from LesionSuite import ensure_dependencies, selected_device

        with slicer.util.tryWithErrorDisplay(_("Cannot start the training."), waitCursor=True):
            if not ensure_dependencies():
                return
            self._training, self._trainedModel = self.logic.start_training(
                self._feedbackFolder(), self._modelFolder(),
                steps=self._parameterNode.trainingSteps or None, device=str(selected_device()))
            self._showProgress(0.0, _("Training from your ratings..."))
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


def _format(value, decimals: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:.{decimals}f}" if decimals else str(int(value))


#
# Test
#


class WMHDualTaskerTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Developer mode: Reload and Test): a small synthetic FLAIR, a tiny
    untrained model, known atlases (no registration), and a rating round trip."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_module_loads()
        self.setUp()
        self.test_run_and_rating_round_trip()

    def test_module_loads(self):
        self.assertTrue(hasattr(slicer.modules, "wmhdualtasker"))
        widget = slicer.util.getModuleWidget("WMHDualTasker")
        self.assertEqual(list(widget.ui.inputSelector.nodeTypes), ["vtkMRMLScalarVolumeNode"])
        parameters = WMHDualTaskerParameterNode(WMHDualTaskerLogic().getParameterNode())
        self.assertEqual(parameters.modality, "FLAIR")
        self.assertFalse(parameters.showRegions)

    def test_run_and_rating_round_trip(self):
        import tempfile

        import numpy as np

        from LesionSuiteLib.hub_logic import LesionSuiteLogic
        from LesionSuiteLib.mrml_bridge import node_ijk_to_ras, volume_to_node
        if not LesionSuiteLogic().torch_satisfied():
            logging.info("PyTorch is not installed: WMH run test skipped")
            return
        from lesion_core.synth.anatomy import AnatomyConfig
        from lesion_core.synth.cohort import SubjectConfig, make_subject
        from lesion_core.wmh.config import DualTaskerConfig
        from lesion_core.wmh.data import known_transform_masks
        from lesion_core.wmh.model import save_wmh_model
        from lesion_core.wmh.predict import SubjectAtlases
        from lesion_core.wmh.train import build_network

        subject = make_subject(0, SubjectConfig(kind="wmh",
                                                anatomy=AnatomyConfig(spacing_mm=3.0)))
        brain, atlas = known_transform_masks(subject)
        flairNode = volume_to_node(slicer.mrmlScene, subject.images["FLAIR"], "SyntheticFLAIR")
        with tempfile.TemporaryDirectory() as folder:
            config = DualTaskerConfig(spacing_mm=4.0, shape=(48, 56, 48), features=(4, 8, 16))
            save_wmh_model(Path(folder) / "model", build_network(config), config)
            logic = WMHDualTaskerLogic()
            result = logic.run(flairNode, Path(folder) / "model",
                               atlases=SubjectAtlases(brain, atlas, atlas))
            np.testing.assert_array_equal(node_ijk_to_ras(result.activation),
                                          node_ijk_to_ras(flairNode))
            self.assertEqual(result.activation.GetImageData().GetDimensions(),
                             flairNode.GetImageData().GetDimensions())
            self.assertEqual(result.segmentation.GetSegmentation().GetNumberOfSegments(), 1)
            self.assertEqual(result.regions.GetSegmentation().GetNumberOfSegments(), 10)
            self.assertEqual(result.table.GetNumberOfRows(), 11)

            review = logic.open_review(result, Path(folder) / "feedback", reader="self-test")
            review.set_rating("frontal_left", 2)
            reopened = logic.open_review(result, Path(folder) / "feedback")
            self.assertEqual(reopened.ratings, {"frontal_left": 2})
            records = reopened.case.records()
            self.assertEqual([(r.reader, r.model_version) for r in records],
                             [("self-test", result.model_version)])
            logic.remove_result_nodes(result)

"""WMH DualTasker: white matter hyperintensities and ARWMC ratings (WMH-DualTasker, deep-T1-WMH).

The logic is :class:`WMHDualTaskerLib.logic.WMHDualTaskerLogic` (no Qt, tested without the
application) and the reader's ratings :class:`WMHDualTaskerLib.review.RatingReview`; this
file holds the Qt parts only. The prediction and the training run in child processes that
a timer polls, so the GUI never waits for them.
"""

from pathlib import Path
from typing import Annotated

import qt

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

from LesionSuiteGUI.errors import showingErrors
from LesionSuiteGUI.task_widget import TaskWidgetMixin
from WMHDualTaskerLib.logic import WMHDualTaskerLogic, default_feedback_root

__all__ = ["WMHDualTasker", "WMHDualTaskerLogic", "WMHDualTaskerParameterNode",
           "WMHDualTaskerTest", "WMHDualTaskerWidget"]

#: Per-user choices kept in the application settings, not in the scene: a scene file
#: shared with a colleague must not carry the reader's name or folders.
SETTINGS_PREFIX = "LesionSuite/WMHDualTasker/"
RATING_COLUMNS = (_("Region"), _("Side"), _("Predicted"), _("Level"), _("WMH (mL)"),
                  _("Your rating"))
READER_COLUMN_INDEX = len(RATING_COLUMNS) - 1


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


class WMHDualTaskerWidget(TaskWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    settingsPrefix = SETTINGS_PREFIX
    parameterNodeClass = WMHDualTaskerParameterNode
    taskName = _("WMH analysis")

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.initTaskWidget()   # self._result: WMHResultNodes; self._review: RatingReview

    def defaultFeedbackRoot(self):
        return default_feedback_root()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WMHDualTasker.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = WMHDualTaskerLogic()
        self.setupTaskWidget()
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.ratingsTableWidget.connect("itemChanged(QTableWidgetItem*)",
                                           self.onRatingEdited)

        table = self.ui.ratingsTableWidget
        table.setColumnCount(len(RATING_COLUMNS))
        table.setHorizontalHeaderLabels(list(RATING_COLUMNS))
        table.horizontalHeader().setStretchLastSection(True)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.cleanupTaskWidget()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onResultCleared(self) -> None:
        self.showRatings()

    # ---------------------------------------------------------------- state
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

    # ---------------------------------------------------------------- apply
    def onApply(self) -> None:
        parameters = self._parameterNode
        self.startPrediction(lambda device: self.logic.start_prediction(
            parameters.inputVolume, self._modelFolder(), t1=parameters.modality == "T1",
            device=device))

    def onPredictionFinished(self, result) -> None:
        slicer.util.setSliceViewerLayers(background=result.input,
                                         foreground=result.activation,
                                         foregroundOpacity=0.4, fit=True)
        self.openReview()

    # ---------------------------------------------------------------- review
    def openReview(self) -> None:
        self._review = None
        with showingErrors(_("Cannot open your ratings of this case.")):
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
        with showingErrors(_("The rating was not saved.")):
            self._review.set_rating_text(target, item.text())
        # Always redraw from the store, so a refused entry goes back to the saved rating;
        # later, because the table must not be rebuilt inside its own itemChanged signal.
        qt.QTimer.singleShot(0, self.showRatings)

    def onUndo(self) -> None:
        with showingErrors(_("Cannot undo.")):
            if self._review is not None:
                self._review.undo()
        self.showRatings()

    # ---------------------------------------------------------------- training
    def onTrain(self) -> None:
        steps = self._parameterNode.trainingSteps or None
        self.startTraining(lambda: self.logic.start_training(
            self._feedbackFolder(), self._modelFolder(), steps=steps,
            device=str(self._device())), _("Training from your ratings..."))

    @staticmethod
    def _device():
        from LesionSuite import selected_device

        return selected_device()


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

        from LesionSuiteLib.hub_logic import skip_unless_installed
        from LesionSuiteLib.mrml_bridge import node_ijk_to_ras, volume_to_node

        skip_unless_installed(self)  # the untrained model needs torch and MONAI
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

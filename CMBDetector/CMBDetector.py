"""CMB Detector: cerebral microbleeds (SHIVA-CMB candidates, a distilled student classifier
that rejects mimics, morphological clean-up) with the reader's review.

The logic is :class:`CMBDetectorLib.logic.CMBDetectorLogic` (no Qt, tested without the
application) and the review state machine :class:`CMBDetectorLib.review.CMBReview`; this
file holds the Qt parts only: the panel, a timer polling the child processes, keyboard
shortcuts and point placement, all forwarding to the review.
"""

from typing import Annotated

import qt

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LesionSuiteGUI.errors import showingErrors
from LesionSuiteGUI.task_widget import TaskWidgetMixin
from CMBDetectorLib.logic import CMBDetectorLogic, default_feedback_root

__all__ = ["CMBDetector", "CMBDetectorLogic", "CMBDetectorParameterNode", "CMBDetectorTest",
           "CMBDetectorWidget"]

#: Per-user choices kept in the application settings, not in the scene.
SETTINGS_PREFIX = "LesionSuite/CMBDetector/"
#: Review keys while the module is shown (Z for undo, as in the Segment Editor).
SHORTCUTS = (("A", "onAccept"), ("R", "onReject"), ("N", "onNext"), ("P", "onPrevious"),
             ("Z", "onUndo"))


class CMBDetector(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CMB Detector")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = ["LesionSuite"]
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = _(
            "Cerebral microbleed (CMB) detection on SWI or T2*-GRE: a 3D U-Net proposes "
            "candidates (SHIVA-CMB), a student classifier distilled from a teacher rejects "
            "mimics, and clean-up rules remove the rest. Review each candidate: Accept (A), "
            "Reject (R), Next (N), Previous (P), Undo (Z), or add a microbleed the detector "
            "missed. Each decision is saved at once in the decisions folder; 'Retrain from my "
            "decisions' fine-tunes a copy of the model from them in the background. The "
            "shipped model is trained on synthetic images only and is not for clinical use.")
        self.parent.acknowledgementText = _(
            "SHIVA-CMB (Sci Rep 2024) for the candidates and the knowledge-distillation "
            "discriminator of Sundaresan et al. (Front. Neuroinform. 2023). Part of the "
            "LesionSuite extension; see the LesionSuite module for dependencies, device and "
            "installed models.")


@parameterNodeWrapper
class CMBDetectorParameterNode:
    """
    inputVolume - the SWI or T2*-GRE volume.
    modality - "SWI" or "T2star" (what the input is).
    allowModalityMismatch - run a model trained on the other sequence.
    showRejected - also show the candidates stage 2 rejected.
    alsoStage1 - "Retrain from my decisions" also fine-tunes stage 1.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modality: Annotated[str, Choice(["SWI", "T2star"])] = "SWI"
    allowModalityMismatch: bool = False
    showRejected: bool = False
    alsoStage1: bool = False


class CMBDetectorWidget(TaskWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    settingsPrefix = SETTINGS_PREFIX
    parameterNodeClass = CMBDetectorParameterNode
    taskName = _("CMB detection")

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.initTaskWidget()      # self._result: CMBResultNodes; self._review: CMBReview
        self._placement = None     # markups node that receives an added point
        self._shortcuts = []

    def defaultFeedbackRoot(self):
        return default_feedback_root()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CMBDetector.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = CMBDetectorLogic()
        self.setupTaskWidget()
        for name, slot in (("applyButton", self.onApply), ("previousButton", self.onPrevious),
                           ("nextButton", self.onNext), ("acceptButton", self.onAccept),
                           ("rejectButton", self.onReject), ("addButton", self.onAdd),
                           ("undoButton", self.onUndo), ("exportButton", self.onExport),
                           ("trainButton", self.onTrain)):
            getattr(self.ui, name).connect("clicked(bool)", slot)
        self.ui.candidatesTableView.connect("clicked(QModelIndex)", self.onRowClicked)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._removeShortcuts()
        self.cleanupTaskWidget()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._installShortcuts()

    def exit(self) -> None:
        self._removeShortcuts()
        self.setParameterNode(None)

    def onResultCleared(self) -> None:
        self._placement = None
        self.showReview()

    def _installShortcuts(self) -> None:
        """Review keys on the main window while the module is shown; they only forward."""
        self._removeShortcuts()
        for key, slotName in SHORTCUTS:
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", getattr(self, slotName))
            self._shortcuts.append(shortcut)

    def _removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.deleteLater()
        self._shortcuts = []

    def updateButtons(self, caller=None, event=None) -> None:
        parameters, review, busy = self._parameterNode, self._review, self._busy()
        self.ui.applyButton.enabled = bool(parameters and parameters.inputVolume) and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.trainButton.enabled = not busy
        for name in ("previousButton", "nextButton", "addButton", "exportButton"):
            getattr(self.ui, name).enabled = review is not None
        for name in ("acceptButton", "rejectButton"):
            getattr(self.ui, name).enabled = bool(review and review.current is not None)
        self.ui.undoButton.enabled = bool(review and review.can_undo)
        if review is not None and parameters is not None \
                and review.show_rejected != parameters.showRejected:
            review.show_rejected = parameters.showRejected
            self.showReview()

    # ---------------------------------------------------------------- apply
    def onApply(self) -> None:
        parameters = self._parameterNode
        self.startPrediction(lambda device: self.logic.start_prediction(
            parameters.inputVolume, self._modelFolder(), parameters.modality,
            parameters.allowModalityMismatch, device=device))

    def onPredictionFinished(self, result) -> None:
        slicer.util.setSliceViewerLayers(background=result.input, fit=True)
        self._review = None
        with showingErrors(_("Cannot open your decisions on this case.")):
            self._review = self.logic.open_review(
                result, self._feedbackFolder(), reader=self._reader(),
                show_rejected=bool(self._parameterNode and self._parameterNode.showRejected))
        self.showReview(jump=True)

    # ---------------------------------------------------------------- review
    def showReview(self, jump: bool = False) -> None:
        """Show the table, hide the rows of hidden points, select the current row."""
        review, result, view = self._review, self._result, self.ui.candidatesTableView
        view.setMRMLTableNode(result.table if result is not None else None)
        if result is None or review is None:
            self.ui.resultSummaryLabel.text = _("Apply to see the candidates.")
            self.ui.caseLabel.text = ""
            self.updateButtons()
            return
        for row in range(len(review.items)):
            view.setRowHidden(row, not review.is_visible(row))
        if review.current is not None:
            view.selectRow(review.current)
        counts = review.counts()
        self.ui.resultSummaryLabel.text = _(
            "{kept} microbleeds kept of {n} candidates. Shown {shown}: accepted {accept}, "
            "rejected {reject}, added {add}, not yet decided {undecided}. Model: {model} "
            "{version}.").format(kept=result.kept_count, n=len(result.candidates),
                                 model=result.model_id, version=result.model_version, **counts)
        text = _("Case {case}.").format(case=review.case_id)
        if review.skipped_lines:
            text += " " + _("{n} damaged line(s) of the decisions file were skipped.").format(
                n=len(review.skipped_lines))
        self.ui.caseLabel.text = text
        self.updateButtons()
        if jump:
            self._jump()

    def _act(self, method: str, *args, jump: bool = True) -> None:
        """Forward a click or key to the review (``method`` of CMBReview), then redraw."""
        if self._review is None:
            return
        with showingErrors(_("The decision was not saved.")):
            getattr(self._review, method)(*args)
        self.showReview(jump=jump)

    def onAccept(self) -> None:
        self._act("accept")

    def onReject(self) -> None:
        self._act("reject")

    def onNext(self) -> None:
        self._act("next")

    def onPrevious(self) -> None:
        self._act("previous")

    def onUndo(self) -> None:
        self._act("undo", jump=False)

    def onRowClicked(self, index) -> None:
        self._act("select", index.row())

    def onAdd(self) -> None:
        """Place one point in a view; it becomes an added microbleed (see onPointPlaced)."""
        if self._review is None:
            return
        if self._placement is None or self._placement.GetScene() is None:
            self._placement = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLMarkupsFiducialNode", _("CMB point being placed"))
            self._placement.SetHideFromEditors(True)
            self.addObserver(self._placement, self._placement.PointPositionDefinedEvent,
                             self.onPointPlaced)
        markupsLogic = slicer.modules.markups.logic()
        markupsLogic.SetActiveList(self._placement)
        markupsLogic.StartPlaceMode(False)

    def onPointPlaced(self, caller, event) -> None:
        position = [0.0, 0.0, 0.0]
        caller.GetNthControlPointPositionWorld(caller.GetNumberOfControlPoints() - 1, position)
        qt.QTimer.singleShot(0, caller.RemoveAllControlPoints)  # not inside its own event
        self._act("add", position, None, True)

    def onExport(self) -> None:
        if self._review is None:
            return
        with showingErrors(_("Cannot export the accepted microbleeds.")):
            node = self._review.export_label_map()
            slicer.util.setSliceViewerLayers(label=node)
            self.ui.statusLabel.text = _("Exported to '{name}'.").format(name=node.GetName())

    # ---------------------------------------------------------------- training
    def onTrain(self) -> None:
        stage1 = self._parameterNode.alsoStage1
        self.startTraining(lambda: self.logic.start_training(
            self._feedbackFolder(), self._modelFolder(), stage1=stage1),
            _("Retraining from your decisions..."))


class CMBDetectorTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Developer mode: Reload and Test): the panel, then a review round trip
    on hand-made candidates (no network needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_module_loads()
        self.setUp()
        self.test_review_round_trip()

    def test_module_loads(self):
        self.assertTrue(hasattr(slicer.modules, "cmbdetector"))
        widget = slicer.util.getModuleWidget("CMBDetector")
        self.assertEqual(list(widget.ui.inputSelector.nodeTypes), ["vtkMRMLScalarVolumeNode"])
        parameters = CMBDetectorParameterNode(CMBDetectorLogic().getParameterNode())
        self.assertEqual(parameters.modality, "SWI")
        self.assertFalse(parameters.showRejected)

    def test_review_round_trip(self):
        import tempfile

        import numpy as np

        from CMBDetectorLib.outputs import CMBOutputs
        from LesionSuiteLib.hub_logic import skip_unless_installed
        from LesionSuiteLib.mrml_bridge import node_ijk_to_ras, node_to_volume, volume_to_node
        from lesion_core.volume import Volume

        # The review stores the case's image (NIfTI / NRRD writers the hub installs).
        skip_unless_installed(self, torch=False)

        affine = np.diag([1.0, 1.0, 1.5, 1.0])
        image = Volume(np.full((40, 40, 30), 400.0, np.float32), affine)
        labels = np.zeros(image.shape, np.int32)
        candidates = []
        for number, (voxel, kept) in enumerate((((10, 10, 10), True), ((25, 20, 15), True),
                                                ((30, 30, 20), False)), 1):
            labels[voxel[0] - 1:voxel[0] + 2, voxel[1] - 1:voxel[1] + 2, voxel[2]] = number
            candidates.append({"id": number, "centre_ras": list(image.voxel_to_ras(voxel)),
                               "diameter_mm": 3.0, "volume_mm3": 13.5,
                               "stage1_probability": 0.9, "stage2_probability": 0.8 if kept
                               else 0.1, "kept": kept, "dropped_by": None if kept else "stage2",
                               "reason": None, "location": "lobar", "region": "frontal"})
        node = volume_to_node(slicer.mrmlScene, image, "SelfTestSWI")
        outputs = CMBOutputs.from_json(
            {"model": {"name": "self-test", "version": "0"}, "modality": "SWI",
             "candidates": candidates}, image.with_array(labels * (labels < 3)),
            image.with_array(labels))
        logic = CMBDetectorLogic()
        result = logic.add_result_nodes(node, outputs)
        self.assertEqual(result.markups.GetNumberOfControlPoints(), 3)
        with tempfile.TemporaryDirectory() as folder:
            review = logic.open_review(result, folder, reader="self-test")
            self.assertEqual(review.visible_indices(), [0, 1])
            review.accept()
            review.reject()
            review.add(image.voxel_to_ras((20, 5, 5)))
            self.assertEqual(len(review.case.records()), 3)
            review.undo()
            self.assertEqual(review.counts()["add"], 0)
            exported = review.export_label_map()
            np.testing.assert_array_equal(node_ijk_to_ras(exported), node_ijk_to_ras(node))
            self.assertEqual(int(node_to_volume(exported).array.max()), 1)
            reopened = logic.open_review(result, folder)
            self.assertEqual([i.decision for i in reopened.items], ["accept", "reject", None])
        logic.remove_result_nodes(result)

"""CMB Detector: cerebral microbleeds (SHIVA-CMB candidates, a distilled student classifier
that rejects mimics, morphological clean-up) with the reader's review.

The logic is :class:`CMBDetectorLib.logic.CMBDetectorLogic` (no Qt, tested without the
application) and the review state machine :class:`CMBDetectorLib.review.CMBReview`; this
file holds the panel's own Qt parts only: the review buttons, keyboard shortcuts and point
placement, all forwarding to the review. What every task panel does alike (set-up, the
child processes a timer polls, settings, the self-test skeleton) is in
:mod:`LesionSuiteGUI.task_widget`.
"""

from typing import Annotated

import qt

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

from LesionSuiteGUI.errors import showingErrors
from LesionSuiteGUI.task_widget import TaskModule, TaskModuleTest, TaskWidget
from CMBDetectorLib.logic import CMBDetectorLogic

__all__ = ["CMBDetector", "CMBDetectorLogic", "CMBDetectorParameterNode", "CMBDetectorTest",
           "CMBDetectorWidget"]

#: Review keys while the module is shown (Z for undo, as in the Segment Editor).
SHORTCUTS = (("A", "onAccept"), ("R", "onReject"), ("N", "onNext"), ("P", "onPrevious"),
             ("Z", "onUndo"))


class CMBDetector(TaskModule):
    moduleTitle = _("CMB Detector")
    moduleHelp = _(
        "Cerebral microbleed (CMB) detection on SWI or T2*-GRE: a 3D U-Net proposes "
        "candidates (SHIVA-CMB), a student classifier distilled from a teacher rejects "
        "mimics, and clean-up rules remove the rest. Review each candidate: Accept (A), "
        "Reject (R), Next (N), Previous (P), Undo (Z), or add a microbleed the detector "
        "missed. Each decision is saved at once in the decisions folder; 'Retrain from my "
        "decisions' fine-tunes a copy of the model from them in the background. The "
        "shipped model is trained on synthetic images only and is not for clinical use.")
    moduleAcknowledgement = _(
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
    forceResult - report a result even on an image that does not look like a head scan
        (``predict --force``); the result is then marked out of distribution.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modality: Annotated[str, Choice(["SWI", "T2star"])] = "SWI"
    allowModalityMismatch: bool = False
    showRejected: bool = False
    alsoStage1: bool = False
    forceResult: bool = False


class CMBDetectorWidget(TaskWidget):
    """The panel; ``self._result`` is a CMBResultNodes, ``self._review`` a CMBReview."""

    logicClass = CMBDetectorLogic
    parameterNodeClass = CMBDetectorParameterNode
    taskName = _("CMB detection")
    buttonSlots = (("previousButton", "onPrevious"), ("nextButton", "onNext"),
                   ("acceptButton", "onAccept"), ("rejectButton", "onReject"),
                   ("addButton", "onAdd"), ("exportButton", "onExport"))
    rowView = "candidatesTableView"
    reviewError = _("Cannot open your decisions on this case.")
    actionError = _("The decision was not saved.")
    damagedLinesText = _("{n} damaged line(s) of the decisions file were skipped.")
    trainingMessage = _("Retraining from your decisions...")

    def __init__(self, parent=None) -> None:
        TaskWidget.__init__(self, parent)
        self._placement = None     # markups node that receives an added point
        self._shortcuts = []

    def cleanup(self) -> None:
        self._removeShortcuts()
        TaskWidget.cleanup(self)

    def enter(self) -> None:
        TaskWidget.enter(self)
        self._installShortcuts()

    def exit(self) -> None:
        self._removeShortcuts()
        TaskWidget.exit(self)

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

    def updatePanel(self, parameters, review, busy: bool) -> None:
        for name in ("previousButton", "nextButton", "addButton", "exportButton"):
            getattr(self.ui, name).enabled = review is not None
        for name in ("acceptButton", "rejectButton"):
            getattr(self.ui, name).enabled = bool(review and review.current is not None)
        if review is not None and parameters is not None \
                and review.show_rejected != parameters.showRejected:
            review.show_rejected = parameters.showRejected
            self.showReview()

    def predictionOptions(self, parameters) -> dict:
        return {"modality": parameters.modality,
                "allow_modality_mismatch": parameters.allowModalityMismatch,
                "force": parameters.forceResult}

    def reviewOptions(self) -> dict:
        return {"show_rejected": bool(self._parameterNode and self._parameterNode.showRejected)}

    def trainingOptions(self, parameters) -> dict:
        return {"stage1": parameters.alsoStage1}

    def showResult(self, result) -> None:
        slicer.util.setSliceViewerLayers(background=result.input, fit=True)

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
        self.ui.resultSummaryLabel.text = result.summary_text(_(
            "{kept} microbleeds kept of {n} candidates. Shown {shown}: accepted {accept}, "
            "rejected {reject}, added {add}, not yet decided {undecided}. Model: {model} "
            "{version}.").format(kept=result.kept_count, n=len(result.candidates),
                                 model=result.model_id, version=result.model_version, **counts))
        self.ui.caseLabel.text = self.caseText(review)
        self.updateButtons()
        if jump:
            self._jump()

    def onAccept(self) -> None:
        self._act("accept", jump=True)

    def onReject(self) -> None:
        self._act("reject", jump=True)

    def onNext(self) -> None:
        self._act("next", jump=True)

    def onPrevious(self) -> None:
        self._act("previous", jump=True)

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
        self._act("add", position, None, True, jump=True)

    def onExport(self) -> None:
        if self._review is None:
            return
        with showingErrors(_("Cannot export the accepted microbleeds.")):
            node = self._review.export_label_map()
            slicer.util.setSliceViewerLayers(label=node)
            self.ui.statusLabel.text = _("Exported to '{name}'.").format(name=node.GetName())


class CMBDetectorTest(TaskModuleTest):
    """Runs in Slicer (Developer mode: Reload and Test): the panel, then a review round trip
    on hand-made candidates (no network needed)."""

    def checkParameterDefaults(self, parameters):
        self.assertEqual(parameters.modality, "SWI")
        self.assertFalse(parameters.showRejected)
        self.assertFalse(parameters.forceResult)  # refused, not marked, unless asked

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

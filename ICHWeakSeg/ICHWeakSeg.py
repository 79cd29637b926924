"""ICH WeakSeg: intracranial haemorrhage on non-contrast CT, learned from image-level labels,
with its class activation map and the reader's slice labels.

The logic is :class:`ICHWeakSegLib.logic.ICHWeakSegLogic` (no Qt, tested without the
application) and the slice review :class:`ICHWeakSegLib.review.ICHSliceReview`; this file
holds the panel's own Qt parts only: the CAM display, the slice labels and the reader's
mask, all forwarding to the logic and the review. What every task panel does alike
(set-up, the child processes a timer polls, settings, the self-test skeleton) is in
:mod:`LesionSuiteGUI.task_widget`.
"""

from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper

from LesionSuiteGUI.errors import showingErrors
from LesionSuiteGUI.task_widget import TaskModule, TaskModuleTest, TaskWidget
from ICHWeakSegLib.logic import DEFAULT_CAM_OPACITY, ICHWeakSegLogic
from lesion_core.labels import ICH_SUBTYPE_ORDER

__all__ = ["ICHWeakSeg", "ICHWeakSegLogic", "ICHWeakSegParameterNode", "ICHWeakSegTest",
           "ICHWeakSegWidget"]

#: Subtype key -> its check box in the .ui (named after the key).
SUBTYPE_CHECKBOXES = tuple((key, f"{key}CheckBox") for key in ICH_SUBTYPE_ORDER)


class ICHWeakSeg(TaskModule):
    moduleTitle = _("ICH WeakSeg")
    moduleHelp = _(
        "Intracranial haemorrhage (ICH) segmentation on non-contrast head CT, learned "
        "from image-level labels only: a slice classifier that reads neighbouring slices "
        "gives class activation maps, refined into pseudo-masks that train a "
        "segmentation network. Apply gives the segmentation (one segment per subtype), "
        "the activation map as an overlay and a table with one row per slice. Click a "
        "row to go to the slice; mark it Haemorrhage (with subtypes) or No haemorrhage: "
        "each label is saved at once in the labels folder, and 'Retrain classifier from "
        "my labels' fine-tunes a copy of the model from them in the background. Edit the "
        "segmentation in the Segment Editor and save it as your reader label; a re-run "
        "never overwrites it. The shipped model is trained on synthetic images only and "
        "is not for clinical use.")
    moduleAcknowledgement = _(
        "Weakly supervised ICH segmentation after Ramananda and Sundaresan (Medical "
        "Physics 2025). Part of the LesionSuite extension; see the LesionSuite module "
        "for dependencies, device and installed models.")


@parameterNodeWrapper
class ICHWeakSegParameterNode:
    """
    inputVolume - the non-contrast head CT (Hounsfield units).
    camOpacity - opacity of the activation map over the CT (0-1).
    camThreshold - activation below this (0-1) is not drawn.
    forceResult - report a result even on an image that does not look like a head scan
        (``predict --force``); the result is then marked out of distribution.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    camOpacity: Annotated[float, WithinRange(0.0, 1.0)] = DEFAULT_CAM_OPACITY
    camThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.4
    forceResult: bool = False


class ICHWeakSegWidget(TaskWidget):
    """The panel; ``self._result`` is an ICHResultNodes, ``self._review`` an
    ICHSliceReview."""

    logicClass = ICHWeakSegLogic
    parameterNodeClass = ICHWeakSegParameterNode
    taskName = _("ICH segmentation")
    buttonSlots = (("markHaemorrhageButton", "onMarkHaemorrhage"),
                   ("markNoHaemorrhageButton", "onMarkNoHaemorrhage"),
                   ("saveMaskButton", "onSaveMask"))
    rowView = "slicesTableView"
    reviewError = _("Cannot open your labels of this case.")
    actionError = _("The label was not saved.")
    damagedLinesText = _("{n} damaged line(s) of the labels file were skipped.")
    trainingMessage = _("Retraining the classifier from your labels...")

    def __init__(self, parent=None) -> None:
        TaskWidget.__init__(self, parent)
        self._camShown = None   # (opacity, threshold) last applied to the result's CAM

    def updatePanel(self, parameters, review, busy: bool) -> None:
        current = bool(review and review.current is not None)
        self.ui.markHaemorrhageButton.enabled = current
        self.ui.markNoHaemorrhageButton.enabled = current
        self.ui.saveMaskButton.enabled = review is not None
        result = self._result
        if result is None or parameters is None or result.cam.GetScene() is None:
            return
        wanted = (parameters.camOpacity, parameters.camThreshold)
        if wanted != self._camShown:  # only on a change: the reader may set other layers
            self.logic.show_cam(result, wanted[0])
            self.logic.set_cam_threshold(result, wanted[1])
            self._camShown = wanted

    # ---------------------------------------------------------------- apply
    def onApply(self) -> None:
        review = self._review
        if review is not None and review.has_unsaved_edits() and slicer.util.confirmYesNoDisplay(
                _("You edited the segmentation. Save it as your reader label before the "
                  "re-run? (A re-run replaces the segmentation shown; a saved one is kept "
                  "and shown again.)")):
            self.onSaveMask()
        TaskWidget.onApply(self)

    def predictionOptions(self, parameters) -> dict:
        return {"feedback_root": self._feedbackFolder(), "force": parameters.forceResult}

    def showResult(self, result) -> None:
        self._camShown = None
        # The reader may have left the module while the prediction ran (exit() let go of
        # the panel's parameter node): the threshold goes into the scene's node, which the
        # panel takes up again on enter().
        parameters = self._parameterNode or self.parameterNodeClass(
            self.logic.getParameterNode())
        parameters.camThreshold = self.logic.cam_threshold(result)
        self.updateButtons()  # shows the CAM over the CT
        slicer.util.resetSliceViews()

    # ---------------------------------------------------------------- review
    def showReview(self, jump: bool = False) -> None:
        """Show the table, select the current row, tick the current label's subtypes."""
        review, result = self._review, self._result
        self.ui.slicesTableView.setMRMLTableNode(result.table if result is not None else None)
        if result is None or review is None:
            self.ui.resultSummaryLabel.text = _("Apply to see the result.")
            self.ui.caseLabel.text = ""
            self.updateButtons()
            return
        summary, counts = result.summary, review.counts()
        self.ui.resultSummaryLabel.text = result.summary_text(_(
            "Haemorrhage {present} (scan probability {p:.2f}); subtypes: {subtypes}; "
            "{ml:.2f} mL. {predicted} of {slices} slices predicted positive. Your labels: "
            "{labelled} slices ({haemorrhage} haemorrhage, {no_haemorrhage} none, "
            "{disagree} differ from the model). Model: {model} {version}.").format(
            present=_("present") if summary.get("present") else _("absent"),
            p=float(summary.get("scan_probability", 0.0)),
            subtypes=", ".join(summary.get("subtypes") or []) or "-",
            ml=float(summary.get("volume_ml", 0.0)), model=result.model_id,
            version=result.model_version, **counts))
        notes = []
        if result.reader_mask_version is not None:
            notes.append(_("Showing your saved mask (version {n}); the model's result is "
                           "kept hidden beside it.").format(n=result.reader_mask_version))
        self.ui.caseLabel.text = self.caseText(review, *notes)
        if review.current is not None:
            self.ui.slicesTableView.selectRow(review.current)
        label = review.current_label
        for key, name in SUBTYPE_CHECKBOXES:
            getattr(self.ui, name).checked = bool(label and key in label.subtypes)
        self.updateButtons()
        if jump:
            self._jump()

    def onMarkHaemorrhage(self) -> None:
        self._act("mark_haemorrhage", [key for key, name in SUBTYPE_CHECKBOXES
                                       if getattr(self.ui, name).checked])

    def onMarkNoHaemorrhage(self) -> None:
        self._act("mark_no_haemorrhage")

    def onSaveMask(self) -> None:
        if self._review is None:
            return
        with showingErrors(_("Your segmentation was not saved.")):
            record = self._review.save_reader_mask()
            self.ui.statusLabel.text = _("Saved as your reader mask, version {n}.").format(
                n=record.payload["version"])
        self.showReview()


class ICHWeakSegTest(TaskModuleTest):
    """Runs in Slicer (Developer mode: Reload and Test): the panel, then a review round trip
    on hand-made outputs (no network needed)."""

    def checkParameterDefaults(self, parameters):
        self.assertAlmostEqual(parameters.camOpacity, DEFAULT_CAM_OPACITY)
        self.assertFalse(parameters.forceResult)  # refused, not marked, unless asked

    def test_review_round_trip(self):
        import tempfile

        import numpy as np

        from ICHWeakSegLib.outputs import ICHOutputs
        from LesionSuiteLib.hub_logic import skip_unless_installed
        from LesionSuiteLib.mrml_bridge import node_ijk_to_ras, volume_to_node
        from lesion_core.ich.reader_labels import latest_reader_mask
        from lesion_core.volume import Volume

        # The review stores the case's image (NIfTI / NRRD writers the hub installs).
        skip_unless_installed(self, torch=False)

        ct = Volume(np.full((32, 32, 8), 35.0, np.float32), np.diag([0.9, 0.9, 5.0, 1.0]))
        ct.array[:2] = -1000.0
        labels = np.zeros(ct.shape, np.uint8)
        labels[10:14, 10:14, 3:5] = 4
        slices = [{"slice": k, "probability": 0.9 if k in (3, 4) else 0.1,
                   "present": k in (3, 4), "intraparenchymal": 0.1, "intraventricular": 0.1,
                   "subarachnoid": 0.1, "subdural": 0.8 if k in (3, 4) else 0.1,
                   "epidural": 0.1, "area_mm2": 12.96 if k in (3, 4) else 0.0}
                  for k in range(8)]
        summary = {"model": {"name": "self-test", "version": "0"}, "slice_axis": 2,
                   "present": True, "scan_probability": 0.9, "subtypes": ["subdural"],
                   "volume_ml": 0.13, "thresholds": {"cam": 0.3}}
        node = volume_to_node(slicer.mrmlScene, ct, "SelfTestCT")
        outputs = ICHOutputs.from_parts(summary, ct.with_array(labels),
                                        ct.with_array((labels > 0).astype(np.float32)), slices)
        logic = ICHWeakSegLogic()
        result = logic.add_result_nodes(node, outputs)
        np.testing.assert_array_equal(node_ijk_to_ras(result.cam), node_ijk_to_ras(node))
        self.assertEqual(result.segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertEqual(result.table.GetNumberOfRows(), 8)
        with tempfile.TemporaryDirectory() as folder:
            review = logic.open_review(result, folder, reader="self-test")
            review.select(3)
            review.mark_haemorrhage(["subdural"])
            review.mark_no_haemorrhage(row=0)
            review.undo()
            self.assertEqual(sorted(review.labels), [3])
            self.assertEqual(review.save_reader_mask().payload["version"], 1)
            self.assertEqual(latest_reader_mask(review.case).meta["version"], 1)
            reopened = logic.open_review(result, folder)
            self.assertEqual(reopened.labels[3].subtypes, ("subdural",))
        logic.remove_result_nodes(result)

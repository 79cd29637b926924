"""WMH DualTasker: white matter hyperintensities and ARWMC ratings (WMH-DualTasker, deep-T1-WMH).

The logic is :class:`WMHDualTaskerLib.logic.WMHDualTaskerLogic` (no Qt, tested without the
application) and the reader's ratings :class:`WMHDualTaskerLib.review.RatingReview`; this
file holds the panel's own Qt parts only (the ratings table). What every task panel does
alike (set-up, the child processes a timer polls, settings, the review, the self-test
skeleton) is in :mod:`LesionSuiteGUI.task_widget`.
"""

from pathlib import Path
from typing import Annotated

import qt

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from LesionSuiteGUI.errors import showingErrors
from LesionSuiteGUI.task_widget import TaskModule, TaskModuleTest, TaskWidget
from WMHDualTaskerLib.logic import WMHDualTaskerLogic

__all__ = ["WMHDualTasker", "WMHDualTaskerLogic", "WMHDualTaskerParameterNode",
           "WMHDualTaskerTest", "WMHDualTaskerWidget"]

RATING_COLUMNS = (_("Region"), _("Side"), _("Predicted"), _("Level"), _("WMH (mL)"),
                  _("Your rating"))
READER_COLUMN_INDEX = len(RATING_COLUMNS) - 1


class WMHDualTasker(TaskModule):
    moduleTitle = _("WMH DualTasker")
    moduleHelp = _(
        "White matter hyperintensity (WMH) segmentation with the ARWMC visual rating "
        "(0-3 in each of five regions per side, total 0-30), from a FLAIR volume "
        "(WMH-DualTasker, learned from ratings only), or WMH segmentation from a 3D T1 "
        "alone (T1 mode, deep-T1-WMH). Apply gives the WMH segmentation, the activation "
        "map, the ARWMC table and the region atlas. Type your own ratings in the table: "
        "each is saved at once in the ratings folder, and 'Train from my ratings' "
        "fine-tunes a copy of the model from them in the background. The shipped models "
        "are trained on synthetic images only and are not for clinical use.")
    moduleAcknowledgement = _(
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
    forceResult - report a result even on an image that does not look like a head scan
        (``predict --force``); the result is then marked out of distribution.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modality: Annotated[str, Choice(["FLAIR", "T1"])] = "FLAIR"
    forceResult: bool = False
    showRegions: bool = False
    trainingSteps: Annotated[int, WithinRange(0, 100000)] = 0


#
# Widget
#


class WMHDualTaskerWidget(TaskWidget):
    """The panel; ``self._result`` is a WMHResultNodes, ``self._review`` a RatingReview."""

    logicClass = WMHDualTaskerLogic
    parameterNodeClass = WMHDualTaskerParameterNode
    taskName = _("WMH analysis")
    reviewError = _("Cannot open your ratings of this case.")
    actionError = _("The rating was not saved.")
    damagedLinesText = _("{n} damaged line(s) of the ratings file were skipped.")
    trainingMessage = _("Training from your ratings...")

    def setupPanel(self) -> None:
        table = self.ui.ratingsTableWidget
        table.connect("itemChanged(QTableWidgetItem*)", self.onRatingEdited)
        table.setColumnCount(len(RATING_COLUMNS))
        table.setHorizontalHeaderLabels(list(RATING_COLUMNS))
        table.horizontalHeader().setStretchLastSection(True)

    # ---------------------------------------------------------------- state
    def canTrain(self, parameters) -> bool:
        # Ratings fine-tune the FLAIR DualTasker; the T1 mode learns from labels instead.
        return bool(parameters) and parameters.modality == "FLAIR"

    def updatePanel(self, parameters, review, busy: bool) -> None:
        if self._result is not None and parameters is not None:
            self.logic.set_regions_visible(self._result, parameters.showRegions)

    def predictionOptions(self, parameters) -> dict:
        return {"t1": parameters.modality == "T1", "force": parameters.forceResult}

    def trainingOptions(self, parameters) -> dict:
        return {"steps": parameters.trainingSteps or None}

    def showResult(self, result) -> None:
        slicer.util.setSliceViewerLayers(background=result.input,
                                         foreground=result.activation,
                                         foregroundOpacity=0.4, fit=True)

    # ---------------------------------------------------------------- review
    def showReview(self, jump: bool = False) -> None:
        """Fill the ratings table from the review (a rating has no place to jump to)."""
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
            if result.agreement is not None:
                total += _(", segmentation agrees with it in {percent:.0f}% of "
                           "region-sides").format(percent=100.0 * result.agreement)
            self.ui.resultSummaryLabel.text = result.summary_text(_(
                "ARWMC total: {total}. WMH volume: {ml:.2f} mL. Model: {model} {version}."
            ).format(total=total, ml=float(result.summary.get("lesion_ml", 0.0)),
                     model=result.model_id, version=result.model_version))
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
            self.ui.caseLabel.text = self.caseText(review)
        finally:
            table.blockSignals(wasBlocked)
            self.updateButtons()

    def onRatingEdited(self, item) -> None:
        if self._review is None or item.column() != READER_COLUMN_INDEX:
            return
        target = self._review.targets[item.row()]
        with showingErrors(self.actionError):
            self._review.set_rating_text(target, item.text())
        # Always redraw from the store, so a refused entry goes back to the saved rating;
        # later, because the table must not be rebuilt inside its own itemChanged signal.
        qt.QTimer.singleShot(0, self.showReview)

    def onUndo(self) -> None:
        self._act("undo", message=_("Cannot undo."))


def _format(value, decimals: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:.{decimals}f}" if decimals else str(int(value))


#
# Test
#


class WMHDualTaskerTest(TaskModuleTest):
    """Runs in Slicer (Developer mode: Reload and Test): a small synthetic FLAIR, a tiny
    untrained model, known atlases (no registration), and a rating round trip."""

    def checkParameterDefaults(self, parameters):
        self.assertEqual(parameters.modality, "FLAIR")
        self.assertFalse(parameters.showRegions)
        self.assertFalse(parameters.forceResult)  # refused, not marked, unless asked

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

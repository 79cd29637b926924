"""Logic of the ICH WeakSeg module: MRML nodes in, MRML nodes out (no Qt, no app).

The prediction always runs the command line, ``lesion-suite ich predict``, in a child
process (:meth:`ICHWeakSegLogic.start_prediction`, polled by the GUI;
:meth:`ICHWeakSegLogic.run` waits for it, for scripts and the Python console). Its
outputs (:mod:`.outputs`) become nodes in the input CT's scene:

- ``<name> ICH``: a segmentation with one segment per subtype present (name, colour and
  SNOMED CT terminology of :data:`lesion_core.labels.ICH_SUBTYPES`), its reference
  geometry the CT's, editable in the Segment Editor;
- ``<name> ICH CAM``: the class activation map (float32, 0..1) as a scalar volume with a
  colour map, values below the CAM threshold not drawn, shown as the slice views'
  foreground with an opacity (:meth:`ICHWeakSegLogic.show_cam`);
- ``<name> ICH slices``: a table, one row per axial slice ``k`` (columns
  :data:`~.outputs.TABLE_COLUMNS`: probability, present, the five subtype probabilities,
  area in mm² and the reader's label); :meth:`ICHResultNodes.slice_position` is where
  the slice views go for a row.

A reader's stored mask is never overwritten: when the feedback store holds one for this
CT (:func:`lesion_core.ich.reader_labels.latest_reader_mask`), it is loaded as the
segmentation ``<name> ICH (reader vN)`` and the model's own result is kept beside it as
``<name> ICH (model)``, hidden.

Geometry: the input is written in its *local* coordinates (``world=False``) and every
output node is put under the input's parent transform, so outputs lie on the CT exactly
and move with it. Nothing is added before the outputs were read, and if adding fails
half-way the nodes added so far are removed.

What every task does alike (the child process, all-or-none nodes, saving, the review,
retraining, the DICOM SEG and SR export of a result with ``export_dicom``: the
segmentation shown, as the reader left it) is
:class:`LesionSuiteLib.task_logic.TaskLogic`'s; this module keeps the command's options,
the node building with the reader's stored mask, and the CAM display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_core.errors import InvalidImageError
from lesion_core.labels import ICH_SUBTYPES
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib import predictions
from LesionSuiteLib.child_process import ChildProcess
from LesionSuiteLib.predictions import SummaryFacts
from LesionSuiteLib.later import Later
from LesionSuiteLib.retraining import Retraining
from LesionSuiteLib.task_logic import TaskLogic

from .outputs import (ICH_LABELS, READER_MASK_ATTRIBUTE, TABLE_COLUMNS, ICHOutputs,
                      slice_point, table_row)

#: CAM values (0..1) below this are not drawn unless the model's summary names its own.
DEFAULT_CAM_THRESHOLD = 0.4
#: Opacity (0..1) of the CAM over the CT in the slice views.
DEFAULT_CAM_OPACITY = 0.4

#: "Retrain classifier from my labels": ``lesion-suite ich train`` reads the store only
#: through :func:`lesion_core.ich.reader_labels.weak_scans_from_store` (each labelled
#: slice: any haemorrhage and, where marked, its subtypes) and fine-tunes the slice
#: classifier; the pseudo-masks and the segmenter of the model it starts from are kept.
RETRAINING = Retraining(
    task="ich", has_feedback=Later("lesion_core.ich.reader_labels", "labelled_cases"),
    no_feedback=("the feedback folder holds no ICH slice label yet",
                 "Mark slices haemorrhage or no haemorrhage in at least one case, then "
                 "retrain"))
#: Where the reader's slice labels are kept unless the user picks another folder.
default_feedback_root = RETRAINING.default_feedback_root


@dataclass
class ICHResultNodes(SummaryFacts):
    """The nodes of one run and what produced them.

    Attributes:
        input: the CT volume node that was analysed.
        segmentation: the segmentation to review and edit: the reader's stored mask when
            there is one, else the model's.
        cam: ``vtkMRMLScalarVolumeNode``, the CAM (0..1), colour mapped.
        table: ``vtkMRMLTableNode``, one row per axial slice (locked: labels go through
            the review).
        model_segmentation: the model's segmentation when a reader mask is shown instead,
            else None (then ``segmentation`` is the model's).
        labels: the label map of ``segmentation`` as loaded (input's local grid).
        slices: the rows of ``ich_slices.csv`` (see :mod:`.outputs`).
        summary: ``ich_summary.json`` with ``model``, ``model_version``, ``modality``.
        reader_mask_version: the stored mask version shown, or None.
    """

    input: Any
    segmentation: Any
    cam: Any
    table: Any
    model_segmentation: Any = None
    labels: Volume | None = None
    slices: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    reader_mask_version: int | None = None

    @property
    def nodes(self) -> list:
        """The output nodes (not the input)."""
        return [n for n in (self.segmentation, self.model_segmentation, self.cam, self.table)
                if n is not None]

    @property
    def slice_axis(self) -> int:
        """The CT's axial array axis (0, 1 or 2) the table's ``slice`` counts along."""
        return int(self.summary.get("slice_axis", 2))

    def slice_position(self, k: int) -> tuple[float, float, float]:
        """World RAS (mm) to jump the slice views to for axial slice ``k``: the centroid of
        the haemorrhage on that slice, else the slice's centre (parent transforms
        applied)."""
        world = Volume(self.labels.array, mb.node_ijk_to_ras(self.input, world=True))
        return tuple(float(c) for c in slice_point(world, self.slice_axis, k,
                                                   self.labels.array))


class ICHWeakSegLogic(TaskLogic):
    """ICH segmentation with CAM, the reader's slice labels and retraining from them."""

    task = "ich"
    input_kind = "CT"
    outputs_type = ICHOutputs
    result_files = {"segmentation": "_ich.seg.nrrd", "cam": "_ich_cam.nrrd",
                    "table": "_ich_slices.tsv"}
    open_review_of = Later("ICHWeakSegLib.review", "ICHSliceReview.for_result")
    retraining = RETRAINING
    #: The DICOM export (``export_dicom``) writes one segment per subtype of the
    #: segmentation shown (the reader's mask when there is one), as the reader left it;
    #: a perihaematomal oedema segment the reader drew is exported too.
    segment_labels = ICH_SUBTYPES

    # ------------------------------------------------------------- prediction
    # ``ich predict`` takes only the options every task has: --model, --device, --force
    # (TaskLogic.prediction_options).
    def start_prediction(self, input_volume_node, model_folder=None,
                         device: str | None = None, feedback_root: str | Path | None = None,
                         force: bool = False):
        """Write the CT to a temporary folder and start ``ich predict`` in a child process;
        poll the returned job, then call :meth:`finish_prediction`. ``feedback_root``:
        where a stored reader mask of this CT is looked for (default: the user's);
        ``force``: report a result even when the input does not look like a head CT (the
        command refuses it otherwise); the result is then marked out of distribution."""
        return self.start_in_child(input_volume_node, lambda image, out, error: (
            self.prediction_command(image, out, model_folder, device, error, force=force)),
            feedback_root=feedback_root)

    def run(self, input_volume_node, model_folder=None, device: str | None = None,
            feedback_root: str | Path | None = None, progress=None,
            timeout: float | None = None, force: bool = False) -> ICHResultNodes:
        """:meth:`start_prediction`, wait, :meth:`finish_prediction` (blocks; scripts).
        ``progress`` (a :class:`lesion_core.progress.Progress`) follows and cancels it;
        ``timeout``: seconds before the child is cancelled (None: no limit); ``force``: a
        result even on an image that does not look like a head CT, marked out of
        distribution."""
        return self.wait_for(self.start_prediction(input_volume_node, model_folder, device,
                                                   feedback_root, force=force),
                             progress, timeout)

    def load_results(self, input_volume_node, folder: str | Path,
                     feedback_root: str | Path | None = None) -> ICHResultNodes:
        """Add the nodes of an ``ich predict`` output folder made earlier from this CT
        (its maps must lie on the volume's grid); a reader mask of this CT stored in
        ``feedback_root`` (default: the user's) is shown instead of the model's."""
        return super().load_results(input_volume_node, folder, feedback_root=feedback_root)

    def result_nodes(self, input_volume_node, outputs: ICHOutputs,
                     feedback_root: str | Path | None = None) -> ICHResultNodes:
        """The result nodes with the reader's mask of this CT stored in ``feedback_root``
        (default: the user's), if any, shown instead of the model's."""
        return self.add_result_nodes(input_volume_node, outputs,
                                     self.stored_reader_mask(input_volume_node, feedback_root))

    @staticmethod
    def stored_reader_mask(input_volume_node, feedback_root: str | Path | None = None
                           ) -> Volume | None:
        """The reader's latest stored mask of this CT on its local grid (``meta["version"]``
        set), or None when there is none; nothing is written."""
        from lesion_core.ich.reader_labels import latest_reader_mask
        from LesionSuiteLib.review_cases import open_volume_case

        opened = open_volume_case(feedback_root or default_feedback_root(), input_volume_node)
        mask = latest_reader_mask(opened.case)
        if mask is None:
            return None
        on_grid = predictions.put_on_grid(mask, opened.image, mask.source)
        on_grid.meta["version"] = mask.meta["version"]
        return on_grid

    # ------------------------------------------------------------------ nodes
    def add_result_nodes(self, input_volume_node, outputs: ICHOutputs,
                         reader_mask: Volume | None = None) -> ICHResultNodes:
        """Create the segmentation(s), CAM and table nodes (all or none); with a
        ``reader_mask`` (on the input's grid) it is the segmentation shown and the model's
        is kept beside it, hidden."""
        scene = input_volume_node.GetScene()
        name = input_volume_node.GetName()
        version = None if reader_mask is None else reader_mask.meta.get("version")
        with self.adding_results(input_volume_node, outputs) as created:
            model = mb.labelmap_to_segmentation(
                scene, outputs.labels, ICH_LABELS, reference_node=input_volume_node,
                name=f"{name} ICH" if reader_mask is None else f"{name} ICH (model)")
            created.append(model)
            shown, labels = model, outputs.labels
            if reader_mask is not None:
                model.GetDisplayNode().SetVisibility(False)
                shown = mb.labelmap_to_segmentation(
                    scene, reader_mask, ICH_LABELS, reference_node=input_volume_node,
                    name=f"{name} ICH (reader v{version})")
                shown.SetAttribute(READER_MASK_ATTRIBUTE, str(version))
                created.append(shown)
                labels = outputs.labels.with_array(reader_mask.array)
            cam = mb.probability_to_node(scene, outputs.cam, name=f"{name} ICH CAM",
                                         hide_below=outputs.cam_threshold(DEFAULT_CAM_THRESHOLD))
            created.append(cam)
            table = mb.rows_to_table(scene, [table_row(r, None) for r in outputs.slices],
                                     name=f"{name} ICH slices", columns=TABLE_COLUMNS)
            created.append(table)
            table.SetLocked(True)  # labels go through the review, which saves them
        return ICHResultNodes(input_volume_node, shown, cam, table,
                              model if reader_mask is not None else None, labels,
                              list(outputs.slices), dict(outputs.summary), version)

    def result_file_names(self, result: ICHResultNodes) -> dict[str, str]:
        """The segmentation shown, the CAM and the table; the model's segmentation too when
        a reader mask is shown."""
        names = super().result_file_names(result)
        if result.model_segmentation is not None:
            names["model_segmentation"] = "_ich_model.seg.nrrd"
        return names

    @staticmethod
    def slice_position(result: ICHResultNodes, k: int) -> tuple[float, float, float]:
        """World RAS (mm) of axial slice ``k`` (see :meth:`ICHResultNodes.slice_position`);
        ``JumpSlicesToLocation`` at this point shows the slice in the axial view."""
        return result.slice_position(k)

    @staticmethod
    def show_cam(result: ICHResultNodes, opacity: float = DEFAULT_CAM_OPACITY) -> None:
        """Show the CT in the background and the CAM in the foreground of every slice
        view of the scene, the CAM at ``opacity`` (0 hidden .. 1 opaque)."""
        if not 0.0 <= float(opacity) <= 1.0:
            raise InvalidImageError(f"opacity {opacity} is not in 0..1", "Pass 0 to 1")
        scene = result.input.GetScene()
        for node in scene.GetNodesByClass("vtkMRMLSliceCompositeNode"):
            node.SetBackgroundVolumeID(result.input.GetID())
            node.SetForegroundVolumeID(result.cam.GetID())
            node.SetForegroundOpacity(float(opacity))

    @staticmethod
    def set_cam_threshold(result: ICHResultNodes, threshold: float) -> None:
        """Draw only CAM values at or above ``threshold`` (0..1; 0 draws all)."""
        if not 0.0 <= float(threshold) <= 1.0:
            raise InvalidImageError(f"CAM threshold {threshold} is not in 0..1", "Pass 0 to 1")
        display = result.cam.GetDisplayNode()
        display.SetThreshold(float(threshold), 1.0e30)
        display.SetApplyThreshold(float(threshold) > 0.0)

    @staticmethod
    def cam_threshold(result: ICHResultNodes) -> float:
        """The CAM threshold drawn now (0 when none is applied)."""
        display = result.cam.GetDisplayNode()
        return float(display.GetLowerThreshold()) if display.GetApplyThreshold() else 0.0

    # ---------------------------------------------------------------- training
    @classmethod
    def training_command(cls, feedback_root: str | Path, init_model: str | Path,
                         out_folder: str | Path, python: str | None = None,
                         device: str | None = None) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines, ich, train, --feedback, STORE,
        --init, MODEL, --out, NEW(, --device, D)]`` (see :meth:`.Retraining.command`)."""
        return cls.retraining.command(feedback_root, init_model, out_folder, None, device,
                                      python)

    def start_training(self, feedback_root: str | Path, init_model: str | Path | None = None,
                       out_folder: str | Path | None = None, device: str | None = None
                       ) -> tuple[ChildProcess, Path]:
        """Start that command in a child process (default ``init_model``: the shipped
        model); returns the child and the folder the new model will be written to (see
        :meth:`.Retraining.start`)."""
        return self.retraining.start(feedback_root, init_model, out_folder, None, device)


__all__ = ["DEFAULT_CAM_OPACITY", "DEFAULT_CAM_THRESHOLD", "ICHResultNodes",
           "ICHWeakSegLogic", "default_feedback_root"]

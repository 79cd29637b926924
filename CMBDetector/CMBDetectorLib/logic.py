"""Logic of the CMB Detector module: MRML nodes in, MRML nodes out (no Qt, no app).

The prediction always runs the command line, ``lesion-suite cmb predict``, in a child
process (:meth:`CMBDetectorLogic.start_prediction`, polled by the GUI;
:meth:`CMBDetectorLogic.run` waits for it, for scripts and the Python console). Its
outputs (:mod:`.outputs`) become three nodes in the input's scene:

- ``<name> CMB candidates``: a ``vtkMRMLMarkupsFiducialNode``, one locked control point
  per stage-1 candidate at its centre (RAS mm), label = candidate id, description
  ``"p1=0.93 p2=0.88 lobar/frontal"``; candidates dropped by stage 2 or the clean-up are
  hidden (the review's filter shows the stage-2 ones);
- ``<name> CMB table``: a ``vtkMRMLTableNode`` in step with it (row ``n`` = point ``n``),
  columns :data:`~.outputs.TABLE_COLUMNS`;
- ``<name> CMB``: a segmentation with one "Cerebral microbleed" segment, the voxels of the
  kept microbleeds, its reference geometry the input volume's.

Geometry: the input is written in its *local* coordinates (``world=False``) and every
output node is put under the input's parent transform, so the points and the segment lie
on the input exactly and move with it. Nothing is added before the outputs were read, and
if adding fails half-way the nodes added so far are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_core.errors import InvalidImageError
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib import predictions
from LesionSuiteLib.child_process import ChildProcess, child_env, lesion_core_command
from LesionSuiteLib.hub_logic import _HeadlessLogicBase
from LesionSuiteLib.predictions import ERROR_FILE, OUT_DIR, SummaryFacts

from . import training
from .outputs import TABLE_COLUMNS, CMBOutputs, describe, table_row
from .training import default_feedback_root

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # slicer-core wheel: real MRML, no application
    _LogicBase = None

#: Node attributes naming what made a result node, and the input it belongs to.
RESULT_ATTRIBUTE = "LesionSuite.CMB.Result"
INPUT_ATTRIBUTE = "LesionSuite.CMB.InputNodeID"
MODALITIES = ("SWI", "T2star")
#: Point colours (RGB 0..1): microbleeds (selected) in the CMB label colour, others grey.
CMB_COLOUR = (0.85, 0.10, 0.55)
OTHER_COLOUR = (0.6, 0.6, 0.6)


class CMBBackgroundPrediction(predictions.BackgroundPrediction):
    """One running ``lesion-suite cmb predict``; :meth:`outputs` gives
    :class:`~.outputs.CMBOutputs` on the input grid."""

    task = "CMB"

    def read_outputs(self) -> CMBOutputs:
        return CMBOutputs.read(self.out_dir, self.grid)


@dataclass
class CMBResultNodes(SummaryFacts):
    """The nodes of one run and what produced them.

    Attributes:
        input: the SWI / T2*-GRE volume node that was analysed.
        markups: ``vtkMRMLMarkupsFiducialNode``, one point per candidate.
        table: ``vtkMRMLTableNode``, one row per point (locked: edit through the review).
        segmentation: ``vtkMRMLSegmentationNode`` with the kept microbleeds.
        candidates: the candidates JSON entries, in point order.
        candidate_labels: label map of every candidate (value = id) on the input grid.
        summary: model, model_version, modality, count, thresholds (see CMBOutputs).
    """

    input: Any
    markups: Any
    table: Any
    segmentation: Any
    candidates: list = field(default_factory=list)
    candidate_labels: Volume | None = None
    summary: dict = field(default_factory=dict)

    @property
    def nodes(self) -> list:
        """The output nodes (not the input)."""
        return [self.markups, self.table, self.segmentation]

    @property
    def kept_count(self) -> int:
        return sum(1 for c in self.candidates if c.get("kept"))


class CMBDetectorLogic(_LogicBase or _HeadlessLogicBase):
    """CMB candidates, their review and retraining from the reader's decisions."""

    # ------------------------------------------------------------------ input
    @staticmethod
    def read_input(input_volume_node) -> Volume:
        """The node's voxels and local IJK-to-RAS geometry (the command checks the image)."""
        if input_volume_node is None or not input_volume_node.IsA("vtkMRMLScalarVolumeNode") \
                or input_volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InvalidImageError("no SWI or T2*-GRE volume is selected", "Select a scalar "
                                    "volume (not a label map or segmentation) as input")
        return mb.node_to_volume(input_volume_node, world=False)

    # ------------------------------------------------------------- prediction
    @staticmethod
    def prediction_command(image_path: Path, out_dir: Path, model_folder=None,
                           modality: str = "SWI", allow_modality_mismatch: bool = False,
                           device: str | None = None, error_file: Path | None = None,
                           python: str | None = None) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines(, --error-json, FILE), cmb, predict,
        IMAGE, --out, DIR, --sequence, M(, --model, F)(, --allow-modality-mismatch)
        (, --device, D)]``. ``modality``: ``"SWI"`` or ``"T2star"`` (the command's
        ``--sequence``); ``device``: auto, cpu, cuda, cuda:N or mps (None: default)."""
        if modality not in MODALITIES:
            raise InvalidImageError(f"modality {modality!r} is not one the CMB detector "
                                    "knows", f"Choose one of {', '.join(MODALITIES)}")
        args = ["--progress-lines"]
        if error_file is not None:
            args += ["--error-json", str(error_file)]
        args += ["cmb", "predict", str(image_path), "--out", str(out_dir),
                 "--sequence", modality]
        if model_folder:
            args += ["--model", str(model_folder)]
        if allow_modality_mismatch:
            args.append("--allow-modality-mismatch")
        if device is not None:
            args += ["--device", str(device)]
        return lesion_core_command(args, python)

    def start_prediction(self, input_volume_node, model_folder=None, modality: str = "SWI",
                         allow_modality_mismatch: bool = False, device: str | None = None
                         ) -> CMBBackgroundPrediction:
        """Write the input to a temporary folder and start ``cmb predict`` in a child
        process; poll the returned job, then call :meth:`finish_prediction`."""
        image = self.read_input(input_volume_node)

        def start(work: Path, input_path: Path) -> CMBBackgroundPrediction:
            argv = self.prediction_command(input_path, work / OUT_DIR, model_folder, modality,
                                           allow_modality_mismatch, device, work / ERROR_FILE)
            return CMBBackgroundPrediction(argv, work, image, input_volume_node,
                                           env=child_env())

        return predictions.start_in_work_folder(image, "lesion-suite-cmb-", start)

    def finish_prediction(self, job: CMBBackgroundPrediction) -> CMBResultNodes:
        """Add the nodes of a finished job (GUI thread) and remove its temporary folder.
        Raises what the job's ``outputs()`` raises (cancel, the child's user error)."""
        return job.finish(self.add_result_nodes)

    def run(self, input_volume_node, model_folder=None, modality: str = "SWI",
            allow_modality_mismatch: bool = False, device: str | None = None,
            progress=None, timeout: float | None = None) -> CMBResultNodes:
        """:meth:`start_prediction`, wait, :meth:`finish_prediction` (blocks; scripts).

        ``progress``: a :class:`lesion_core.progress.Progress`, updated from the child's
        progress lines; its ``cancel()`` stops the child (``OperationCancelled``).
        ``timeout``: seconds before the child is cancelled (None: no limit).
        """
        job = self.start_prediction(input_volume_node, model_folder, modality,
                                    allow_modality_mismatch, device)
        return predictions.run_to_end(job, self.finish_prediction, progress, timeout)

    def load_results(self, input_volume_node, folder: str | Path) -> CMBResultNodes:
        """Add the nodes of a ``lesion-suite cmb predict`` output folder made earlier from
        this volume's image (its label maps must lie on the volume's grid)."""
        image = self.read_input(input_volume_node)
        return self.add_result_nodes(input_volume_node, CMBOutputs.read(folder, image))

    # ------------------------------------------------------------------ nodes
    def add_result_nodes(self, input_volume_node, outputs: CMBOutputs) -> CMBResultNodes:
        """Create the markups, table and segmentation nodes (all or none)."""
        from lesion_core.labels import CMB

        scene = input_volume_node.GetScene()
        name = input_volume_node.GetName()
        candidates = outputs.candidates
        created: list = []
        try:
            markups = mb.points_to_markups(
                scene, [c["centre_ras"] for c in candidates],
                labels=[str(c["id"]) for c in candidates],
                descriptions=[describe(c) for c in candidates],
                selected=[bool(c.get("kept")) for c in candidates],
                name=f"{name} CMB candidates", locked=True)
            created.append(markups)
            for index, candidate in enumerate(candidates):
                markups.SetNthControlPointVisibility(index, bool(candidate.get("kept")))
            self._style_markups(markups)
            table = mb.rows_to_table(scene, [table_row(str(c["id"]), c, None)
                                             for c in candidates],
                                     name=f"{name} CMB table", columns=TABLE_COLUMNS)
            created.append(table)
            table.SetLocked(True)
            kept = outputs.labels.with_array((outputs.labels.array > 0).astype("uint8"))
            segmentation = mb.labelmap_to_segmentation(
                scene, kept, [CMB], name=f"{name} CMB", reference_node=input_volume_node,
                include_empty=True)
            created.append(segmentation)
            predictions.place_with_input(created, input_volume_node, {
                RESULT_ATTRIBUTE: f"{outputs.model_id} {outputs.model_version}",
                INPUT_ATTRIBUTE: input_volume_node.GetID()})
        except Exception:
            for node in created:
                scene.RemoveNode(node)
            raise
        return CMBResultNodes(input_volume_node, markups, table, segmentation,
                              list(candidates), outputs.candidate_labels, dict(outputs.summary))

    @staticmethod
    def _style_markups(markups) -> None:
        display = markups.GetDisplayNode()
        if display is None:
            return
        display.SetSelectedColor(*CMB_COLOUR)
        display.SetColor(*OTHER_COLOUR)
        display.SetTextScale(2.0)

    @staticmethod
    def remove_result_nodes(result: CMBResultNodes) -> None:
        """Remove a result's output nodes from their scene (the input stays)."""
        predictions.remove_nodes(result.nodes)

    @staticmethod
    def save_results(result: CMBResultNodes, folder: str | Path, stem: str | None = None
                     ) -> dict[str, Path]:
        """Write the points (``.mrk.json``), table (``.tsv``) and segmentation
        (``.seg.nrrd``) into ``folder``; returns the paths."""
        folder = Path(folder)
        stem = stem or "".join(c if c.isalnum() or c in "-_." else "_"
                               for c in result.input.GetName()).strip("._") or "volume"
        paths = {"markups": folder / f"{stem}_cmb_candidates.mrk.json",
                 "table": folder / f"{stem}_cmb_candidates.tsv",
                 "segmentation": folder / f"{stem}_cmb.seg.nrrd"}
        for key, path in paths.items():
            mb.write_node(getattr(result, key), path)
        return paths

    # ------------------------------------------------------------------ review
    @staticmethod
    def open_review(result: CMBResultNodes, feedback_root: str | Path | None = None,
                    reader: str | None = None, show_rejected: bool = False):
        """The :class:`.review.CMBReview` of a result's case, the points and rows showing
        the reader's standing decisions from the feedback store."""
        from .review import CMBReview

        return CMBReview.for_result(result, feedback_root or default_feedback_root(),
                                    reader=reader, show_rejected=show_rejected)

    # ---------------------------------------------------------------- training
    @staticmethod
    def training_command(feedback_root: str | Path, init_model: str | Path,
                         out_folder: str | Path, stage1: bool = False,
                         python: str | None = None) -> list[str]:
        """The retraining command line (see :func:`.training.training_command`)."""
        return training.training_command(feedback_root, init_model, out_folder, stage1,
                                         python)

    @staticmethod
    def start_training(feedback_root: str | Path, init_model: str | Path | None = None,
                       out_folder: str | Path | None = None, stage1: bool = False
                       ) -> tuple[ChildProcess, Path]:
        """Start it in a child process (see :func:`.training.start_training`); returns the
        child and the folder the new model will be written to."""
        return training.start_training(feedback_root, init_model, out_folder, stage1)


__all__ = ["CMBBackgroundPrediction", "CMBDetectorLogic", "CMBResultNodes",
           "default_feedback_root"]

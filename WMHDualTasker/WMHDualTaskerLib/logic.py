"""Logic of the WMH DualTasker module: MRML nodes in, MRML nodes out (no Qt, no app).

:meth:`WMHDualTaskerLogic.run` reads a FLAIR (or, in the T1 mode, a 3D T1) volume node,
runs :func:`lesion_core.wmh.predict.predict` and adds four nodes to the node's scene:

- a segmentation with one WMH segment (lesion terminology), its reference geometry the
  input volume's, so the segment is on the input's voxel grid;
- the activation map (0..1) as a float32 scalar volume with a colour map, same grid;
- the ARWMC table: one row per region-side then the total, columns
  :data:`~.outputs.TABLE_COLUMNS` (the reader's ratings are filled by :mod:`.review`);
- the ARWMC region atlas as a segmentation, one segment per region-side, hidden.

Geometry: the input is read in its *local* coordinates (``world=False``) and every output
node is put under the input's parent transform, so outputs keep the input's IJK-to-RAS
matrix and dimensions exactly and move with it. Nothing is added to the scene before the
prediction succeeded, and if adding fails half-way the nodes added so far are removed.

``run`` blocks (scripts, tests, the Python console). The GUI uses
:meth:`start_prediction` / :meth:`finish_prediction` instead, which run the prediction in a
child process (see :mod:`.background` for why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_core.errors import InvalidImageError, ModelBundleError
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib.child_process import ChildProcess, lesion_core_command
from LesionSuiteLib.hub_logic import _HeadlessLogicBase
from LesionSuiteLib import predictions
from LesionSuiteLib.predictions import start_in_work_folder

from . import training
from .background import ERROR_FILE, OUT_DIR, BackgroundPrediction
from .outputs import TABLE_COLUMNS, SummaryFacts, WMHOutputs, region_targets
from .training import child_env, default_feedback_root

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # slicer-core wheel: real MRML, no application
    _LogicBase = None

#: Node attribute naming what made a result node, and the input it belongs to.
RESULT_ATTRIBUTE = "LesionSuite.WMH.Result"
INPUT_ATTRIBUTE = "LesionSuite.WMH.InputNodeID"
# Region atlas colours (RGB 0..1): one hue per region, the right side a shade darker.
_REGION_COLOURS = {"frontal": (0.36, 0.62, 0.95), "parieto_occipital": (0.40, 0.80, 0.46),
                   "temporal": (0.96, 0.62, 0.30), "infratentorial": (0.72, 0.48, 0.86),
                   "basal_ganglia": (0.92, 0.86, 0.36)}


@dataclass
class WMHResultNodes(SummaryFacts):
    """The nodes of one run and what produced them.

    Attributes:
        input: the FLAIR/T1 volume node that was analysed.
        segmentation: ``vtkMRMLSegmentationNode`` with the WMH segment.
        activation: ``vtkMRMLScalarVolumeNode``, float32 activation 0..1, colour mapped.
        table: ``vtkMRMLTableNode``, ARWMC ratings (locked: edit through RatingReview).
        regions: ``vtkMRMLSegmentationNode``, one segment per region-side, hidden.
        summary: ``WMHPrediction.summary()`` (model, model_version, modality,
            arwmc_total, lesion_ml, brain_ml, region_ml, zone_ml, ...).
    """

    input: Any
    segmentation: Any
    activation: Any
    table: Any
    regions: Any
    summary: dict = field(default_factory=dict)

    @property
    def nodes(self) -> list:
        """The output nodes (not the input)."""
        return [self.segmentation, self.activation, self.table, self.regions]


class WMHDualTaskerLogic(_LogicBase or _HeadlessLogicBase):
    """WMH segmentation, ARWMC ratings and training from a reader's ratings."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._models: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ model
    def load_model(self, model_folder: str | Path | None = None, t1: bool = False,
                   device=None):
        """The :class:`lesion_core.wmh.model.WMHModel` of a folder (default: the shipped
        one of the mode), cached. Raises ``ModelBundleError`` with what to do when the
        folder is missing or holds a model of the other mode."""
        from lesion_core.wmh.model import default_model_folder, load_wmh_model

        if not model_folder:
            self.check_model_installed(t1)
        folder = Path(model_folder) if model_folder else default_model_folder(t1)
        mode = "T1" if t1 else "FLAIR"
        # The metadata's time stamp is in the key so that a model replaced in the same
        # folder is loaded again rather than served stale from the cache.
        metadata = folder / "metadata.json"
        stamp = metadata.stat().st_mtime_ns if metadata.is_file() else None
        key = (str(folder.resolve()), stamp, t1, str(device))
        if key not in self._models:
            model = load_wmh_model(folder, t1=t1, device=device)
            if model.is_t1 != t1:
                raise ModelBundleError(
                    f"this is a {model.modality} model but the {mode} mode is selected",
                    f"Choose a {mode} WMH model folder, or switch the mode", source=folder)
            self._models = {key: model}  # keep one: a network may be large on the GPU
        return self._models[key]

    # ------------------------------------------------------------------ input
    @staticmethod
    def read_input(input_volume_node) -> Volume:
        """The node's voxels and local IJK-to-RAS geometry as a Volume (nothing checked
        beyond the node type; ``predict`` validates the image)."""
        if input_volume_node is None or not input_volume_node.IsA("vtkMRMLScalarVolumeNode") \
                or input_volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InvalidImageError("no FLAIR or T1 volume is selected", "Select a scalar "
                                    "volume (not a label map or segmentation) as input")
        return mb.node_to_volume(input_volume_node, world=False)

    # ------------------------------------------------------------------ run
    def run(self, input_volume_node, model_folder: str | Path | None = None, t1: bool = False,
            progress=None, atlases=None, device=None) -> WMHResultNodes:
        """Predict on ``input_volume_node`` in this process and add the result nodes.

        Args:
            model_folder: a WMH model folder; None for the shipped model of the mode.
            t1: T1-only mode (deep-T1-WMH; no ratings) instead of the FLAIR DualTasker.
            progress: :class:`lesion_core.progress.Progress`; its ``cancel()`` stops the
                run at the next step with ``OperationCancelled``.
            atlases: :class:`lesion_core.wmh.atlases.SubjectAtlases` to skip registration
                (any grid: ``predict`` puts them on the input grid by nearest neighbour).
            device: torch device (or name) for the network; None = CPU.
        """
        from lesion_core.wmh.predict import predict

        image = self.read_input(input_volume_node)
        model = self.load_model(model_folder, t1, device)
        prediction = predict(image, model, atlases, progress)
        return self.add_result_nodes(input_volume_node, WMHOutputs.from_prediction(prediction))

    # ------------------------------------------------------------- background
    @staticmethod
    def prediction_command(image_path: Path, out_dir: Path, model_folder=None, t1=False,
                           device: str = "cpu", atlases_dir: Path | None = None,
                           error_file: Path | None = None, python: str | None = None
                           ) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines(, --error-json, FILE), wmh, predict,
        IMAGE, --out, DIR, --device, D(, --model, M)(, --t1)(, --atlases, A)]``.

        The child process runs the command line's ``wmh predict``: progress as lines on
        stdout, a user error also written to ``error_file`` (see :mod:`.background`).
        ``device``: auto, cpu, cuda, cuda:N or mps (or a torch device).
        """
        args = ["--progress-lines"]
        if error_file is not None:
            args += ["--error-json", str(error_file)]
        args += ["wmh", "predict", str(image_path), "--out", str(out_dir),
                 "--device", str(device)]
        if model_folder:
            args += ["--model", str(model_folder)]
        if t1:
            args.append("--t1")
        if atlases_dir is not None:
            args += ["--atlases", str(atlases_dir)]
        return lesion_core_command(args, python)

    def start_prediction(self, input_volume_node, model_folder=None, t1: bool = False,
                         device: str = "cpu", atlases=None) -> BackgroundPrediction:
        """Write the input to a temporary folder and start the prediction in a child
        process; poll the returned job, then call :meth:`finish_prediction`."""
        from lesion_core.wmh.atlases import write_atlases

        image = self.read_input(input_volume_node)
        if not model_folder:
            self.check_model_installed(t1)

        def start(work: Path, input_path: Path) -> BackgroundPrediction:
            atlases_dir = None if atlases is None else write_atlases(atlases, work / "atlases")
            argv = self.prediction_command(input_path, work / OUT_DIR, model_folder, t1,
                                           device, atlases_dir, work / ERROR_FILE)
            return BackgroundPrediction(argv, work, image, input_volume_node, env=child_env())

        return start_in_work_folder(image, "lesion-suite-wmh-", start)

    def finish_prediction(self, job: BackgroundPrediction) -> WMHResultNodes:
        """Add the nodes of a finished job (GUI thread) and remove its temporary folder.

        Raises what :meth:`BackgroundPrediction.outputs` raises (cancel, user error)."""
        return job.finish(self.add_result_nodes)

    def check_model_installed(self, t1: bool = False) -> None:
        """Raise the clear ``ModelBundleError`` when the shipped model is absent."""
        from lesion_core.wmh.model import default_model_folder

        folder = default_model_folder(t1)
        if not folder.is_dir():
            raise ModelBundleError(
                f"the shipped {'T1' if t1 else 'FLAIR'} WMH model is not installed",
                "Choose a model folder (one holding metadata.json and model.safetensors), "
                "or update the LesionSuite extension", source=folder)

    # ------------------------------------------------------------------ nodes
    def add_result_nodes(self, input_volume_node, outputs: WMHOutputs) -> WMHResultNodes:
        """Create the four result nodes in the input's scene (all or none)."""
        from lesion_core.labels import WMH

        scene = input_volume_node.GetScene()
        name = input_volume_node.GetName()
        created: list = []
        try:
            segmentation = mb.labelmap_to_segmentation(
                scene, outputs.labels, [WMH], name=f"{name} WMH",
                reference_node=input_volume_node, include_empty=True)
            created.append(segmentation)
            activation = mb.probability_to_node(scene, outputs.activation,
                                                name=f"{name} WMH activation")
            created.append(activation)
            table = mb.rows_to_table(scene, outputs.rating_rows(), name=f"{name} ARWMC",
                                     columns=TABLE_COLUMNS)
            created.append(table)
            table.SetLocked(True)  # ratings are edited through RatingReview, which saves them
            regions = self._regions_segmentation(scene, outputs.regions, input_volume_node,
                                                 f"{name} ARWMC regions")
            created.append(regions)
            predictions.place_with_input(created, input_volume_node, {
                RESULT_ATTRIBUTE: f"{outputs.model_id} {outputs.model_version}",
                INPUT_ATTRIBUTE: input_volume_node.GetID()})
        except Exception:
            for node in created:
                scene.RemoveNode(node)
            raise
        return WMHResultNodes(input_volume_node, segmentation, activation, table, regions,
                              dict(outputs.summary))

    @staticmethod
    def _regions_segmentation(scene, atlas: Volume, reference_node, name: str):
        node = mb.labelmap_to_segmentation(scene, atlas, None, name=name,
                                           reference_node=reference_node)
        names = region_targets()
        segmentation = node.GetSegmentation()
        for segment_id, value in mb.segment_label_values(node).items():
            if not 1 <= value <= len(names):
                continue
            region, side = names[value - 1].rsplit("_", 1)
            colour = _REGION_COLOURS.get(region, (0.7, 0.7, 0.7))
            shade = 1.0 if side == "left" else 0.75
            segment = segmentation.GetSegment(segment_id)
            segment.SetName(names[value - 1])
            segment.SetColor(*(c * shade for c in colour))
        display = node.GetDisplayNode()
        display.SetOpacity(0.4)
        display.SetVisibility(False)  # context only: shown on request
        return node

    @staticmethod
    def set_regions_visible(result: WMHResultNodes, visible: bool) -> None:
        """Show or hide the ARWMC region atlas of a result."""
        display = result.regions.GetDisplayNode() if result.regions else None
        if display is not None:
            display.SetVisibility(bool(visible))

    @staticmethod
    def remove_result_nodes(result: WMHResultNodes) -> None:
        """Remove a result's output nodes from their scene (the input stays)."""
        predictions.remove_nodes(result.nodes)

    @staticmethod
    def save_results(result: WMHResultNodes, folder: str | Path, stem: str | None = None
                     ) -> dict[str, Path]:
        """Write the segmentation (``.seg.nrrd``), activation (``.nrrd``), ARWMC table
        (``.tsv``) and region atlas (``.seg.nrrd``) into ``folder``; returns the paths."""
        folder = Path(folder)
        stem = stem or _safe_file_stem(result.input.GetName())
        paths = {"segmentation": folder / f"{stem}_wmh.seg.nrrd",
                 "activation": folder / f"{stem}_wmh_activation.nrrd",
                 "table": folder / f"{stem}_arwmc.tsv",
                 "regions": folder / f"{stem}_arwmc_regions.seg.nrrd"}
        for key, path in paths.items():
            mb.write_node(getattr(result, key), path)
        return paths

    # ------------------------------------------------------------------ review
    @staticmethod
    def open_review(result: WMHResultNodes, feedback_root: str | Path | None = None,
                    reader: str | None = None):
        """The :class:`.review.RatingReview` of a result's case, its table filled with
        the reader's standing ratings from the feedback store."""
        from .review import RatingReview

        return RatingReview.for_result(result, feedback_root or default_feedback_root(),
                                       reader=reader)

    # ---------------------------------------------------------------- training
    @staticmethod
    def training_command(feedback_root: str | Path, init_model: str | Path,
                         out_folder: str | Path, steps: int | None = None,
                         device: str | None = None, python: str | None = None) -> list[str]:
        """The command line that fine-tunes a FLAIR model from the reader ratings (see
        :func:`.training.training_command`)."""
        return training.training_command(feedback_root, init_model, out_folder, steps,
                                         device, python)

    @staticmethod
    def start_training(feedback_root: str | Path, init_model: str | Path | None = None,
                       out_folder: str | Path | None = None, steps: int | None = None,
                       device: str | None = None) -> tuple[ChildProcess, Path]:
        """Start that command in a child process (see :func:`.training.start_training`);
        returns the child and the folder the new model will be written to."""
        return training.start_training(feedback_root, init_model, out_folder, steps, device)


# ---------------------------------------------------------------------- helpers


def _safe_file_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return stem or "volume"


__all__ = ["WMHDualTaskerLogic", "WMHResultNodes", "default_feedback_root"]

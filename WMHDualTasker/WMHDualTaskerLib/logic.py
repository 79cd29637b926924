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
child process (see :mod:`LesionSuiteLib.predictions` for why). What every task does alike
(the child process, all-or-none nodes, saving, the review, retraining, the DICOM SEG and
SR export of a result with ``export_dicom``) is
:class:`LesionSuiteLib.task_logic.TaskLogic`'s; this module keeps the WMH model, the
in-process run, the command's options and the node building.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesion_core.errors import ModelBundleError
from lesion_core.labels import WMH
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib.child_process import ChildProcess
from LesionSuiteLib.later import Later
from LesionSuiteLib.retraining import Retraining
from LesionSuiteLib.task_logic import TaskLogic

from .outputs import TABLE_COLUMNS, SummaryFacts, WMHOutputs, region_targets

# Region atlas colours (RGB 0..1): one hue per region, the right side a shade darker.
_REGION_COLOURS = {"frontal": (0.36, 0.62, 0.95), "parieto_occipital": (0.40, 0.80, 0.46),
                   "temporal": (0.96, 0.62, 0.30), "infratentorial": (0.72, 0.48, 0.86),
                   "basal_ganglia": (0.92, 0.86, 0.36)}


#: "Train from my ratings": ``lesion-suite wmh train`` fine-tunes the FLAIR DualTasker
#: from the ratings :func:`lesion_core.wmh.reader_ratings.rows_from_feedback` reads (the
#: images each case names in its ``case.json``).
RETRAINING = Retraining(
    task="wmh", has_feedback=Later("lesion_core.wmh.reader_ratings", "rows_from_feedback",
                                   "FLAIR"),
    no_feedback=("no FLAIR case in the feedback folder has a rating yet",
                 "Rate at least one case in the FLAIR mode, then train"),
    model_kind="FLAIR WMH",
    new_model_stem="wmh_flair_reader")
#: Where the reader's ratings are kept unless the user picks another folder.
default_feedback_root = RETRAINING.default_feedback_root


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


class WMHDualTaskerLogic(TaskLogic):
    """WMH segmentation, ARWMC ratings and training from a reader's ratings."""

    task = "wmh"
    input_kind = "FLAIR or T1"
    outputs_type = WMHOutputs
    result_files = {"segmentation": "_wmh.seg.nrrd", "activation": "_wmh_activation.nrrd",
                    "table": "_arwmc.tsv", "regions": "_arwmc_regions.seg.nrrd"}
    open_review_of = Later("WMHDualTaskerLib.review", "RatingReview.for_result")
    retraining = RETRAINING
    #: The DICOM export (``export_dicom``) writes the WMH segment, as the reader left it.
    segment_labels = (WMH,)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._models: dict[tuple, Any] = {}

    # ------------------------------------------------------------------ model
    def load_model(self, model_folder: str | Path | None = None, t1: bool = False,
                   device=None):
        """The :class:`lesion_core.wmh.model.WMHModel` of a folder (default: the shipped
        one of the mode), cached. Raises ``ModelBundleError`` with what to do when the
        folder is missing or holds a model of the other mode."""
        from lesion_core.wmh.model import load_wmh_model

        if not model_folder:
            self.check_model_installed(t1)
        folder = Path(model_folder) if model_folder else self.shipped_model_folder(t1)
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

    @classmethod
    def shipped_model_folder(cls, t1: bool = False) -> Path:
        """The shipped model folder of the mode, from the task contract (no torch: the
        child process loads the model)."""
        from lesion_core.tasks import get_task

        task = get_task(cls.task)
        return task.default_model_folder(task.kind(t1=t1))

    def check_model_installed(self, t1: bool = False) -> None:
        """Raise the clear ``ModelBundleError`` when the shipped model is absent."""
        folder = self.shipped_model_folder(t1)
        if not folder.is_dir():
            raise ModelBundleError(
                f"the shipped {'T1' if t1 else 'FLAIR'} WMH model is not installed",
                "Choose a model folder (one holding metadata.json and model.safetensors), "
                "or update the LesionSuite extension", source=folder)

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
    @classmethod
    def prediction_options(cls, model_folder=None, device=None, t1: bool = False,
                           atlases_dir: Path | None = None, force: bool = False
                           ) -> dict[str, object]:
        """``--device D(, --model M)(, --t1)(, --atlases A)(, --force)`` of ``wmh
        predict``: the device defaults to the CPU; ``t1``: the T1 mode; ``atlases_dir``:
        the subject's brain mask and atlases, written by
        :func:`lesion_core.wmh.atlases.write_atlases` (registration is skipped);
        ``force``: a result even on an image that does not look like a head scan, marked
        out of distribution."""
        return {"--device": device or "cpu", "--model": model_folder or None,
                "--t1": bool(t1), "--atlases": atlases_dir, "--force": bool(force)}

    def start_prediction(self, input_volume_node, model_folder=None, t1: bool = False,
                         device: str = "cpu", atlases=None, force: bool = False):
        """Write the input to a temporary folder and start the prediction in a child
        process; poll the returned job, then call :meth:`finish_prediction`. ``force``:
        report a result even when the input does not look like a head scan (the command
        refuses it otherwise); the result is then marked out of distribution."""
        from lesion_core.wmh.atlases import write_atlases

        if not model_folder:
            self.check_model_installed(t1)

        def command(image_path: Path, out_dir: Path, error_file: Path) -> list[str]:
            atlases_dir = None if atlases is None else write_atlases(
                atlases, out_dir.parent / "atlases")
            return self.prediction_command(image_path, out_dir, model_folder, device,
                                           error_file, t1=t1, atlases_dir=atlases_dir,
                                           force=force)

        return self.start_in_child(input_volume_node, command)

    # ------------------------------------------------------------------ nodes
    def add_result_nodes(self, input_volume_node, outputs: WMHOutputs) -> WMHResultNodes:
        """Create the four result nodes in the input's scene (all or none)."""
        scene = input_volume_node.GetScene()
        name = input_volume_node.GetName()
        with self.adding_results(input_volume_node, outputs) as created:
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

    # ---------------------------------------------------------------- training
    @classmethod
    def training_command(cls, feedback_root: str | Path, init_model: str | Path,
                         out_folder: str | Path, steps: int | None = None,
                         device: str | None = None, python: str | None = None) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines, wmh, train, --feedback, STORE,
        --init, MODEL, --out, NEW(, --steps, N)(, --device, D)]``: fine-tunes a FLAIR
        model from the reader's ratings (see :meth:`.Retraining.command`)."""
        return cls.retraining.command(feedback_root, init_model, out_folder, _steps(steps),
                                      device, python)

    def start_training(self, feedback_root: str | Path, init_model: str | Path | None = None,
                       out_folder: str | Path | None = None, steps: int | None = None,
                       device: str | None = None) -> tuple[ChildProcess, Path]:
        """Start that command in a child process (default ``init_model``: the shipped
        FLAIR model); returns the child and the folder the new model will be written to
        (see :meth:`.Retraining.start`). ``steps``: training steps (default: the
        command's own)."""
        return self.retraining.start(feedback_root, init_model, out_folder, _steps(steps),
                                     device)


def _steps(steps: int | None) -> dict:
    return {"--steps": int(steps) if steps else None}


__all__ = ["WMHDualTaskerLogic", "WMHResultNodes", "default_feedback_root"]

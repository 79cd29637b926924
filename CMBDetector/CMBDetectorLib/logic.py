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

What every task does alike (the child process, all-or-none nodes, saving, the review,
retraining, the DICOM SEG and SR export with ``export_dicom``) is
:class:`LesionSuiteLib.task_logic.TaskLogic`'s; this module keeps the command's options,
the node building, and the microbleeds of the segmentation as the SEG's segments (one per
microbleed: :func:`microbleed_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesion_core.errors import InvalidImageError
from lesion_core.labels import CMB
from lesion_core.volume import Volume
from LesionSuiteLib import mrml_bridge as mb
from LesionSuiteLib.child_process import ChildProcess
from LesionSuiteLib.predictions import SummaryFacts
from LesionSuiteLib.later import Later
from LesionSuiteLib.retraining import Retraining
from LesionSuiteLib.task_logic import TaskLogic

from .outputs import TABLE_COLUMNS, CMBOutputs, describe, table_row

MODALITIES = ("SWI", "T2star")
#: Point colours (RGB 0..1): microbleeds (selected) in the CMB label colour, others grey.
CMB_COLOUR = (0.85, 0.10, 0.55)
OTHER_COLOUR = (0.6, 0.6, 0.6)


#: "Retrain from my decisions": ``lesion-suite cmb train`` fine-tunes stage 2 (and stage 1
#: with ``--stage1``) from the points :func:`lesion_core.cmb.reader_decisions.
#: training_points` reads from the store (accepted and added: microbleed; rejected: not).
RETRAINING = Retraining(
    task="cmb", has_feedback=Later("lesion_core.cmb.reader_decisions", "training_points"),
    no_feedback=("the feedback folder holds no CMB decision yet",
                 "Accept, reject or add microbleeds in at least one case, then retrain"))
#: Where the reader's decisions are kept unless the user picks another folder.
default_feedback_root = RETRAINING.default_feedback_root


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


class CMBDetectorLogic(TaskLogic):
    """CMB candidates, their review and retraining from the reader's decisions."""

    task = "cmb"
    input_kind = "SWI or T2*-GRE"
    outputs_type = CMBOutputs
    result_files = {"markups": "_cmb_candidates.mrk.json", "table": "_cmb_candidates.tsv",
                    "segmentation": "_cmb.seg.nrrd"}
    open_review_of = Later("CMBDetectorLib.review", "CMBReview.for_result")
    retraining = RETRAINING
    #: The DICOM export (``export_dicom``) reads the "Cerebral microbleed" segment, as the
    #: reader left it, and writes one SEG segment per microbleed (:meth:`export_label_map`).
    segment_labels = (CMB,)

    # ------------------------------------------------------------- prediction
    @classmethod
    def prediction_options(cls, model_folder=None, device=None, modality: str = "SWI",
                           allow_modality_mismatch: bool = False, force: bool = False
                           ) -> dict[str, object]:
        """``--sequence M(, --model F)(, --allow-modality-mismatch)(, --device D)(,
        --force)`` of ``cmb predict``: ``modality`` is ``"SWI"`` or ``"T2star"`` (what the
        input is); ``allow_modality_mismatch`` runs a model trained on the other sequence;
        ``force`` gives a result even on an image that does not look like a head scan,
        marked out of distribution."""
        if modality not in MODALITIES:
            raise InvalidImageError(f"modality {modality!r} is not one the CMB detector "
                                    "knows", f"Choose one of {', '.join(MODALITIES)}")
        return {"--sequence": modality, "--model": model_folder or None,
                "--allow-modality-mismatch": bool(allow_modality_mismatch),
                "--device": device, "--force": bool(force)}

    def start_prediction(self, input_volume_node, model_folder=None, modality: str = "SWI",
                         allow_modality_mismatch: bool = False, device: str | None = None,
                         force: bool = False):
        """Write the input to a temporary folder and start ``cmb predict`` in a child
        process; poll the returned job, then call :meth:`finish_prediction`. ``force``:
        report a result even when the input does not look like a head scan (the command
        refuses it otherwise); the result is then marked out of distribution."""
        return self.start_in_child(input_volume_node, lambda image, out, error: (
            self.prediction_command(image, out, model_folder, device, error,
                                    modality=modality,
                                    allow_modality_mismatch=allow_modality_mismatch,
                                    force=force)))

    def run(self, input_volume_node, model_folder=None, modality: str = "SWI",
            allow_modality_mismatch: bool = False, device: str | None = None,
            progress=None, timeout: float | None = None, force: bool = False
            ) -> CMBResultNodes:
        """:meth:`start_prediction`, wait, :meth:`finish_prediction` (blocks; scripts).

        ``progress``: a :class:`lesion_core.progress.Progress`, updated from the child's
        progress lines; its ``cancel()`` stops the child (``OperationCancelled``).
        ``timeout``: seconds before the child is cancelled (None: no limit).
        ``force``: a result even on an image that does not look like a head scan, marked
        out of distribution.
        """
        return self.wait_for(self.start_prediction(
            input_volume_node, model_folder, modality, allow_modality_mismatch, device,
            force=force), progress, timeout)

    # ------------------------------------------------------------------ nodes
    def add_result_nodes(self, input_volume_node, outputs: CMBOutputs) -> CMBResultNodes:
        """Create the markups, table and segmentation nodes (all or none)."""
        scene = input_volume_node.GetScene()
        name = input_volume_node.GetName()
        candidates = outputs.candidates
        with self.adding_results(input_volume_node, outputs) as created:
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
        return CMBResultNodes(input_volume_node, markups, table, segmentation,
                              list(candidates), outputs.candidate_labels, dict(outputs.summary))

    # ------------------------------------------------------------------ DICOM
    def export_label_map(self, result: CMBResultNodes) -> Volume:
        """The microbleeds of the segmentation *as it is now* (the reader's Segment Editor
        edits included), each voxel the candidate id of its microbleed, on the input's
        local grid: the SEG has one segment per microbleed (see :func:`microbleed_ids`)."""
        painted = super().export_label_map(result)
        return painted.with_array(microbleed_ids(np.asarray(painted.array) > 0,
                                                 result.candidates, result.candidate_labels,
                                                 painted))

    def export_summary(self, result: CMBResultNodes) -> dict:
        """The result's summary with its candidates (``cmb_candidates.json`` as the SR
        reads it: the kept microbleeds' sizes and places, the count)."""
        return {**result.summary, "candidates": list(result.candidates)}

    @staticmethod
    def _style_markups(markups) -> None:
        display = markups.GetDisplayNode()
        if display is None:
            return
        display.SetSelectedColor(*CMB_COLOUR)
        display.SetColor(*OTHER_COLOUR)
        display.SetTextScale(2.0)

    # ------------------------------------------------------------------ review
    def open_review(self, result: CMBResultNodes, feedback_root: str | Path | None = None,
                    reader: str | None = None, show_rejected: bool = False):
        """The :class:`.review.CMBReview` of a result's case, the points and rows showing
        the reader's standing decisions from the feedback store."""
        return super().open_review(result, feedback_root, reader, show_rejected=show_rejected)

    # ---------------------------------------------------------------- training
    @classmethod
    def training_command(cls, feedback_root: str | Path, init_model: str | Path,
                         out_folder: str | Path, stage1: bool = False,
                         python: str | None = None, device: str | None = None) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines, cmb, train, --feedback, STORE,
        --init, MODEL, --out, NEW(, --stage1)(, --device, D)]`` (see
        :meth:`.Retraining.command`)."""
        return cls.retraining.command(feedback_root, init_model, out_folder,
                                      {"--stage1": bool(stage1)}, device, python)

    def start_training(self, feedback_root: str | Path, init_model: str | Path | None = None,
                       out_folder: str | Path | None = None, stage1: bool = False,
                       device: str | None = None) -> tuple[ChildProcess, Path]:
        """Start that command in a child process (default ``init_model``: the shipped
        model; ``stage1``: also fine-tune the candidate U-Net, not only stage 2); returns
        the child and the folder the new model will be written to (see
        :meth:`.Retraining.start`)."""
        return self.retraining.start(feedback_root, init_model, out_folder,
                                     {"--stage1": bool(stage1)}, device)


def microbleed_ids(painted: np.ndarray, candidates: list, candidate_labels: Volume | None,
                   grid: Volume) -> np.ndarray:
    """An int32 map of ``painted`` (the segmentation's voxels) by microbleed: each
    26-connected component of it takes the ids of the kept candidates it holds (their
    voxels of ``candidate_labels``, or without that map their centre voxels), each of its
    other voxels the id of the nearest such voxel in the component (mm on ``grid``); a
    component with no kept candidate, drawn by the reader, gets a new id above every
    candidate's. A kept microbleed the reader erased has no voxel left."""
    from scipy import ndimage

    painted = np.asarray(painted, bool)
    kept = [int(c["id"]) for c in candidates if c.get("kept")]
    seeds = np.zeros(painted.shape, np.int32)
    if candidate_labels is not None:
        ids = np.asarray(candidate_labels.array).astype(np.int32)
        seeds = np.where(painted & np.isin(ids, kept), ids, 0).astype(np.int32)
    else:
        for candidate in (c for c in candidates if c.get("kept")):
            voxel = tuple(int(v) for v in np.rint(grid.ras_to_voxel(candidate["centre_ras"])))
            inside = all(0 <= v < n for v, n in zip(voxel, painted.shape))
            if inside and painted[voxel]:
                seeds[voxel] = int(candidate["id"])
    out = np.zeros(painted.shape, np.int32)
    components, _ = ndimage.label(painted, structure=np.ones((3, 3, 3), bool))
    next_id = max([int(c["id"]) for c in candidates] + [0]) + 1
    spacing = [float(s) for s in grid.spacing[:3]]
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        inside = components[box] == index
        local = np.where(inside, seeds[box], 0)
        if not local.any():
            out[box][inside] = next_id
            next_id += 1
            continue
        _, nearest = ndimage.distance_transform_edt(local == 0, sampling=spacing,
                                                    return_indices=True)
        out[box][inside] = local[tuple(nearest)][inside]
    return out


__all__ = ["CMBDetectorLogic", "CMBResultNodes", "default_feedback_root", "microbleed_ids"]

"""The Logic every task module shares: MRML nodes in, MRML nodes out (no Qt, no app).

A task module's Logic (``WMHDualTaskerLogic``, ``CMBDetectorLogic``, ``ICHWeakSegLogic``)
derives from :class:`TaskLogic`, which does what is the same for every task:

- read the input volume node (its voxels in *local* coordinates, ``world=False``);
- build the child's ``lesion-suite <task> predict IMAGE --out DIR [task options]`` command
  line, write the input to a work folder and start it (:meth:`TaskLogic.start_in_child`,
  see :mod:`.predictions` for why a child process), wait for it in scripts
  (:meth:`TaskLogic.wait_for`), read its output files back on the input's grid and add
  the result nodes when it is finished (:meth:`TaskLogic.finish_prediction`), or add them
  from an output folder made earlier (:meth:`TaskLogic.load_results`);
- add the result nodes all or none, tagged with the model and the input (and, for a
  result the user asked for on an image the head checks refuse, ``--force``, with its
  out-of-distribution findings) and put under the input's parent transform, so they lie
  on the input exactly and move with it (:meth:`TaskLogic.adding_results`);
- save and remove a result's nodes, open the reader's review of a result, and start
  retraining from the reader's work (:mod:`.retraining`);
- export a result as a DICOM SEG and SR that reference the input's source series
  (:meth:`TaskLogic.export_dicom`, see :mod:`.dicom_results`), from its nodes as they are
  now: the reader's edits of the segmentation and review decisions included.

What a task declares: its command-line name (:attr:`TaskLogic.task`), what its input is,
how its outputs are read (:attr:`TaskLogic.outputs_type`), its result files, its review,
the lesion labels of its segmentation (:attr:`TaskLogic.segment_labels`) and its
:class:`~.retraining.Retraining`; and what it writes: its options, its node building
(``add_result_nodes``) and its own display rules.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping

from lesion_core.errors import InvalidImageError
from lesion_core.volume import Volume

from . import dicom_results
from . import mrml_bridge as mb
from . import predictions
from .child_process import child_env, command_options, lesion_core_command
from .hub_logic import _HeadlessLogicBase
from .predictions import BackgroundPrediction
from .retraining import Retraining

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # slicer-core wheel: real MRML, no application
    _LogicBase = None

#: Written beside the saved node files of a result marked out of distribution.
OUT_OF_DISTRIBUTION_FILE = "_out_of_distribution.txt"


def out_of_distribution_note(label: str, findings) -> str:
    """The text of :data:`OUT_OF_DISTRIBUTION_FILE`: the warning, then one finding a
    line."""
    lines = [f"This {label} result is out of distribution: the image did not look like a "
             "head scan the model reads, and a result was asked for anyway (--force).",
             predictions.OUT_OF_DISTRIBUTION_CAUTION, "", "Findings:"]
    return "\n".join(lines + [f"- {finding}" for finding in findings]) + "\n"


class TaskLogic(_LogicBase or _HeadlessLogicBase):
    """What the task Logics share (see the module notes); a task sets the attributes."""

    #: The command line's task (``wmh``, ``cmb``, ``ich``).
    task = ""
    #: What the input volume is, in the error when none is selected ("CT", ...).
    input_kind = ""
    #: The task's outputs: ``outputs_type.read(folder, grid)`` reads an output folder back
    #: onto the input's grid; instances have ``model_id`` and ``model_version``.
    outputs_type: Any = None
    #: Result attribute -> file name after the stem, for :meth:`save_results`.
    result_files: Mapping[str, str] = {}
    #: ``open_review_of(result, store, reader=..., **options)``: the task review's
    #: ``for_result`` (a :class:`~.later.Later`: reviews import what the hub installs).
    open_review_of: Any = None
    #: Fine-tuning from the reader's work (:mod:`.retraining`).
    retraining: Retraining
    #: The lesion labels (:mod:`lesion_core.labels`) a result's ``segmentation`` node holds,
    #: for the DICOM export: a segment is one of them by its label-value tag or its name.
    segment_labels: tuple = ()

    @property
    def label(self) -> str:
        """The task in messages and node attributes: ``WMH``, ``CMB``, ``ICH``."""
        return self.task.upper()

    @property
    def result_attribute(self) -> str:
        """Node attribute naming the model that made a result node (``name version``)."""
        return f"LesionSuite.{self.label}.Result"

    @property
    def input_attribute(self) -> str:
        """Node attribute naming the ID of the input volume node a result belongs to."""
        return f"LesionSuite.{self.label}.InputNodeID"

    @property
    def out_of_distribution_attribute(self) -> str:
        """Node attribute of a result marked out of distribution (the user asked for a
        result on an image the head checks refuse): its findings joined by ``"; "``.
        Absent on a normal result; a saved scene keeps it."""
        return f"LesionSuite.{self.label}.OutOfDistribution"

    # ------------------------------------------------------------------ input
    def read_input(self, input_volume_node) -> Volume:
        """The node's voxels and local IJK-to-RAS geometry (nothing checked beyond the
        node type: the command checks the image)."""
        if input_volume_node is None or not input_volume_node.IsA("vtkMRMLScalarVolumeNode") \
                or input_volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InvalidImageError(f"no {self.input_kind} volume is selected",
                                    "Select a scalar volume (not a label map or "
                                    "segmentation) as input")
        return mb.node_to_volume(input_volume_node, world=False)

    # ------------------------------------------------------------- prediction
    @classmethod
    def prediction_command(cls, image_path, out_dir, model_folder=None, device=None,
                           error_file=None, python: str | None = None, **options
                           ) -> list[str]:
        """``[python, -m, lesion_core, --progress-lines(, --error-json, FILE), TASK,
        predict, IMAGE, --out, DIR, *the task's options]``: the child runs the command
        line's ``predict``, progress as lines on stdout, a user error also written to
        ``error_file``. The task's options, from ``model_folder``, ``device`` (auto, cpu,
        cuda, cuda:N or mps) and its own ``options``, are :meth:`prediction_options`."""
        args = ["--progress-lines"]
        if error_file is not None:
            args += ["--error-json", str(error_file)]
        args += [cls.task, "predict", str(image_path), "--out", str(out_dir),
                 *command_options(cls.prediction_options(model_folder, device, **options))]
        return lesion_core_command(args, python)

    @classmethod
    def prediction_options(cls, model_folder=None, device=None, force: bool = False
                           ) -> dict[str, object]:
        """The task's ``predict`` options as ``{flag: value}``, in command-line order
        (see :func:`~.child_process.command_options`). Here the ones every task's
        ``predict`` has, ``(--model M)(, --device D)(, --force)``: ``force`` reports a
        result on an image that does not look like a head scan of the task's kind, marked
        out of distribution, where the command would refuse it. A task with options of
        its own overrides this and refuses values it does not know (an option it does not
        take at all is a ``TypeError``)."""
        return {"--model": model_folder or None, "--device": device, "--force": bool(force)}

    def start_in_child(self, input_volume_node,
                       command: Callable[[Path, Path, Path], list[str]],
                       **finish_options) -> BackgroundPrediction:
        """Write the input to a new work folder and start ``command(input_path, out_dir,
        error_file)`` (:meth:`prediction_command` for the image written there, its
        ``--out`` and its ``--error-json``) in a child process; poll the returned job,
        then call :meth:`finish_prediction`, which passes ``finish_options`` to
        :meth:`result_nodes`."""
        image = self.read_input(input_volume_node)

        def start(work: Path, input_path: Path) -> BackgroundPrediction:
            argv = command(input_path, work / predictions.OUT_DIR,
                           work / predictions.ERROR_FILE)
            return BackgroundPrediction(argv, work, image, input_volume_node,
                                        env=child_env(), task=self.label,
                                        read_outputs=self.outputs_type.read,
                                        finish_options=finish_options)

        return predictions.start_in_work_folder(image, f"lesion-suite-{self.task}-", start)

    def finish_prediction(self, job: BackgroundPrediction):
        """Add the nodes of a finished job (GUI thread) and remove its work folder.
        Raises what the job's ``outputs()`` raises (cancel, the child's user error)."""
        return job.finish(lambda node, outputs: self.result_nodes(node, outputs,
                                                                  **job.finish_options))

    def wait_for(self, job: BackgroundPrediction, progress=None,
                 timeout: float | None = None):
        """Wait for a started job, then :meth:`finish_prediction` (blocks; scripts).
        ``progress`` (a :class:`lesion_core.progress.Progress`) follows and cancels it;
        ``timeout``: seconds before the child is cancelled (None: no limit)."""
        return predictions.run_to_end(job, self.finish_prediction, progress, timeout)

    def load_results(self, input_volume_node, folder: str | Path, **options):
        """Add the nodes of an output folder of ``lesion-suite <task> predict`` made
        earlier from this volume's image (its images must lie on the volume's grid)."""
        image = self.read_input(input_volume_node)
        return self.result_nodes(input_volume_node, self.outputs_type.read(folder, image),
                                 **options)

    def result_nodes(self, input_volume_node, outputs):
        """The result nodes of ``outputs`` (a task whose results show more of the store
        takes its options here)."""
        return self.add_result_nodes(input_volume_node, outputs)

    def add_result_nodes(self, input_volume_node, outputs):
        """Create the task's result nodes (all or none: :meth:`adding_results`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ nodes
    @contextmanager
    def adding_results(self, input_volume_node, outputs):
        """``with self.adding_results(node, outputs) as created:`` append each node the
        block adds; if the block raises, they are removed again, so a failure half-way
        leaves the scene as it was; if it succeeds, they are tagged with the model and the
        input (and :attr:`out_of_distribution_attribute` when ``outputs`` has findings)
        and put under the input's parent transform."""
        with predictions.all_or_none(input_volume_node.GetScene()) as created:
            yield created
            attributes = {
                self.result_attribute: f"{outputs.model_id} {outputs.model_version}",
                self.input_attribute: input_volume_node.GetID()}
            findings = getattr(outputs, "out_of_distribution", ())
            if findings:
                attributes[self.out_of_distribution_attribute] = "; ".join(findings)
            predictions.place_with_input(created, input_volume_node, attributes)

    @staticmethod
    def remove_result_nodes(result) -> None:
        """Remove a result's output nodes from their scene (the input and the store stay)."""
        predictions.remove_nodes(result.nodes)

    def result_file_names(self, result) -> dict[str, str]:
        """Result attribute -> file name after the stem, for this result."""
        return dict(self.result_files)

    def save_results(self, result, folder: str | Path, stem: str | None = None
                     ) -> dict[str, Path]:
        """Write each result node into ``folder`` as ``<stem><file name>`` (see
        :attr:`result_files`; ``stem``: default the input volume's name made safe for
        file names); returns the paths by result attribute. A result marked out of
        distribution also gets ``<stem>`` :data:`OUT_OF_DISTRIBUTION_FILE` (key
        ``out_of_distribution``): the warning and one finding a line, since the node
        files cannot carry the mark."""
        folder = Path(folder)
        stem = stem or predictions.file_stem(result.input.GetName())
        paths = {key: folder / f"{stem}{name}"
                 for key, name in self.result_file_names(result).items()}
        for key, path in paths.items():
            mb.write_node(getattr(result, key), path)
        findings = getattr(result, "out_of_distribution", ())
        if findings:
            paths["out_of_distribution"] = folder / f"{stem}{OUT_OF_DISTRIBUTION_FILE}"
            paths["out_of_distribution"].write_text(
                out_of_distribution_note(self.label, findings), encoding="utf-8")
        return paths

    # ------------------------------------------------------------------ DICOM
    @staticmethod
    def has_dicom_source(input_volume_node) -> bool:
        """Whether the input was loaded through Slicer's DICOM module (it names its source
        images in the ``DICOM.instanceUIDs`` attribute), so that a result on it can be
        exported as a DICOM SEG and SR (:meth:`export_dicom`)."""
        return dicom_results.has_dicom_source(input_volume_node)

    @staticmethod
    def dicom_source_files(input_volume_node, lookup: dicom_results.Lookup | None = None
                           ) -> list[Path]:
        """The files of the input's source images, from its ``DICOM.instanceUIDs``
        attribute through ``lookup`` (SOP Instance UID -> file path). Default lookup:
        Slicer's DICOM database (``slicer.dicomDatabase.fileForInstance``, imported only
        then, so scripts and tests without the application pass their own). See
        :func:`.dicom_results.source_files` for the errors."""
        return dicom_results.source_files(input_volume_node, lookup)

    def export_label_map(self, result) -> Volume:
        """The label map the SEG is made of, on the input's local grid: the result's
        segmentation node *as it is now*, so the reader's Segment Editor edits are
        exported (segments by :attr:`segment_labels`; another non-empty segment is
        refused by name)."""
        return dicom_results.segmentation_label_map(
            result.segmentation, self.read_input(result.input), self.segment_labels,
            self.label)

    def export_summary(self, result) -> dict:
        """The summary document the SR's figures come from: the one the result carries
        (the model's figures; the reader's decisions are added from the store)."""
        return dict(result.summary)

    def stored_review(self, input_volume_node, feedback_root: str | Path):
        """The reader's standing decisions of this task on the input's case in the store
        at ``feedback_root`` (:func:`lesion_core.dicom_export.review.review_from_store`),
        or None when the store or the case holds none. Nothing is written."""
        from lesion_core.dicom_export.review import review_from_store

        from .review_cases import open_volume_case

        root = Path(feedback_root)
        if not root.is_dir():
            return None
        case = open_volume_case(root, input_volume_node).case
        if not case.folder.is_dir():
            return None
        return review_from_store(root, case.case_id, self.task)

    def export_dicom(self, result, folder: str | Path, source_files=None,
                     feedback_root: str | Path | None = None, stem: str | None = None,
                     lookup: dicom_results.Lookup | None = None) -> dict[str, Path]:
        """Write a result as a DICOM SEG and a TID 1500 SR that reference the input's
        source series: ``<stem>_seg.dcm`` and ``<stem>_sr.dcm`` in ``folder`` (stem
        default: ``<input name>_<task>``); returns ``{"dicom_seg": path, "dicom_sr":
        path}``. The objects are those of ``lesion-suite <task> predict --dicom``
        (:mod:`lesion_core.dicom_export`, see docs/dicom.md), made from the nodes:

        - the SEG from the result's segmentation node *as it is now*
          (:meth:`export_label_map`): what the reader edited in the Segment Editor is
          what is exported;
        - the SR's figures from the summary the result carries (:meth:`export_summary`:
          the model's, not recomputed from an edited segmentation), with the reader's
          decisions on the case from the feedback store at ``feedback_root``
          (:meth:`stored_review`; None or a store without the case: none);
        - ``source_files``: the source series' files (any order: they are put in the
          order of the volume's slices); default: found from the input's
          ``DICOM.instanceUIDs`` with ``lookup`` (:meth:`dicom_source_files`; default
          Slicer's DICOM database).

        Raises a :class:`~lesion_core.errors.LesionSuiteError` (one line: what and what to
        do) for an input without a DICOM source, source files that are missing or not of
        this volume, a segment the export does not know, or a folder that cannot be
        written; nothing is written then.
        """
        if source_files is None:
            source_files = self.dicom_source_files(result.input, lookup)
        labels = self.export_label_map(result)
        datasets = dicom_results.source_datasets(source_files, labels)
        review = self.stored_review(result.input, feedback_root) if feedback_root else None
        stem = stem or f"{predictions.file_stem(result.input.GetName())}_{self.task}"
        return dicom_results.export_to_folder(self.task, labels, self.export_summary(result),
                                              datasets, folder, stem, review)

    # ------------------------------------------------------------------ review
    def open_review(self, result, feedback_root: str | Path | None = None,
                    reader: str | None = None, **options):
        """The review of a result's case (:attr:`open_review_of`), showing the reader's
        standing work from the feedback store (default: the user's, see
        :mod:`.retraining`)."""
        return self.open_review_of(
            result, feedback_root or self.retraining.default_feedback_root(), reader=reader,
            **options)

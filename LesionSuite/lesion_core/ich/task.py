"""Intracranial haemorrhage behind the task contract: ICHWeakSeg on non-contrast CT (slice
classifier, class activation map, pseudo-masks, segmenter), trained from image-level labels.

``TASK`` is what :mod:`lesion_core.tasks` registers. Its options:

* ``predict CT``: none beyond the shared ones;
* ``train``: the whole weakly supervised pipeline from image-level labels (``--table``
  weak-label CSV, or ``--synthetic`` cohort folder: its labels only), thresholds
  calibrated on ``--validation`` labels; ``--classifier-steps``, ``--segmenter-steps``,
  ``--labels`` (which labels train the classifier), ``--combination`` (how the final mask
  is made), ``--self-training ROUNDS`` (the segmenter retrained on its own grown output);
  ``--init MODEL`` starts from that model's classifier (with its windows and CAM
  settings; the grid, refinement, segmenter and growth take today's defaults), and
  ``--classifier-steps 0`` keeps it as it is, so only the segmenter learns anew; or
  (``--feedback``) a fine-tune of the classifier of ``--init`` (or the shipped
  model) on a reader's slice labels, the segmenter kept, where ``--steps`` counts the
  fine-tune's steps; checkpoints in ``DIR/classifier`` and ``DIR/segmenter``, the cache by
  default in ``DIR/cache`` of ``--checkpoint``;
* ``evaluate COHORT``: every stage (CAM, pseudo-mask, segmenter, combined) against a
  synthetic cohort's voxel truth (``--limit``: the first N subjects).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CommandError
from ..tables import check_files_exist
from ..tasks import Task, TrainSettings, option
from .outputs_file import FILES, read_slices, read_summary


class ICHTask(Task):
    name = "ich"
    title = "ICH"
    article = "an"
    help = ("intracranial haemorrhage on CT: predict, train, evaluate (weakly supervised: "
            "CAM, pseudo-masks, U-Net)")
    verb_help = {"predict": "segment haemorrhage on one head CT",
                 "train": "train from image-level labels, or fine-tune the classifier from a "
                          "reader's slice labels",
                 "evaluate": "score every stage on a synthetic cohort's truth"}
    modalities = ("CT",)
    head_modality = "CT"
    bundle_kinds = ("ich",)
    default_models = {"ich": "ich_weakseg_cam"}
    required_networks = ("segmenter",)
    output_files = FILES
    output_readers = {"summary": read_summary, "slices": read_slices}
    key_figures = {"present": ("summary", "present"), "volume_ml": ("summary", "volume_ml"),
                   "subtypes": ("summary", "subtypes"),
                   "scan_probability": ("summary", "scan_probability")}
    input_argument = ("ct", "non-contrast head CT in HU: NIfTI, NRRD or DICOM folder")
    cohort_argument = ("cohort", "a `lesion-suite synth ich` folder")
    steps_help = ("with --feedback only: fine-tune steps; the whole training takes "
                  "--classifier-steps and --segmenter-steps")
    evaluation_truth = "voxel labels of the cohort (evaluation only)"
    #: How a model can make its final mask: the segmenter's mask alone, or its union with
    #: the pseudo-mask that CAM + HU refinement give on the scan itself.
    combinations = ("segmenter", "segmenter_and_pseudo_mask")
    options = {
        "train": (option("--table", source=True,
                         help="weak-label CSV (scan, image, slice, any and the five subtypes; "
                              "see lesion_core.ich.data)"),
                  option("--synthetic", metavar="COHORT_DIR", source=True,
                         help="a `lesion-suite synth ich` folder (its image-level labels "
                              "only)"),
                  option("--validation", metavar="CSV_OR_DIR",
                         help="weak-label CSV or synthetic cohort whose labels set the "
                              "thresholds"),
                  option("--calibrate-seed-level", action="store_true",
                         help="with --validation: also set the segmenter's confident-seed "
                              "level from those labels (default: the shipped 0.98)"),
                  option("--classifier-steps", type=int,
                         help="classifier optimiser steps (default 300; 0 with --init: "
                              "keep that model's classifier, train the segmenter only)"),
                  option("--segmenter-steps", type=int,
                         help="segmenter optimiser steps (default 300)"),
                  option("--labels", choices=("auto", "slice", "scan"), default="auto",
                         help="which labels train the classifier: scan = multiple-instance "
                              "learning from scan labels only (default %(default)s)"),
                  option("--combination", choices=combinations,
                         help="how the final mask is made (default: the measured best, "
                              "docs/ich.md)"),
                  option("--self-training", type=int, default=0, metavar="ROUNDS",
                         help="rounds of segmenter self-training on its own grown output, "
                              "each --segmenter-steps long (default %(default)s)"),
                  option("--cam-layer-stage", type=int, metavar="K",
                         help="make the CAMs by LayerCAM of classifier encoder stage K (2: "
                              "8 mm cells) instead of Grad-CAM of its last stage (16 mm); "
                              "default: the --init model's CAM, else Grad-CAM")),
        "evaluate": (option("--limit", type=int, help="only the first N subjects"),),
    }

    def model_from_bundle(self, loaded):
        from .model import model_from_bundle

        return model_from_bundle(loaded)

    # ----------------------------------------------------------------- predict
    def read_input(self, path, series: str | None = None, **options: Any):
        """The CT, checked (an MR, a scout, a CT not in HU fail at once, in one line);
        ``series``: the SeriesInstanceUID in a DICOM folder of several."""
        from ..io import read_volume
        from .preprocess import check_ct

        return check_ct(read_volume(path, series_uid=series))

    def brain_volume(self, prediction):
        return prediction.intracranial_ml, "intracranial"

    def predict(self, inputs, model, progress=None, precision: str = "auto", **options: Any):
        from .predict import predict_ich

        return predict_ich(inputs, model, progress=progress, precision=precision)

    def write_outputs(self, prediction, folder, image_path=None, **options: Any):
        from .predict import write_prediction

        return write_prediction(prediction, folder, image_path)

    def prediction_lines(self, prediction, model, image_path: str) -> list[str]:
        return [f"{image_path}: model {model.model_id} {model.version}",
                f"haemorrhage {'present' if prediction.present else 'absent'} (scan "
                f"probability {prediction.scan_probability:.2f}); subtypes: "
                f"{', '.join(prediction.subtypes) or '-'}",
                f"volume {prediction.volume_ml:.2f} mL in {len(prediction.components)} "
                "component(s)" + "".join(f"; {k} {v:.2f} mL" for k, v in
                                         prediction.volume_ml_by_subtype.items() if v)
                + f"; {int(prediction.slice_present.sum())} slice(s) positive"]

    # ---------------------------------------------------------------- evaluate
    def read_cohort(self, source, **options: Any) -> list:
        from .evaluate import read_cohort

        return read_cohort(source)

    def evaluate(self, model, source, progress=None, precision: str = "auto",
                 limit: int | None = None, **options: Any):
        from .evaluate import evaluate_cohort

        return evaluate_cohort(model, source, progress, limit=limit, precision=precision)

    def summary_lines(self, report) -> list[str]:
        from .evaluate import summary_lines

        return summary_lines(report.summary)

    # ------------------------------------------------------------------- train
    def check_training(self, settings: TrainSettings, feedback: str | None = None,
                       init: str | None = None, classifier_steps: int | None = None,
                       segmenter_steps: int | None = None, **options: Any) -> None:
        if feedback:
            return
        if settings.steps is not None:
            raise CommandError("--steps sets the fine-tune steps (with --feedback) only",
                               "use --classifier-steps and --segmenter-steps")
        if options.get("self_training", 0) < 0:
            raise CommandError("--self-training must be 0 or more rounds", "give 0, 1, 2 ...")
        from .config import ClassifierConfig

        stage, stages = options.get("cam_layer_stage"), len(ClassifierConfig().channels)
        if stage is not None and not 1 <= stage <= stages:
            raise CommandError(f"--cam-layer-stage {stage} is not an encoder stage",
                               f"give a stage from 1 to {stages} (2 for 8 mm cells)")
        if segmenter_steps is not None and segmenter_steps < 1:
            raise CommandError("--segmenter-steps must be positive", "give at least 1 step")
        if classifier_steps is not None and classifier_steps < (0 if init else 1):
            raise CommandError("--classifier-steps must be positive" + (
                "" if init else " (0, keeping a classifier, needs --init MODEL)"),
                "give at least 1 step" + ("" if init else ", or --init with 0"))

    def training_data(self, settings: TrainSettings, table: str | None = None,
                      synthetic: str | None = None, validation: str | None = None,
                      **options: Any) -> dict:
        """Weak-label scans (and validation scans) whose images exist."""
        source = table or synthetic
        scans = _weak_scans(source, "--synthetic" if synthetic else "--table")
        checked = _weak_scans(validation, "--validation") if validation else []
        check_files_exist([s.image for s in list(scans) + list(checked)], source)
        # Folder names only: a model card must not carry the machine's paths.
        note = {"data": f"{'synthetic cohort' if synthetic else 'table'} {Path(source).name} "
                        f"({len(scans)} scans)",
                "validation": f"{Path(validation).name} ({len(checked)} scans)"
                if validation else None}
        return {"scans": scans, "validation": checked, "note": note}

    def fit(self, data: dict, settings: TrainSettings, progress=None, init=None,
            classifier_steps: int | None = None, segmenter_steps: int | None = None,
            labels: str = "auto", combination: str | None = None, self_training: int = 0,
            cam_layer_stage: int | None = None, calibrate_seed_level: bool = False,
            **options: Any):
        from .config import ClassifierTrainConfig, ICHConfig, SegmenterTrainConfig, TrainConfig
        from .fit import DEFAULT_COMBINATION, fit_ich

        train_config = TrainConfig(
            replace(ClassifierTrainConfig(), labels=labels, optim=settings.optim(
                ClassifierTrainConfig().optim, classifier_steps)),
            replace(SegmenterTrainConfig(), self_training_rounds=self_training,
                    optim=settings.optim(SegmenterTrainConfig().optim, segmenter_steps)))
        note, config = dict(data["note"]), ICHConfig()
        if init is not None:
            # What its classifier reads and how its CAM is made come with it; and the card
            # must still say how that classifier was trained.
            config = replace(config, windows=init.config.windows,
                             classifier=init.config.classifier, cam=init.config.cam)
            before = getattr(init.metadata, "training", None) or {}
            note["classifier_from"] = f"{init.model_id} {init.version}"
            note["classifier_from_training"] = {
                k: before.get(k) for k in ("classifier", "data", "subjects", "seed")}
        if cam_layer_stage is not None:
            config = replace(config, cam=replace(config.cam, layer_stage=cam_layer_stage))
        return fit_ich(data["scans"], data["validation"], config, train_config,
                       combination or DEFAULT_COMBINATION, progress, settings.checkpoint,
                       _cache(settings), note, None if init is None else init.classifier,
                       calibrate_seed_level)

    def finetune(self, model, store, settings: TrainSettings, progress=None,
                 **options: Any):
        from .finetune import FINETUNE, finetune_ich

        return finetune_ich(model, store, settings.optim(FINETUNE.optim), progress,
                            settings.checkpoint)

    def training_line(self, report: dict) -> str:
        if "labelled_slices" in report:
            return (f"the classifier of {report['finetuned_from']} fine-tuned on "
                    f"{report['labelled_slices']} labelled slices of {report['scans']} scans "
                    "(segmenter kept)")
        auc = (report.get("calibration") or {}).get("slice_auc")
        return (f"{report['subjects']} scans, {report['pseudo_masks_non_empty']} non-empty "
                f"pseudo-masks, {report['seconds']:.0f} s"
                + (f"; validation slice AUC {auc:.3f}" if auc else ""))


def _cache(settings: TrainSettings) -> Path | None:
    """``--cache``, by default the ``cache`` subfolder of ``--checkpoint``."""
    if settings.cache is not None:
        return settings.cache
    return settings.checkpoint / "cache" if settings.checkpoint is not None else None


def _weak_scans(path: str, option_name: str):
    """Weak-label scans of a CSV or a synthetic cohort folder (its labels only)."""
    from .data import read_weak_table, table_from_synthetic_cohort
    from .evaluate import read_cohort

    if Path(path).is_dir():
        read_cohort(path)  # one clear error when the folder is not a cohort
        return table_from_synthetic_cohort(path)
    if option_name == "--synthetic":
        raise CommandError("--synthetic needs a cohort folder", "give the folder written "
                           "by `lesion-suite synth ich --out DIR`", path)
    return read_weak_table(path)


TASK = ICHTask()

"""Cerebral microbleeds behind the task contract: the three-stage detector (candidate
U-Net, distilled discriminator, clean-up) on SWI / T2*-GRE.

``TASK`` is what :mod:`lesion_core.tasks` registers. Its options:

* ``predict IMAGE``: ``--sequence`` (SWI or T2star), ``--allow-modality-mismatch`` (run a
  model on a sequence it was not trained on), ``--teacher`` (also the teacher's
  probability of each candidate);
* ``train``: all three stages from labelled cohort tables (``--table``, with
  ``--validation`` for the thresholds; ``--init`` goes on training its U-Net), or a
  fine-tune of stage 2 (and stage 1 with ``--stage1``) from a reader's decisions
  (``--feedback``); the shared ``--steps``/``--lr``/``--batch-size`` are stage 1's (or the
  fine-tune's), the teacher and student keep their own learning rate and batch size and
  take their steps from ``--teacher-steps`` / ``--student-steps``, stage 1's hard-example
  fine-tune from ``--hard-steps``; seed, device, precision
  and checkpoints (one subfolder per network) apply to every network;
* ``evaluate TABLE``: detection figures of a model per stage on a cohort's truth.
"""

from __future__ import annotations

from typing import Any

from ..errors import CommandError
from ..tasks import Task, TrainSettings, option
from .candidates_file import FILES, read_candidates

SEQUENCES = ("SWI", "T2star")


def _cohort_name(table) -> str:
    """A cohort table as the model card names it: its folder and file name, never the
    machine's path to it (a shipped card must not carry where it was trained)."""
    from pathlib import Path

    path = Path(table)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _widths(text: str) -> tuple[int, ...]:
    """``--student-channels`` as a tuple of positive widths (``"16,32"`` -> ``(16, 32)``),
    checked by the one rule of a student's widths (:func:`.discriminator.student_args`)."""
    import argparse

    from .discriminator import student_args

    try:
        widths = tuple(int(part) for part in text.split(","))
        student_args(widths)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 1-4 positive widths separated by commas (e.g. 16,32)") from None
    return widths


class CMBTask(Task):
    name = "cmb"
    title = "CMB"
    help = ("cerebral microbleeds: predict, train, evaluate (U-Net candidates, distilled "
            "discriminator, clean-up)")
    verb_help = {"predict": "detect microbleeds on one SWI / T2* image",
                 "train": "train the three stages, or fine-tune from a reader's decisions",
                 "evaluate": "score a model on a cohort's truth"}
    modalities = SEQUENCES
    head_modality = "MR"
    bundle_kinds = ("cmb",)
    default_models = {"cmb": "cmb_shiva_distilled"}
    required_networks = ("stage1", "student")
    output_files = FILES
    output_readers = {"json": read_candidates}
    key_figures = {"cmb_count": ("json", "count")}
    input_argument = ("image", "SWI or T2*-GRE magnitude: NIfTI, NRRD or DICOM folder")
    cohort_argument = ("table", "cohort table (cmb_labels.csv)")
    steps_help = "stage 1 steps (--table) or fine-tune steps (--feedback)"
    evaluation_truth = "microbleed label maps of the cohort (evaluation only)"
    options = {
        "predict": (option("--sequence", choices=SEQUENCES, default="SWI",
                           help="what the image is (default %(default)s)"),
                    option("--allow-modality-mismatch", action="store_true",
                           help="run a model on a sequence it was not trained on"),
                    option("--teacher", action="store_true",
                           help="also report the teacher's probability of each candidate")),
        "train": (option("--table", action="append", source=True,
                         help="cohort table (cmb_labels.csv of `synth cmb`); repeatable"),
                  option("--validation", action="append",
                         help="cohort table for the thresholds (with --table); repeatable"),
                  option("--sequence", choices=SEQUENCES + ("all",), default="all",
                         help="with --table: train on this sequence's images (default: every "
                              "sequence the tables hold; the model records which)"),
                  option("--stage1", action="store_true",
                         help="with --feedback: fine-tune the candidate U-Net too"),
                  option("--hard-steps", type=int, metavar="N",
                         help="with --table: stage 1 hard-example fine-tune steps after the "
                              "main run (bleeds it misses, places it fools; default: the "
                              "training config's)"),
                  option("--teacher-steps", type=int, metavar="N",
                         help="with --table: teacher steps (default: the training config's)"),
                  option("--student-steps", type=int, metavar="N",
                         help="with --table: student distillation steps (default: the "
                              "training config's)"),
                  option("--student-channels", type=_widths, metavar="W,W",
                         help="with --table: widths of the student's strided stages, e.g. "
                              "16,32 (default: 16,32,64)")),
        "evaluate": (option("--sequence", choices=SEQUENCES, default="SWI",
                            help="the images of the table to run on (default %(default)s)"),),
    }

    def model_from_bundle(self, loaded):
        from .model import model_from_bundle

        return model_from_bundle(loaded)

    # ----------------------------------------------------------------- predict
    def read_input(self, path, series: str | None = None, **options: Any):
        """The SWI or T2*-GRE image, checked as MR (``series``: the SeriesInstanceUID in a
        DICOM folder of several)."""
        from ..io import read_volume
        from ..validation import Modality, validate_image

        return validate_image(read_volume(path, series_uid=series), Modality.MR)

    def check_model(self, model, path, sequence: str = "SWI",
                    allow_modality_mismatch: bool = False, **options: Any) -> None:
        model.check_sequence(sequence, allow_modality_mismatch, path)

    def predict(self, inputs, model, progress=None, precision: str = "auto",
                sequence: str = "SWI", allow_modality_mismatch: bool = False,
                teacher: bool = False, **options: Any):
        from .predict import predict_cmb

        return predict_cmb(inputs, model, sequence, allow_modality_mismatch,
                           with_teacher=teacher, progress=progress, precision=precision)

    def write_outputs(self, prediction, folder, image_path=None, **options: Any):
        from .predict import write_prediction

        return write_prediction(prediction, folder, image_path)

    def prediction_lines(self, prediction, model, image_path: str) -> list[str]:
        dropped: dict[str, int] = {}
        for c in prediction.candidates:
            if not c.kept:
                dropped[c.dropped_by] = dropped.get(c.dropped_by, 0) + 1
        lines = [f"{image_path}: model {model.model_id} {model.version} on "
                 f"{prediction.sequence}",
                 f"{len(prediction.kept)} microbleeds kept of {len(prediction.candidates)} "
                 "candidates" + "".join(f"; {n} dropped by {stage}"
                                        for stage, n in sorted(dropped.items()))]
        lines += [f"  #{c.id} at RAS ({c.centre_ras[0]:.1f}, {c.centre_ras[1]:.1f}, "
                  f"{c.centre_ras[2]:.1f}) mm, {c.diameter_mm:.1f} mm, {c.location} {c.region}"
                  for c in prediction.kept]
        return lines

    # ---------------------------------------------------------------- evaluate
    def read_cohort(self, source, sequence: str = "SWI", **options: Any) -> list:
        from .fit import read_cohort

        return read_cohort(source, sequence)

    def evaluate(self, model, source, progress=None, precision: str = "auto",
                 sequence: str = "SWI", **options: Any):
        from .evaluate import evaluate_cohort

        return evaluate_cohort(model, self.read_cohort(source, sequence), progress=progress,
                               precision=precision, cohort=str(source))

    def summary_lines(self, report) -> list[str]:
        from .evaluate import summary_lines

        return summary_lines(report.summary)

    # ------------------------------------------------------------------- train
    def check_training(self, settings: TrainSettings, feedback: str | None = None,
                       table: list | None = None, validation: list | None = None,
                       **options: Any) -> None:
        if table and not validation:
            raise CommandError("--table needs --validation (images that set the thresholds)",
                               "add --validation TABLE with other subjects than --table")

    def training_data(self, settings: TrainSettings, table: list | None = None,
                      validation: list | None = None, sequence: str = "all",
                      **options: Any) -> dict:
        from .fit import read_cohorts

        sequences = SEQUENCES if sequence == "all" else (sequence,)
        return {"train": read_cohorts(table, sequences),
                "validation": read_cohorts(validation, sequences),
                "tables": [_cohort_name(t) for t in table],
                "validation_tables": [_cohort_name(t) for t in validation]}

    def fit(self, data: dict, settings: TrainSettings, progress=None, init=None,
            teacher_steps: int | None = None, student_steps: int | None = None,
            student_channels: tuple[int, ...] | None = None,
            hard_steps: int | None = None, **options: Any):
        from .fit import fit_cmb

        model, report = fit_cmb(data["train"], data["validation"],
                                train_config(settings, teacher_steps, student_steps,
                                             student_channels, hard_steps),
                                settings.cache, progress,
                                init_stage1=init.stage1 if init is not None else None,
                                checkpoint=settings.checkpoint)
        report.update({"tables": data["tables"], "validation": data["validation_tables"],
                       "stage1_initialised_from": None if init is None else
                       f"{init.model_id} {init.version}"})
        return model, report

    def finetune(self, model, store, settings: TrainSettings, progress=None,
                 stage1: bool = False, **options: Any):
        from .finetune import STAGE1_FINETUNE, STUDENT_FINETUNE, finetune_cmb

        return finetune_cmb(model, store, stage1=stage1,
                            student_optim=settings.optim(STUDENT_FINETUNE),
                            stage1_optim=settings.optim(STAGE1_FINETUNE), progress=progress,
                            checkpoint=settings.checkpoint)

    def training_line(self, report: dict) -> str:
        if "decisions" in report:
            return (f"fine-tuned from {report['finetuned_from']} on {report['decisions']} "
                    f"decisions from {report['cases']} cases")
        line = (f"{report['training_images']} training and {report['validation_images']} "
                f"validation images, {report['stage2_examples']} stage 2 examples "
                f"({report['stage2_positives']} bleeds)")
        calibration = report.get("calibration") or {}
        if "after_stage2" in calibration:
            after = calibration["after_stage2"]
            line += (f"; thresholds stage 1 {calibration['stage1_threshold']:.2f}, stage 2 "
                     f"{calibration['stage2_threshold']:.2f}: validation sensitivity "
                     f"{after['sensitivity']:.2f}, FPavg {after['fp_avg']:.2f}")
        return line

def train_config(settings: TrainSettings, teacher_steps: int | None = None,
                 student_steps: int | None = None,
                 student_channels: tuple[int, ...] | None = None,
                 hard_steps: int | None = None):
    """The :class:`~lesion_core.cmb.fit.CMBTrainConfig` of a training from tables: stage 1
    takes every shared setting; its hard-example fine-tune, the teacher and the student
    keep their own learning rate and batch size, take their steps from ``hard_steps`` /
    ``teacher_steps`` / ``student_steps`` and the rest (seed, device, precision,
    checkpoint interval) from ``settings``;
    ``student_channels``: the student's stage widths (default: the config's)."""
    from dataclasses import replace

    from .fit import CMBTrainConfig

    config = CMBTrainConfig()
    stage1 = settings.optim(config.stage1_train.optim)
    stage2 = {}
    for name, steps in (("stage1_hard", hard_steps), ("teacher", teacher_steps),
                        ("student", student_steps)):
        part = getattr(config, name)
        stage2[name] = replace(part, optim=replace(part.optim, **settings.shared(),
                                                   steps=steps or part.optim.steps))
    if student_channels:
        stage2["student_channels"] = tuple(student_channels)
    return replace(config, stage1_train=replace(config.stage1_train, optim=stage1),
                   seed=stage1.seed, **stage2)


TASK = CMBTask()

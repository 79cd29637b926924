"""``lesion-suite cmb {predict,train,evaluate}``: cerebral microbleed detection.

* ``predict IMAGE``: the three stages on one SWI / T2*-GRE magnitude image; writes the
  label map of the kept microbleeds, every candidate's label map, and the candidates as
  JSON and CSV (probability per stage, the stage that dropped it and why, MARS location);
  the Slicer module runs this command in a child process;
* ``train``: all three stages from a labelled cohort table (``--table``, with
  ``--validation`` for the thresholds), or a fine-tune of stage 2 (and stage 1 with
  ``--stage1``) from a reader's decisions in a feedback store (``--feedback``); the
  optimisation options are the shared ones (``--steps``/``--lr``/``--batch-size`` are
  stage 1's, or the fine-tune's; ``--seed``, ``--device``, ``--precision`` and
  ``--checkpoint DIR``, one subfolder per network, apply to every network);
* ``evaluate COHORT``: detection figures of a model on a cohort's truth.

Everything runs through :mod:`lesion_core.cmb`; user errors are one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import LesionSuiteError
from .common import (model_options, optim_config, refuse_saved_model, shipped_or_given,
                     training_options)
from .progress_bar import ProgressBar


class CMBCommandError(LesionSuiteError):
    """Options of a ``cmb`` command that do not fit together."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cmb", help="cerebral microbleeds: predict, train, evaluate "
                                        "(U-Net candidates, distilled discriminator, clean-up)")
    commands = parser.add_subparsers(dest="cmb_command", metavar="ACTION", required=True)

    p = commands.add_parser("predict", help="detect microbleeds on one SWI / T2* image")
    p.add_argument("image", help="SWI or T2*-GRE magnitude: NIfTI, NRRD or DICOM folder")
    model_options(p)
    p.add_argument("--sequence", choices=("SWI", "T2star"), default="SWI",
                   help="what the image is (default %(default)s)")
    p.add_argument("--allow-modality-mismatch", action="store_true",
                   help="run a model on a sequence it was not trained on")
    p.add_argument("--teacher", action="store_true",
                   help="also report the teacher's probability of each candidate")
    p.add_argument("--out", default="cmb_output", help="output folder (default: %(default)s)")
    p.set_defaults(run=run_predict)

    t = commands.add_parser("train", help="train the three stages, or fine-tune from a "
                                          "reader's decisions")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", action="append",
                        help="cohort table (cmb_labels.csv of `synth cmb`); repeatable")
    source.add_argument("--feedback", metavar="STORE_DIR",
                        help="a feedback store with accept/reject/add decisions: fine-tunes "
                             "--init or the shipped model")
    t.add_argument("--validation", action="append",
                   help="cohort table for the thresholds (with --table); repeatable")
    t.add_argument("--sequence", choices=("SWI", "T2star", "all"), default="all",
                   help="with --table: train on this sequence's images (default: every "
                        "sequence the tables hold; the model records which)")
    t.add_argument("--init", metavar="MODEL_DIR",
                   help="model to fine-tune (--feedback), or whose U-Net training goes on "
                        "(--table)")
    t.add_argument("--stage1", action="store_true",
                   help="with --feedback: fine-tune the candidate U-Net too")
    t.add_argument("--teacher-steps", type=int, metavar="N",
                   help="with --table: teacher steps (default: the training config's)")
    t.add_argument("--student-steps", type=int, metavar="N",
                   help="with --table: student distillation steps (default: the training "
                        "config's)")
    t.add_argument("--cache", metavar="DIR",
                   help="with --table: keep the prepared training arrays here (default: "
                        "a folder in --checkpoint, else none)")
    t.add_argument("--out", required=True, help="the new model folder")
    t.add_argument("--overwrite", action="store_true", help="replace a model in --out")
    training_options(t, "stage 1 steps (--table) or fine-tune steps (--feedback)")
    t.set_defaults(run=run_train)

    e = commands.add_parser("evaluate", help="score a model on a cohort's truth")
    e.add_argument("table", help="cohort table (cmb_labels.csv)")
    model_options(e)
    e.add_argument("--sequence", choices=("SWI", "T2star"), default="SWI")
    e.add_argument("--json", metavar="OUT", help="also write per-case results and the summary")
    e.set_defaults(run=run_evaluate)


def load_model(folder: str | None, device: str = "auto"):
    """The model to run (the shipped one by default), with a clear error when absent."""
    from ..cmb.model import default_model_folder, load_cmb_model

    return shipped_or_given(folder, default_model_folder(), load_cmb_model, device, "CMB",
                            "lesion-suite cmb train")


def run_predict(args: argparse.Namespace) -> int:
    from ..io import read_volume
    from ..validation import Modality, validate_image

    image = validate_image(read_volume(args.image), Modality.MR)
    model = load_model(args.model, args.device)
    model.check_sequence(args.sequence, args.allow_modality_mismatch, args.image)
    from ..cmb.predict import predict_cmb, write_prediction

    with ProgressBar(args, "cmb predict") as progress:
        prediction = predict_cmb(image, model, args.sequence, args.allow_modality_mismatch,
                                 with_teacher=args.teacher, progress=progress,
                                 precision=args.precision)
        paths = write_prediction(prediction, args.out, str(Path(args.image).resolve()))
    dropped = {}
    for c in prediction.candidates:
        if not c.kept:
            dropped[c.dropped_by] = dropped.get(c.dropped_by, 0) + 1
    print(f"{args.image}: model {model.model_id} {model.version} on {args.sequence}")
    print(f"{len(prediction.kept)} microbleeds kept of {len(prediction.candidates)} candidates"
          + "".join(f"; {n} dropped by {stage}" for stage, n in sorted(dropped.items())))
    for c in prediction.kept:
        print(f"  #{c.id} at RAS ({c.centre_ras[0]:.1f}, {c.centre_ras[1]:.1f}, "
              f"{c.centre_ras[2]:.1f}) mm, {c.diameter_mm:.1f} mm, {c.location} {c.region}")
    print("files: " + ", ".join(str(p) for p in paths.values()))
    return 0


def run_train(args: argparse.Namespace) -> int:
    refuse_saved_model(args.out, args.overwrite, CMBCommandError)
    if args.table:
        return _train_all(args)
    from ..cmb.finetune import STAGE1_FINETUNE, STUDENT_FINETUNE, finetune_from_feedback

    model = load_model(args.init, "cpu")
    with ProgressBar(args, "cmb train") as progress:
        meta, report = finetune_from_feedback(
            model, args.feedback, args.out, stage1=args.stage1,
            student_optim=optim_config(args, STUDENT_FINETUNE),
            stage1_optim=optim_config(args, STAGE1_FINETUNE), overwrite=args.overwrite,
            progress=progress, checkpoint=args.checkpoint)
    print(f"fine-tuned {model.model_id} on {report['decisions']} decisions from "
          f"{report['cases']} cases -> {args.out} (version {meta.version})")
    return 0


def train_config(args: argparse.Namespace):
    """The :class:`~lesion_core.cmb.fit.CMBTrainConfig` of ``cmb train --table``: stage 1
    takes every optimisation option; the teacher and the student keep their own learning
    rate and batch size, take their steps from ``--teacher-steps`` / ``--student-steps``
    and the rest (seed, device, precision, checkpoint interval) from the shared options."""
    from dataclasses import replace

    from ..cmb.fit import CMBTrainConfig

    config = CMBTrainConfig()
    stage1 = optim_config(args, config.stage1_train.optim)
    shared = {"seed": stage1.seed, "device": stage1.device, "precision": stage1.precision,
              "checkpoint_every_s": stage1.checkpoint_every_s}
    stage2 = {}
    for name, steps in (("teacher", args.teacher_steps), ("student", args.student_steps)):
        part = getattr(config, name)
        stage2[name] = replace(part, optim=replace(part.optim, **shared,
                                                   steps=steps or part.optim.steps))
    return replace(config, stage1_train=replace(config.stage1_train, optim=stage1),
                   seed=stage1.seed, **stage2)


def _train_all(args: argparse.Namespace) -> int:
    from ..cmb.fit import fit_cmb, read_cohorts
    from ..cmb.model import SEQUENCES, save_cmb_model

    if not args.validation:
        raise CMBCommandError("--table needs --validation (images that set the thresholds)",
                              "add --validation TABLE with other subjects than --table")
    sequences = SEQUENCES if args.sequence == "all" else (args.sequence,)
    train, validation = read_cohorts(args.table, sequences), read_cohorts(args.validation, sequences)
    init = load_model(args.init, "cpu").stage1 if args.init else None
    config = train_config(args)
    with ProgressBar(args, "cmb train") as progress:
        networks, model_config, report = fit_cmb(train, validation, config, args.cache, progress,
                                                 init_stage1=init, checkpoint=args.checkpoint)
    meta = save_cmb_model(args.out, networks["stage1"], networks["student"], networks["teacher"],
                          model_config, description="SHIVA-CMB-style candidate U-Net, student "
                          "discriminator distilled from a teacher, morphological clean-up",
                          training={**report, "tables": [str(t) for t in args.table],
                                    "validation": [str(t) for t in args.validation],
                                    "stage1_initialised_from": args.init},
                          overwrite=args.overwrite)
    print(json.dumps(report["calibration"], indent=1))
    print(f"saved {meta.name} to {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..cmb.evaluate import evaluate_cohort
    from ..cmb.fit import read_cohort

    rows = read_cohort(args.table, args.sequence)
    model = load_model(args.model, args.device)
    with ProgressBar(args, "cmb evaluate") as progress:
        result = evaluate_cohort(model, rows, progress=progress, precision=args.precision)
    def number(value) -> str:  # undefined ratios (no CMB, no detection) are None
        return "n/a" if value is None else f"{value:.2f}"

    for stage, figures in result["summary"].items():
        print(f"{stage:>16}: sensitivity {number(figures['sensitivity'])}  precision "
              f"{number(figures['precision'])}  FPavg {number(figures['fp_avg'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0

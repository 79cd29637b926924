"""``lesion-suite ich {predict,train,evaluate}``: haemorrhage on non-contrast CT (ICHWeakSeg).

* ``predict CT``: per-slice probabilities and subtypes, the class activation map, the
  segmentation (subtype per component) and volumes in mL; writes the four files of
  :mod:`lesion_core.ich.outputs_file`; the Slicer module runs this in a child process;
* ``train``: the whole weakly supervised pipeline from image-level labels (``--table``
  weak-label CSV, or ``--synthetic`` cohort folder: its labels only), thresholds
  calibrated on ``--validation`` labels; or (``--feedback``) a fine-tune of the classifier
  on a reader's slice labels, the segmenter kept; ``--checkpoint DIR`` makes either
  resumable (``DIR/classifier``, ``DIR/segmenter``), ``--cache DIR`` keeps the
  preprocessed stacks;
* ``evaluate COHORT``: every stage (CAM, pseudo-mask, segmenter, combined) against a
  synthetic cohort's voxel truth.

Everything runs through :mod:`lesion_core.ich`; user errors are one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import LesionSuiteError
from .common import (model_options, optim_config, refuse_saved_model, shipped_or_given,
                     training_options)
from .progress_bar import ProgressBar


class ICHCommandError(LesionSuiteError):
    """Options of an ``ich`` command that do not fit together."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ich", help="intracranial haemorrhage on CT: predict, train, "
                                        "evaluate (weakly supervised: CAM, pseudo-masks, U-Net)")
    commands = parser.add_subparsers(dest="ich_command", metavar="ACTION", required=True)

    p = commands.add_parser("predict", help="segment haemorrhage on one head CT")
    p.add_argument("ct", help="non-contrast head CT in HU: NIfTI, NRRD or DICOM folder")
    model_options(p)
    p.add_argument("--out", default="ich_output", help="output folder (default: %(default)s)")
    p.set_defaults(run=run_predict)

    t = commands.add_parser("train", help="train from image-level labels, or fine-tune the "
                                          "classifier from a reader's slice labels")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="weak-label CSV (scan, image, slice, any and the "
                                        "five subtypes; see lesion_core.ich.data)")
    source.add_argument("--synthetic", metavar="COHORT_DIR",
                        help="a `lesion-suite synth ich` folder (its image-level labels only)")
    source.add_argument("--feedback", metavar="STORE_DIR",
                        help="a feedback store with a reader's slice labels: fine-tunes the "
                             "classifier of --init or the shipped model")
    t.add_argument("--validation", metavar="CSV_OR_DIR",
                   help="weak-label CSV or synthetic cohort whose labels set the thresholds")
    t.add_argument("--init", metavar="MODEL_DIR", help="model to fine-tune (with --feedback)")
    t.add_argument("--classifier-steps", type=int,
                   help="classifier optimiser steps (default 300)")
    t.add_argument("--segmenter-steps", type=int, help="segmenter optimiser steps (default 300)")
    t.add_argument("--labels", choices=("auto", "slice", "scan"), default="auto",
                   help="which labels train the classifier: scan = multiple-instance "
                        "learning from scan labels only (default %(default)s)")
    t.add_argument("--combination", choices=("segmenter", "segmenter_and_pseudo_mask"),
                   help="how the final mask is made (default: the measured best, docs/ich.md)")
    t.add_argument("--cache", metavar="DIR",
                   help="keep the preprocessed CT slice stacks here, so a rerun reads no CT "
                        "again (default: DIR/cache of --checkpoint, else none)")
    t.add_argument("--out", required=True, help="the new model folder")
    t.add_argument("--overwrite", action="store_true", help="replace a model in --out")
    training_options(t, steps_help="with --feedback only: fine-tune steps; the whole "
                                   "training takes --classifier-steps and --segmenter-steps")
    t.set_defaults(run=run_train)

    e = commands.add_parser("evaluate", help="score every stage on a synthetic cohort's truth")
    e.add_argument("cohort", help="a `lesion-suite synth ich` folder")
    model_options(e)
    e.add_argument("--limit", type=int, help="only the first N subjects")
    e.add_argument("--json", metavar="OUT", help="also write per-case results and the summary")
    e.add_argument("--record", action="store_true",
                   help="store the summary in the model's metadata (evaluation entry)")
    e.set_defaults(run=run_evaluate)


def load_model(folder: str | None, device: str = "auto"):
    """The model to run (the shipped one by default), with a clear error when absent."""
    from ..ich.model import default_model_folder, load_ich_model

    return shipped_or_given(folder, default_model_folder(), load_ich_model, device, "ICH",
                            "lesion-suite ich train")


def run_predict(args: argparse.Namespace) -> int:
    from ..io import read_volume
    from ..ich.preprocess import check_ct

    # The CT is checked before torch is imported and the model loaded: a wrong file
    # (an MR, a scout, a CT not in HU) fails at once, in one line.
    ct = check_ct(read_volume(args.ct))
    model = load_model(args.model, args.device)
    from ..ich.predict import predict_ich, write_prediction

    with ProgressBar(args, "ich predict") as progress:
        prediction = predict_ich(ct, model, progress=progress, precision=args.precision)
        paths = write_prediction(prediction, args.out, str(Path(args.ct).resolve()))
    print(f"{args.ct}: model {model.model_id} {model.version}")
    print(f"haemorrhage {'present' if prediction.present else 'absent'} (scan probability "
          f"{prediction.scan_probability:.2f}); subtypes: {', '.join(prediction.subtypes) or '-'}")
    print(f"volume {prediction.volume_ml:.2f} mL in {len(prediction.components)} component(s)"
          + "".join(f"; {k} {v:.2f} mL" for k, v in prediction.volume_ml_by_subtype.items() if v)
          + f"; {int(prediction.slice_present.sum())} slice(s) positive")
    print("files: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _weak_scans(path: str, option: str):
    """Weak-label scans of a CSV or a synthetic cohort folder (its labels only)."""
    from ..ich.data import read_weak_table, table_from_synthetic_cohort
    from ..ich.evaluate import read_cohort

    if Path(path).is_dir():
        read_cohort(path)  # one clear error when the folder is not a cohort
        return table_from_synthetic_cohort(path)
    if option == "--synthetic":
        raise ICHCommandError("--synthetic needs a cohort folder", "give the folder written "
                              "by `lesion-suite synth ich --out DIR`", path)
    return read_weak_table(path)


def _checkpoint_and_cache(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``--checkpoint`` and ``--cache`` (default: the checkpoint's ``cache`` subfolder)."""
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    cache = Path(args.cache) if args.cache else (checkpoint / "cache" if checkpoint else None)
    return checkpoint, cache


def run_train(args: argparse.Namespace) -> int:
    refuse_saved_model(args.out, args.overwrite, ICHCommandError)
    if args.feedback:
        return _finetune(args)
    if args.steps is not None:
        raise ICHCommandError("--steps sets the fine-tune steps (with --feedback) only",
                              "use --classifier-steps and --segmenter-steps")
    if min(args.classifier_steps or 1, args.segmenter_steps or 1) < 1:
        raise ICHCommandError("the step counts must be positive", "give at least 1 step")
    return _train_all(args)


def _finetune(args: argparse.Namespace) -> int:
    from ..ich.finetune import FINETUNE, finetune_from_feedback

    model = load_model(args.init, "cpu")
    checkpoint, _ = _checkpoint_and_cache(args)
    with ProgressBar(args, "ich train") as progress:
        meta, report = finetune_from_feedback(model, args.feedback, args.out,
                                              optim_config(args, FINETUNE.optim),
                                              args.overwrite, progress, checkpoint)
    print(f"fine-tuned the classifier of {model.model_id} {model.version} on "
          f"{report['labelled_slices']} labelled slices of {report['scans']} scans -> "
          f"{args.out} (version {meta.version}; segmenter kept)")
    return 0


def _stage_config(args: argparse.Namespace, defaults, steps: int | None, **task):
    """A stage's train config: its defaults, the shared optimisation options (--lr and
    --batch-size apply to both stages) and its own step count."""
    from dataclasses import replace

    optim = optim_config(args, defaults.optim)
    return replace(defaults, optim=replace(optim, steps=steps or optim.steps), **task)


def _train_all(args: argparse.Namespace) -> int:
    from ..ich.config import ClassifierTrainConfig, ICHConfig, SegmenterTrainConfig, TrainConfig
    from ..ich.fit import DEFAULT_COMBINATION, fit_ich
    from ..ich.model import save_ich_model

    source = args.table or args.synthetic
    scans = _weak_scans(source, "--synthetic" if args.synthetic else "--table")
    validation = _weak_scans(args.validation, "--validation") if args.validation else []
    missing = [s.image for s in list(scans) + list(validation) if not Path(s.image).exists()]
    if missing:
        raise ICHCommandError(f"{missing[0]} does not exist" + (
            f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            "correct the image paths (relative paths are relative to the table's folder)",
            source)
    train_config = TrainConfig(
        _stage_config(args, ClassifierTrainConfig(), args.classifier_steps, labels=args.labels),
        _stage_config(args, SegmenterTrainConfig(), args.segmenter_steps))
    combination = args.combination or DEFAULT_COMBINATION
    checkpoint, cache = _checkpoint_and_cache(args)
    with ProgressBar(args, "ich train") as progress:
        model, report = fit_ich(scans, validation, ICHConfig(), train_config, combination,
                                progress, checkpoint, cache)
    # Folder names only: a model card must not carry the machine's paths.
    report.update({"data": f"{'synthetic cohort' if args.synthetic else 'table'} "
                           f"{Path(source).name} ({len(scans)} scans)",
                   "validation": f"{Path(args.validation).name} ({len(validation)} scans)"
                   if args.validation else None})
    meta = save_ich_model(args.out, model, description="ICHWeakSeg: slice classifier with a "
                          "bidirectional GRU (image-level labels), Grad-CAM refined in HU "
                          "into pseudo-masks, 2.5D U-Net trained on them", training=report,
                          overwrite=args.overwrite)
    calibration = report.get("calibration") or {}
    auc = calibration.get("slice_auc")
    print(f"saved {meta.name} {meta.version} to {args.out}: {report['subjects']} scans, "
          f"{report['pseudo_masks_non_empty']} non-empty pseudo-masks, "
          f"{report['seconds']:.0f} s" + (f"; validation slice AUC {auc:.3f}" if auc else ""))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..ich.evaluate import evaluate_cohort, read_cohort, summary_lines

    read_cohort(args.cohort)
    model = load_model(args.model, args.device)
    with ProgressBar(args, "ich evaluate") as progress:
        result = evaluate_cohort(model, args.cohort, progress, limit=args.limit,
                                 precision=args.precision)
    print(f"model {model.model_id} {model.version} on {len(result['cases'])} subjects of "
          f"{args.cohort}")
    print("\n".join(summary_lines(result["summary"])))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"per-case results: {args.json}")
    if args.record:
        from ..bundle import record_evaluation

        record_evaluation(model.metadata.folder, {
            "cohort": Path(args.cohort).name, "subjects": len(result["cases"]),
            "truth": "voxel labels of the cohort (evaluation only)",
            "precision": result["precision"], **result["summary"]})
        print(f"recorded in {model.metadata.folder}")
    return 0

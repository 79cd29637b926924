"""``lesion-suite wmh {predict,train,evaluate}``: WMH segmentation and ARWMC rating.

* ``predict IMAGE``: segment, rate and measure WMH on one FLAIR (or a 3D T1 with ``--t1``)
  and write the label map, activation map, region atlas, ratings CSV and summary JSON;
  ``--atlases DIR`` gives the subject's brain mask and atlases instead of registering
  (:func:`lesion_core.wmh.atlases.read_atlases`); the Slicer module runs this command in
  a child process;
* ``train``: a DualTasker from a ratings table, a synthetic cohort's ratings or a reader's
  ratings in a feedback store (fine-tuning a model); with ``--t1`` the T1 mode from a
  table of T1 images and thick-slice FLAIR labels; the shared optimisation options
  (``--steps``, ``--precision``, ``--checkpoint DIR``: rerunning resumes...) and
  ``--cache DIR`` (preprocessed subjects kept on disk);
* ``evaluate COHORT``: a model against the ground truth of a synthetic cohort.

Everything runs through :mod:`lesion_core.wmh` (the Slicer module calls the same
functions). Progress goes to stderr; user errors are one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import LesionSuiteError, ModelBundleError
from .common import (model_options, optim_config, refuse_saved_model, shipped_or_given,
                     training_options)
from .progress_bar import ProgressBar


class WMHCommandError(LesionSuiteError):
    """Options of a ``wmh`` command that do not fit together, or an unusable input folder."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("wmh", help="white-matter hyperintensities: predict, train, "
                                        "evaluate (WMH-DualTasker and the T1 mode)")
    commands = parser.add_subparsers(dest="wmh_command", metavar="ACTION", required=True)

    p = commands.add_parser("predict", help="segment and rate WMH on one image")
    p.add_argument("image", help="FLAIR (or 3D T1 with --t1): NIfTI, NRRD or DICOM folder")
    _model_options(p)
    p.add_argument("--out", default="wmh_output", help="output folder (default: %(default)s)")
    p.add_argument("--stem", default="wmh", help="output file name prefix (default: %(default)s)")
    p.add_argument("--atlases", metavar="DIR",
                   help="folder with brain.nii.gz, arwmc.nii.gz and zones.nii.gz (the "
                        "subject's brain mask and atlases, nearest neighbour onto the "
                        "image grid): registration is skipped")
    p.set_defaults(run=run_predict)

    t = commands.add_parser("train", help="train a model (DualTasker: from ARWMC ratings only)")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="ratings CSV (subject, image, total, per-region "
                                        "columns); with --t1: subject, image, thick_label")
    source.add_argument("--synthetic", metavar="COHORT_DIR",
                        help="a `lesion-suite synth wmh` folder (its ratings only)")
    source.add_argument("--feedback", metavar="STORE_DIR",
                        help="a feedback store with a reader's ARWMC ratings: fine-tunes "
                             "--init or the shipped model")
    t.add_argument("--out", required=True, help="the new model folder")
    t.add_argument("--init", metavar="MODEL_DIR", help="model to fine-tune (keeps its config)")
    t.add_argument("--t1", action="store_true", help="train the T1 mode (thick-slice labels)")
    t.add_argument("--config", metavar="JSON",
                   help="model configuration (the fields of DualTaskerConfig, as stored in a "
                        "model's metadata.json under extra.config); default: the standard one")
    t.add_argument("--cache", metavar="DIR",
                   help="keep the preprocessed training subjects here (a rerun reads them "
                        "instead of the images; default: none)")
    t.add_argument("--known-transform", action="store_true",
                   help="with --synthetic: take brain masks and atlases from the cohort's "
                        "known MNI transform instead of registering (faster; synthetic only)")
    t.add_argument("--overwrite", action="store_true", help="replace a model in --out")
    training_options(t)
    t.set_defaults(run=run_train)

    e = commands.add_parser("evaluate", help="score a model on a synthetic cohort's truth")
    e.add_argument("cohort", help="a `lesion-suite synth wmh` folder")
    _model_options(e)
    e.add_argument("--json", metavar="OUT", help="also write per-case results and the summary")
    e.add_argument("--known-transform", action="store_true",
                   help="use the cohort's known MNI transform instead of registration")
    e.set_defaults(run=run_evaluate)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--t1", action="store_true",
                        help="the T1 mode (a 3D T1 image; segmentation only, no rating)")
    model_options(parser)


def _load_model(folder: str | None, t1: bool, device: str, fix: str | None = None):
    """The model to run (``folder`` None: the shipped one of the mode); a model of the
    other mode than ``--t1`` asks for is refused (``fix``: what to do then, when the
    command's own advice differs)."""
    from ..wmh.model import default_model_folder, load_wmh_model

    model = shipped_or_given(folder, default_model_folder(t1),
                             lambda f, device: load_wmh_model(f, t1=t1, device=device),
                             device, f"{'T1' if t1 else 'FLAIR'} WMH", "lesion-suite wmh train")
    if model.is_t1 != t1:
        have, want = ("T1", "FLAIR") if model.is_t1 else ("FLAIR", "T1")
        raise ModelBundleError(f"this is a {have} model but the {want} mode was asked for",
                               fix or ("add --t1 for a T1 model" if model.is_t1 else
                                       "leave out --t1, or choose a T1 model"),
                               source=folder or model.metadata.folder)
    return model


# ------------------------------------------------------------------------ predict
def run_predict(args: argparse.Namespace) -> int:
    from ..io import read_volume
    from ..validation import Modality, validate_image
    from ..wmh.atlases import read_atlases

    # Input, atlases and model are checked before any progress is shown, so a mistake is
    # one line; image and atlases before torch is imported, so a wrong file fails at once.
    image = validate_image(read_volume(args.image), Modality.MR)
    atlases = read_atlases(args.atlases) if args.atlases else None
    from ..wmh.predict import predict, write_prediction

    model = _load_model(args.model, args.t1, args.device)
    with ProgressBar(args, "wmh predict") as progress:
        prediction = predict(image, model, atlases, progress=progress,
                             precision=args.precision)
        paths = write_prediction(prediction, args.out, stem=args.stem)
    total = prediction.total
    print(f"{args.image}: {model.modality} model {model.model_id} {model.version}")
    if total is not None:
        print(f"ARWMC total: {total} (0-30)")
    print(f"WMH volume: {prediction.lesion_ml:.2f} mL in a brain of "
          f"{prediction.brain_ml:.0f} mL ({prediction.seconds:.1f} s)")
    print("files: " + ", ".join(str(p) for p in paths.values()))
    return 0


# -------------------------------------------------------------------------- train
def _model_config(path: str | None):
    from ..wmh.config import DualTaskerConfig
    from ..wmh.model import config_from_dict

    if path is None:
        return DualTaskerConfig()
    try:
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and isinstance(data.get("extra"), dict) \
                and "config" in data["extra"]:
            data = data["extra"]["config"]      # a whole metadata.json works too
        return config_from_dict(data)
    except (OSError, ValueError, TypeError) as exc:
        raise WMHCommandError(f"not a usable model configuration ({exc})",
                              "give a JSON object of DualTaskerConfig fields", path) from exc


def _cohort_folder(folder: str) -> Path:
    from ..wmh.evaluate import COHORT_TABLE

    if not (Path(folder) / COHORT_TABLE).is_file():
        raise WMHCommandError(f"there is no {COHORT_TABLE}: not a synthetic WMH cohort",
                              "give a folder written by `lesion-suite synth wmh --out DIR`",
                              folder)
    return Path(folder)


def _check_files(paths, table: str) -> None:
    """Every image a training table names exists (checked before the long run starts)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WMHCommandError(f"{missing[0]}{more} does not exist",
                              "correct the paths in the table (relative paths are relative "
                              "to the table's folder)", table)


def _check_train_options(args: argparse.Namespace) -> None:
    if args.steps is not None and args.steps < 1:
        raise WMHCommandError(f"--steps {args.steps} is not a positive number",
                              "give at least 1 step")
    if args.known_transform and not args.synthetic:
        raise WMHCommandError("--known-transform needs --synthetic",
                              "leave it out for real images (they are registered)")
    if args.t1 and args.feedback:
        raise WMHCommandError("the T1 mode learns from thick-slice labels, not ratings",
                              "give --table with subject, image, thick_label columns")
    # Refused now rather than after the training run that would then fail to save.
    refuse_saved_model(args.out, args.overwrite, WMHCommandError)


def _cohort_rows(read, folder: Path):
    """Rows a synthetic-cohort reader builds; a table or targets file it cannot use (an
    older cohort, a moved folder) is the user's input, so it gets the one-line error."""
    from ..wmh.evaluate import COHORT_TABLE

    try:
        return read(folder)
    except KeyError as exc:
        raise WMHCommandError(f"the table has no column {exc}", "regenerate the cohort with "
                              "`lesion-suite synth wmh`", folder / COHORT_TABLE) from exc
    except OSError as exc:
        raise WMHCommandError(f"a file the table names cannot be read ({exc})",
                              "run from the folder where the cohort was written, or "
                              "regenerate it", folder / COHORT_TABLE) from exc


def run_train(args: argparse.Namespace) -> int:
    _check_train_options(args)
    from ..wmh.config import TrainConfig

    config = _model_config(args.config)
    defaults = TrainConfig()
    train_config = TrainConfig(optim=optim_config(args, defaults.optim))
    meta = (_train_t1 if args.t1 else _train_flair)(args, config, train_config)
    print(f"{meta.input_modality} model saved in {args.out}: {_training_facts(meta.training)}")
    return 0


def _training_facts(training: dict) -> str:
    """One line from a model card's ``training`` entry (the facts that are there)."""
    facts = [f"{training.get('subjects', '?')} subjects", str(training.get("supervision", ""))]
    for first_key, last_key, label in (("rating_loss_first", "rating_loss_last", "rating loss"),
                                       ("loss_first", "loss_last50", "loss")):
        first, last = training.get(first_key), training.get(last_key)
        if first is not None and last is not None:
            facts.append(f"{label} {first:.3f} -> {last:.3f}")
            break
    if training.get("steps") is not None:
        facts.append(f"{training['steps']} steps in {training.get('wall_s', 0):.0f} s "
                     f"({training.get('precision', 'fp32')})")
    if training.get("calibration_score") is not None:
        facts.append(f"calibration score {training['calibration_score']:.3f}")
    if training.get("fine_tuned_from"):
        facts.append(f"fine-tuned from {training['fine_tuned_from']}")
    return "; ".join(f for f in facts if f)


def _train_flair(args, config, train_config):
    from ..wmh.data import read_ratings_table, table_from_synthetic_cohort
    from ..wmh.fit import fit_dualtasker

    masker = None
    if args.table:
        rows, note = read_ratings_table(args.table), f"ratings table {Path(args.table).name}"
    elif args.synthetic:
        folder = _cohort_folder(args.synthetic)
        rows = _cohort_rows(table_from_synthetic_cohort, folder)
        note = "synthetic cohort ratings"
        if args.known_transform:
            from ..wmh.evaluate import known_transform_masker
            masker = known_transform_masker(folder, "FLAIR")
    else:
        from ..wmh.reader_ratings import rows_from_feedback
        rows, note = rows_from_feedback(args.feedback, "FLAIR"), "reader ratings (feedback)"
        if not rows:
            raise WMHCommandError("no case holds ARWMC ratings with its FLAIR image",
                                  "rate some cases in the WMH module first", args.feedback)
    _check_files([row.image for row in rows], args.table or args.synthetic or args.feedback)
    # Reader ratings are few: they adjust a trained model (the shipped one by default)
    # rather than start one.
    init = None
    if args.init or args.feedback:
        init = _load_model(args.init, t1=False, device="cpu",
                           fix="ratings fine-tune a FLAIR (DualTasker) model; choose one")
    with ProgressBar(args, "wmh train") as progress:
        return fit_dualtasker(rows, args.out, config, train_config, masker=masker, init=init,
                              progress=progress, data_note=note, overwrite=args.overwrite,
                              checkpoint_dir=args.checkpoint, cache_dir=args.cache)


def _train_t1(args, config, train_config):
    # The T1 mode's training lives in its own module; imported only when asked for.
    from ..wmh import t1_fit

    masker = None
    if args.table:
        rows = t1_fit.read_thick_label_table(args.table)
        note = f"thick-label table {Path(args.table).name}"
    else:
        folder = _cohort_folder(args.synthetic)
        rows = _cohort_rows(t1_fit.thick_table_from_synthetic_cohort, folder)
        note = "synthetic cohort thick-slice labels"
        if args.known_transform:
            from ..wmh.evaluate import known_transform_masker
            masker = known_transform_masker(folder, "T1")
    _check_files([p for row in rows for p in (row.image, row.thick_label)],
                 args.table or args.synthetic)
    init = None
    if args.init:
        init = _load_model(args.init, t1=True, device="cpu",
                           fix="the T1 mode continues a T1 model; choose one")
    with ProgressBar(args, "wmh train --t1") as progress:
        return t1_fit.fit_t1(rows, args.out, config, train_config, masker=masker,
                             progress=progress, data_note=note, overwrite=args.overwrite,
                             init=init, checkpoint_dir=args.checkpoint, cache_dir=args.cache)


# ----------------------------------------------------------------------- evaluate
def _format(value) -> str:
    if isinstance(value, dict):
        if value.get("mean") is None:
            return "n/a"
        sd = "" if value.get("sd") is None else f" ± {value['sd']:.3g}"
        return f"{value['mean']:.3g}{sd} (n {value['n']})"
    return "n/a" if value is None else f"{value:.3g}"


def run_evaluate(args: argparse.Namespace) -> int:
    from ..wmh.evaluate import evaluate_cohort, summary_rows

    folder = _cohort_folder(args.cohort)
    model = _load_model(args.model, args.t1, args.device)
    with ProgressBar(args, "wmh evaluate") as progress:
        report = evaluate_cohort(model, folder, use_registration=not args.known_transform,
                                 progress=progress, precision=args.precision)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    atlases = "registration to MNI" if report.registration else "known synthetic transform"
    print(f"{model.modality} model {model.model_id} {model.version} on {len(report.cases)} "
          f"subjects of {folder} ({atlases})")
    rows = summary_rows(report)
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {_format(value):<24} {note}".rstrip())
    if args.json:
        print(f"per-case results: {args.json}")
    return 0

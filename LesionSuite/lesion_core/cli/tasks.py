"""``lesion-suite <task> {predict,train,evaluate}`` for every registered task, from one place.

Each task of :mod:`lesion_core.tasks` gets the same three verbs with the shared options of
:mod:`.common` and the options the task declares (:attr:`~lesion_core.tasks.Task.options`),
whose values reach the task's verbs as keyword arguments:

* ``predict INPUT``: ``--out`` and the input are checked before torch is imported (the
  input also as a head scan of the task's kind, :mod:`lesion_core.head_check`), the model
  is loaded (``--model``, default the shipped one) and checked against the options, then
  the prediction runs, its brain mask is checked, and its files go to ``--out`` (default
  ``<task>_output``) all together or not at all (:func:`~lesion_core.output_folder.publish`);
  ``--force`` reports a result on an image the checks refuse, marked out of distribution;
  ``--dicom`` (a DICOM series input) also writes ``<stem>_seg.dcm`` and ``<stem>_sr.dcm``
  (DICOM SEG and TID 1500 SR referencing the series, :mod:`lesion_core.dicom_export`);
* ``train``: from the task's own data sources (``--table``, ``--synthetic``...) a whole
  training (``fit``, continuing ``--init`` where the task can), or from a reader's
  decisions (``--feedback STORE``) a fine-tune of ``--init`` (default the shipped model);
  options and data are checked before the long run, and the trained model saves itself
  with its card into ``--out`` (an existing model only with ``--overwrite``); under
  ``torchrun --nproc_per_node=K`` every process trains (:mod:`lesion_core.training.distributed`)
  and rank 0 alone shows progress and saves the model;
* ``evaluate COHORT``: the cohort is checked before the model is loaded; the task's
  summary is printed, ``--json FILE`` keeps the whole report and ``--record`` stores the
  summary in the model's card.

Progress goes to stderr (or as lines to stdout with ``--progress-lines``); user errors are
one line and exit code 2 (see :mod:`lesion_core.cli`).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from ..output_folder import check_output_folder
from ..tasks import Option, Task, TrainSettings, all_tasks, option
from ..tasks.cases import (ModelLoading, check_dicom_export, out_of_distribution_lines,
                           prepare_case, run_case)
from .common import (check_device, check_device_now, check_model_folder, check_steps,
                     load_model, model_options, refuse_saved_model, training_options)
from .progress_bar import ProgressBar


def register(sub: argparse._SubParsersAction) -> None:
    for task in all_tasks():
        parser = sub.add_parser(task.name, help=task.help)
        verbs = parser.add_subparsers(dest=f"{task.name}_command", metavar="ACTION",
                                      required=True)
        for verb, run in (("predict", run_predict), ("train", run_train),
                          ("evaluate", run_evaluate)):
            _add_verb(verbs, task, verb, run)


def shared_options(task: Task, verb: str) -> tuple[Option, ...]:
    """The options a verb has for every task (beside :func:`.common.model_options` or
    :func:`.common.training_options`): its input (``predict``: with ``--series``, which
    reaches :meth:`~lesion_core.tasks.Task.read_input` as ``series``), and where its
    results go."""
    if verb == "predict":
        return (option(task.input_argument[0], help=task.input_argument[1]),
                option("--out", default=f"{task.name}_output",
                       help="output folder (default: %(default)s)"),
                option("--series", metavar="UID",
                       help="SeriesInstanceUID of the series to read, for a DICOM folder "
                            "of several"),
                option("--force", action="store_true",
                       help="report a result even when the image does not look like a head "
                            "scan of this kind; the result is marked out of distribution"),
                option("--dicom", action="store_true",
                       help="also write the result as a DICOM SEG and SR (<stem>_seg.dcm, "
                            "<stem>_sr.dcm) referencing the input DICOM series"))
    if verb == "evaluate":
        return (option(task.cohort_argument[0], help=task.cohort_argument[1]),
                option("--json", metavar="OUT",
                       help="also write per-case results and the summary"),
                option("--record", action="store_true",
                       help="store the summary in the model's metadata (evaluation entry)"))
    return (option("--feedback", metavar="STORE_DIR", source=True,
                   help="a feedback store with a reader's decisions: fine-tunes --init or "
                        "the shipped model"),
            option("--init", metavar="MODEL_DIR",
                   help="model to start from: the one fine-tuned with --feedback (default: "
                        "the shipped one), or the one a training goes on from"),
            option("--cache", metavar="DIR",
                   help="keep the prepared training data here, so that a rerun reads no "
                        "image again (default: none, or a folder in --checkpoint)"),
            option("--out", required=True, help="the new model folder"),
            option("--overwrite", action="store_true", help="replace a model in --out"))


def _add_verb(verbs: argparse._SubParsersAction, task: Task, verb: str, run) -> None:
    """The parser of ``<task> <verb>``: the shared options, then the task's own (a
    ``train`` takes exactly one of its data sources)."""
    parser = verbs.add_parser(verb, help=task.verb_help.get(verb))
    sources = parser.add_mutually_exclusive_group(required=True) if verb == "train" else None
    for declared in shared_options(task, verb) + tuple(task.options.get(verb, ())):
        target = sources if declared.source and sources is not None else parser
        target.add_argument(*declared.flags, **declared.settings)
    if verb == "train":
        training_options(parser, task.steps_help)
    else:
        model_options(parser)
    parser.set_defaults(run=partial(run, task))


def _values(task: Task, verb: str, args: argparse.Namespace) -> dict:
    """The values of the options the task declared for ``verb``, by ``dest``."""
    return {o.dest: getattr(args, o.dest) for o in task.options.get(verb, ())}


# ------------------------------------------------------------------------ predict
def run_predict(task: Task, args: argparse.Namespace) -> int:
    options = _values(task, "predict", args)
    image_path = getattr(args, task.input_argument[0])
    # Output folder, input, model folder, device and options are checked before any
    # progress is shown, so a mistake is one line; the input first and before torch is
    # imported, so a wrong file fails at once. The model then loads on another thread
    # (torch and MONAI take seconds to import) while the case is prepared (registered).
    out = check_output_folder(args.out)
    if args.dicom:
        check_dicom_export(image_path)
    case = prepare_case(task, image_path, args.series, args.force, **options)
    kind = task.kind(**options)
    folder = check_model_folder(task, args.model, kind, "predict")
    model = ModelLoading(partial(_load_model, task, folder, check_device_now(args.device),
                                 kind))
    with ProgressBar(args, f"{task.name} predict") as progress:
        prediction, paths = run_case(task, case, model, out, progress, args.precision,
                                     args.force, dicom=args.dicom, **options)
    lines = task.prediction_lines(prediction, model.result(), image_path)
    lines += out_of_distribution_lines(prediction)
    print("\n".join(lines + ["files: " + ", ".join(str(p) for p in paths.values())]))
    return 0


def _load_model(task: Task, folder: Path, device, kind: str):
    return task.load_model(folder, device=check_device(device), kind=kind)


# -------------------------------------------------------------------------- train
def run_train(task: Task, args: argparse.Namespace) -> int:
    options = _values(task, "train", args)
    settings = TrainSettings.from_args(args)
    check_steps(settings)
    task.check_training(settings, feedback=args.feedback, init=args.init, **options)
    # Refused now rather than after the training run that would then fail to save.
    refuse_saved_model(args.out, args.overwrite)
    check_device(settings.device)
    kind = task.kind(**options)
    if args.feedback:
        model = load_model(task, args.init, "cpu", kind, "train", "--init")
        run = partial(task.finetune, model, args.feedback, settings, **options)
    else:
        data = task.training_data(settings, **options)
        init = load_model(task, args.init, "cpu", kind, "train", "--init") if args.init else None
        run = partial(task.fit, data, settings, init=init, **options)
    from ..training.distributed import is_main_process

    if not is_main_process():  # another rank under torchrun: rank 0 shows, saves, reports
        run()
        return 0
    with ProgressBar(args, f"{task.name} train") as progress:
        trained, report = run(progress=progress)
        saved = trained.save(args.out, overwrite=args.overwrite)
    facts = task.training_line(report)
    print(f"{saved.input_modality} model saved in {args.out} ({saved.name} {saved.version})"
          + (f": {facts}" if facts else ""))
    return 0


# ----------------------------------------------------------------------- evaluate
def run_evaluate(task: Task, args: argparse.Namespace) -> int:
    options = _values(task, "evaluate", args)
    source = getattr(args, task.cohort_argument[0])
    task.read_cohort(source, **options)  # one clear error before a model is loaded
    model = load_model(task, args.model, check_device(args.device), task.kind(**options),
                       "evaluate")
    with ProgressBar(args, f"{task.name} evaluate") as progress:
        report = task.evaluate(model, source, progress, args.precision, **options)
    print("\n".join([report.headline()] + task.summary_lines(report)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1))
        print(f"per-case results: {args.json}")
    if args.record:
        from ..bundle import record_evaluation

        record_evaluation(model.metadata.folder, report.record(task.evaluation_truth))
        print(f"recorded in {model.metadata.folder}")
    return 0

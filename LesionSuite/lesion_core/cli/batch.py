"""``lesion-suite batch <task> --inputs DIR|CSV --out DIR`` and ``lesion-suite batch-merge OUT``.

``batch`` runs a task's ``predict`` over a cohort (:mod:`lesion_core.batch`): one case per
image of a folder (NIfTI, NRRD, or a DICOM series folder) or per row of a CSV table
(``case_id,path[,series]``), each case's files in ``OUT/<case_id>/``, written all together or
not at all. The task's predict options apply to every case (not WMH ``--atlases``, which
names one subject's files). Options:

* ``--workers K``: K cases at a time in K processes, the cores split between them;
* ``--shard I/N``: a deterministic 1/N of the cases (N machines, or a SLURM job array);
* ``--retry-failed``: run failed and crashed cases again (a rerun skips them otherwise);
* ``--force``: as in predict, results on images the head checks refuse, marked out of
  distribution;
* ``--dicom``: as in predict, each case's DICOM SEG and SR too (cases must be DICOM series).

A rerun resumes: finished cases are skipped, the case that was in flight runs again. The
summary (``OUT/batch_summary.csv``, or ``.shard-I-of-N.csv``) has one row per case;
``batch-merge`` joins the shards' summaries. Exit code 0 when every case is done or failed
on its input (the last line says how many failed); 1 when a case crashed (an internal
error, recorded with the others, which went on); 2 for a user error of the whole batch.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from ..batch import (CRASHED, DONE, FAILED, BatchPlan, CaseRecord, Shard, WorkerSetup,
                     list_cases, merge_summaries, run_batch, threads_per_worker)
from ..errors import EXIT_INTERNAL_ERROR, CommandError
from ..output_folder import check_output_folder
from ..progress import Progress, line_printer
from ..tasks import Task, all_tasks, get_task
from .common import check_device, load_model, model_options
from .tasks import shared_options

#: Predict options that name one subject's own files, so cannot apply to a whole cohort.
PER_SUBJECT_OPTIONS = ("atlases",)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("batch", help="run a task's predict over a cohort: resumable, "
                                          "shardable (SLURM arrays), in parallel processes")
    tasks = parser.add_subparsers(dest="batch_task", metavar="TASK", required=True)
    for task in all_tasks():
        _add_task(tasks, task)
    merge = sub.add_parser("batch-merge", help="merge the summaries of a sharded batch into "
                                               "one CSV")
    merge.add_argument("out", nargs="+", metavar="OUT",
                       help="the shards' --out folder (or one folder per shard)")
    merge.add_argument("--into", metavar="CSV",
                       help="the merged table (default: OUT/batch_summary.csv of the first)")
    merge.add_argument("--allow-missing", action="store_true",
                       help="merge the shards found even when some have no summary yet")
    merge.set_defaults(run=run_merge)


def batch_options(task: Task):
    """The task's predict options a batch takes (for every case alike)."""
    return tuple(o for o in task.options.get("predict", ()) if o.dest not in PER_SUBJECT_OPTIONS)


def _add_task(tasks: argparse._SubParsersAction, task: Task) -> None:
    parser = tasks.add_parser(task.name, help=f"{task.title}: "
                                              f"{task.verb_help.get('predict', 'predict')}, "
                                              "for every case of a cohort")
    parser.add_argument("--inputs", required=True, metavar="DIR|CSV",
                        help="a folder (each image file or DICOM series folder is a case, "
                             "named after it) or a CSV table with case_id,path[,series]")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: OUT/<case_id>/ per case, and the summary CSV")
    parser.add_argument("--workers", type=int, default=1,
                        help="cases run in parallel, one process each (default %(default)s)")
    parser.add_argument("--shard", metavar="I/N",
                        help="take only shard I (0 to N-1) of N: for N machines or a job array")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run failed and crashed cases again (a rerun skips them)")
    # --force and --dicom mean what they mean in predict: one declaration serves both.
    for declared in shared_options(task, "predict"):
        if declared.dest in ("force", "dicom"):
            parser.add_argument(*declared.flags, **declared.settings)
    for declared in batch_options(task):
        parser.add_argument(*declared.flags, **declared.settings)
    model_options(parser)
    parser.set_defaults(run=partial(run_batch_command, task))


def load_batch_model(task_name: str, folder: str | None, device: str, kind: str):
    """The model of a batch, loaded in each worker process (module level: the workers are
    spawned, so they import it by name)."""
    task = get_task(task_name)
    return load_model(task, folder, check_device(device), kind, "predict")


def run_batch_command(task: Task, args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CommandError(f"--workers {args.workers} is fewer than one process",
                           "give --workers 1 or more")
    shard = Shard.parse(args.shard)
    out = check_output_folder(args.out)
    cases = list_cases(args.inputs)
    options = {o.dest: getattr(args, o.dest) for o in batch_options(task)}
    kind = task.kind(**options)
    model = str(Path(args.model).resolve()) if args.model else None
    threads = threads_per_worker(args.workers)
    setup = WorkerSetup(task.name, str(out),
                        partial(load_batch_model, task.name, model, args.device, kind),
                        options, args.force, args.precision, threads, args.dicom)
    settings = {"task": task.name, "model": model or f"shipped {task.default_models[kind]}",
                "options": options, "precision": args.precision,
                **({"dicom": True} if args.dicom else {})}  # older batch folders resume
    plan = BatchPlan(setup, tuple(task.key_figures), settings, args.workers, shard,
                     args.retry_failed)
    with CaseProgress(args, f"batch {task.name}") as progress:
        outcome = run_batch(cases, plan, progress.case_done, progress.begin)
    counts = outcome.counts
    where = f" (shard {shard.index}/{shard.count} of {len(cases)})" if not shard.whole else ""
    print(f"batch {task.name}: {outcome.cases} cases{where}: {counts[DONE]} done, "
          f"{counts[FAILED]} failed, {counts[CRASHED]} crashed"
          + (f"; {outcome.skipped} finished earlier were skipped" if outcome.skipped else ""))
    if outcome.ran:
        speed = outcome.cases_per_minute
        peak = (f"; peak memory per worker {outcome.peak_mb:.0f} MB"
                if outcome.peak_mb is not None else "")
        print(f"this run: {outcome.ran} cases in {outcome.seconds / 60:.1f} min "
              f"({speed:.2f} cases/min, {args.workers} worker(s) x {threads} thread(s)){peak}")
    print(f"summary: {outcome.summary}")
    if counts[FAILED]:
        print(f"{counts[FAILED]} case(s) failed on their input: see the error column; rerun "
              "with --retry-failed once they are fixed")
    if counts[CRASHED]:
        print(f"lesion-suite: {counts[CRASHED]} case(s) crashed with an internal error (their "
              f"tracebacks are in {out / '.batch' / 'cases'}); please report it",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    return 0


def run_merge(args: argparse.Namespace) -> int:
    merged = merge_summaries(args.out, args.into, args.allow_missing)
    tally = ", ".join(f"{n} {status}" for status, n in sorted(merged.counts.items()))
    print(f"merged {len(merged.shards)} shard summaries: {sum(merged.counts.values())} cases "
          f"({tally}) into {merged.path}")
    return 0


class CaseProgress:
    """A bar over the cases to run, with the rate and the time left (stderr); or progress
    lines on stdout for a parent process (``--progress-lines``), with the time left in
    the message."""

    def __init__(self, args: argparse.Namespace, description: str):
        self._lines = bool(getattr(args, "progress_lines", False))
        self._description = description
        self._bar = None
        self._progress: Progress | None = None
        self._began = time.monotonic()

    def __enter__(self) -> "CaseProgress":
        return self

    def begin(self, to_run: int, skipped: int) -> None:
        self._began = time.monotonic()
        if self._lines:
            self._progress = Progress(line_printer(
                lambda text: (sys.stdout.write(text), sys.stdout.flush())))
            self._progress.update(0.0, f"{to_run} cases to run, {skipped} done earlier")
        elif to_run:
            from tqdm import tqdm

            self._bar = tqdm(total=to_run, desc=self._description, unit="case", file=sys.stderr,
                             leave=False, dynamic_ncols=True)

    def case_done(self, record: CaseRecord, finished: int, to_run: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{record.case_id} {record.status}", refresh=False)
            self._bar.update(1)
        if self._progress is not None:
            elapsed = time.monotonic() - self._began
            left = elapsed / finished * (to_run - finished)
            self._progress.update(finished / max(to_run, 1),
                                  f"case {finished}/{to_run}: {record.case_id} {record.status}"
                                  f"; about {left / 60:.1f} min left")

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()

"""``lesion-suite report``: the HTML report of a prediction folder, or of a cohort.

* ``report <task> OUT_DIR [--image INPUT]``: ``OUT_DIR/report.html`` (or ``--out``) from
  the files ``lesion-suite <task> predict`` wrote into ``OUT_DIR`` and the input image
  (default: the image the result names, for CMB and ICH); ``--feedback STORE`` adds the
  reader's decisions about that image.
* ``report cohort DIR...``: one page over every prediction folder found in and below the
  folders given (``--task`` keeps one task), linking each case's ``report.html``.

Torch is not imported: a report is made from files (:mod:`lesion_core.report`).
"""

from __future__ import annotations

import argparse

from ..errors import CommandError

#: The largest number of slices a mosaic may show.
MAX_SLICES = 64


def register(sub: argparse._SubParsersAction) -> None:
    from ..report.folders import REPORTED_TASKS

    parser = sub.add_parser("report", help="write an HTML report of a prediction folder, or "
                                           "of a cohort of them")
    verbs = parser.add_subparsers(dest="report_kind", metavar="TASK|cohort", required=True)
    for task in REPORTED_TASKS:
        case = verbs.add_parser(task, help=f"the report of one {task.upper()} prediction folder")
        case.add_argument("folder", metavar="OUT_DIR",
                          help=f"the folder lesion-suite {task} predict wrote")
        case.add_argument("--image", metavar="INPUT",
                          help="the input image the prediction was made on (NIfTI, NRRD or "
                               "DICOM folder; default: the one the result names, if any)")
        case.add_argument("--series", help="SeriesInstanceUID, for a DICOM folder of several")
        if task == "wmh":
            case.add_argument("--stem", help="file name prefix given to wmh predict "
                                             "(default: the folder's only one)")
        case.add_argument("--feedback", metavar="STORE",
                          help="feedback store folder: show the reader's decisions")
        case.add_argument("--case", dest="case_id", metavar="ID",
                          help="the store's case (default: found by the image)")
        case.add_argument("--out", metavar="FILE", help="report file (default: "
                                                        "OUT_DIR/report.html)")
        case.add_argument("--slices", type=int, default=16,
                          help="axial slices in the mosaic (default %(default)s)")
        case.set_defaults(run=run_case, task=task)
    cohort = verbs.add_parser("cohort", help="one page over many prediction folders")
    cohort.add_argument("folders", nargs="+", metavar="DIR",
                        help="prediction folders, or folders holding them (searched 3 levels "
                             "down)")
    cohort.add_argument("--task", choices=REPORTED_TASKS, help="only this task's results")
    cohort.add_argument("--out", metavar="FILE",
                        help="page file (default: cohort_report.html in the first DIR)")
    cohort.add_argument("--title", help="the page's title")
    cohort.set_defaults(run=run_cohort)


def run_case(args: argparse.Namespace) -> int:
    from ..report.case import write_case_report

    if not 1 <= args.slices <= MAX_SLICES:
        raise CommandError(f"--slices {args.slices} is not 1-{MAX_SLICES}",
                           "give a number of slices from 1 to 64")
    path, report = write_case_report(
        args.folder, args.task, image=args.image, out=args.out,
        stem=getattr(args, "stem", None), series=args.series, feedback=args.feedback,
        case_id=args.case_id, slices=args.slices)
    print(f"report: {path} ({report.seconds:.1f} s)")
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    from ..report.cohort import write_cohort_report

    path, _, cases, seconds = write_cohort_report(args.folders, args.out, args.task, args.title)
    print(f"cohort report: {path} ({cases} case(s), {seconds:.1f} s)")
    return 0

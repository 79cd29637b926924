"""``lesion-suite synth {wmh,cmb,ich,all} --n N --seed S --out DIR [--size small|full]
[--domain standard|randomized|shifted] [--workers W] [--dicom]``.

``--dicom`` also writes each image as a DICOM series, ``<subject>/dicom/<image>/``
(e.g. ``ich_00003/dicom/ct/``), the input of ``lesion-suite <task> predict --dicom``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CommandError
from ..synth import DOMAINS, KINDS
from ..synth.splits import split_of
from .progress_bar import ProgressBar

if TYPE_CHECKING:  # the builders use torch: imported when a cohort is made, not at startup
    from ..synth import SubjectConfig

#: ``small``: about 64 voxels a side (3.5 mm), for tests and quick looks; ``medium``: 2 mm
#: anatomy with the usual acquisitions (training sets of the shipped models: ~8x faster
#: than ``full``); ``full``: 1 mm anatomy with the kind's usual acquisitions (thick
#: FLAIR/CT slices, 1 mm T1).
SMALL_SPACING_MM = 3.5
MEDIUM_SPACING_MM = 2.0
#: ``--spacing`` range: finer anatomy needs memory that grows with the cube of 1/spacing
#: (0.5 mm: 8x the 1 mm phantom); coarser than 10 mm leaves no brain structure to see.
SPACING_RANGE_MM = (0.5, 10.0)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="generate synthetic subjects with known ground truth")
    parser.add_argument("kind", choices=KINDS + ("all",),
                        help="wmh (FLAIR + T1), cmb (SWI or T2*-GRE), ich (CT), or all")
    parser.add_argument("--n", type=int, default=3, help="number of subjects (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first seed; subjects use seeds S..S+N-1. Seeds < 100000 are the "
                             "training range, 100000-199999 validation, 900000-949999 "
                             "benchmark, 950000+ shifted benchmark")
    parser.add_argument("--size", choices=("small", "medium", "full"), default="full",
                        help="small: ~64 voxels a side (3.5 mm); medium: 2 mm anatomy; "
                             "full: 1 mm (default)")
    parser.add_argument("--spacing", type=float, metavar="MM",
                        help="anatomy voxel size in mm (overrides the size's; e.g. 1.5, the "
                             "benchmark's)")
    parser.add_argument("--sequence", choices=("SWI", "T2star"),
                        help="cmb: generate only this sequence (default: either, at random)")
    parser.add_argument("--domain", choices=DOMAINS, default="standard",
                        help="contrast and acquisition ranges: standard (default), randomized "
                             "(wide, for training) or shifted (outside the randomized ones)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes generating subjects (default 1); the files do not "
                             "depend on it")
    parser.add_argument("--dicom", action="store_true",
                        help="also write each image as a DICOM series (CT / MR Image Storage) "
                             "in <subject>/dicom/<image>/")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(run=run)


def small_config(kind: str) -> SubjectConfig:
    """Coarse anatomy and acquisition: every image about 64 voxels a side."""
    from ..synth import SubjectConfig
    from ..synth.acquisition import AcquisitionConfig
    from ..synth.anatomy import AnatomyConfig

    coarse = AcquisitionConfig(in_plane_mm=SMALL_SPACING_MM, slice_thickness_mm=SMALL_SPACING_MM)
    names = {"wmh": ("FLAIR", "T1"), "cmb": ("SWI", "T2star"), "ich": ("CT",)}[kind]
    return SubjectConfig(anatomy=AnatomyConfig(spacing_mm=SMALL_SPACING_MM),
                         acquisition={name: coarse for name in names})


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that would make nothing, or fail after the first subject, before
    any subject is made (one :class:`CommandError` each)."""
    if args.n < 1:
        raise CommandError(f"--n {args.n} makes no subject", "give --n 1 or more")
    if args.seed < 0:
        raise CommandError(f"--seed {args.seed} is negative", "give a seed of 0 or more")
    if args.workers < 1:
        raise CommandError(f"--workers {args.workers} is fewer than one process",
                           "give --workers 1 or more")
    low, high = SPACING_RANGE_MM
    # `not low <= x <= high` is also true for NaN.
    if args.spacing is not None and not low <= args.spacing <= high:
        raise CommandError(f"--spacing {args.spacing:g} mm is outside {low:g}-{high:g} mm",
                           f"give an anatomy voxel size from {low:g} to {high:g} mm (e.g. 1.5)")
    _check_output_folder(Path(args.out))


def _check_output_folder(out: Path) -> None:
    """``out`` is, or can become, a folder: neither it nor a folder above it is a file."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise CommandError(f"{path} is a file, not a folder",
                                   "give an --out folder that is not inside a file",
                                   out if path != out else None)
            return


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..synth import SubjectConfig, make_cohort
    from ..synth.anatomy import AnatomyConfig

    check_options(args)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    seeds = list(range(args.seed, args.seed + args.n))
    splits = sorted({split_of(s) for s in seeds})
    if {"benchmark", "shifted_benchmark"} & set(splits):
        print("lesion-suite: note: these seeds are in a benchmark range; do not train on them",
              file=sys.stderr)
    with ProgressBar(args, "synth") as progress:
        for index, kind in enumerate(kinds):
            config = {"small": small_config(kind),
                      "medium": SubjectConfig(anatomy=AnatomyConfig(spacing_mm=MEDIUM_SPACING_MM)),
                      "full": SubjectConfig()}[args.size]
            if args.spacing is not None:
                config = replace(config, anatomy=AnatomyConfig(spacing_mm=args.spacing))
            if args.sequence and kind == "cmb":
                config = replace(config, swi_variant=args.sequence)
            config = replace(config, domain=args.domain)
            out = args.out if len(kinds) == 1 else f"{args.out}/{kind}"
            stage = progress.sub(index / len(kinds), (index + 1) / len(kinds))
            table = make_cohort(kind, seeds, out, config, progress=stage, workers=args.workers,
                                dicom=args.dicom)
            print(f"{kind}: {len(seeds)} subjects (seeds {seeds[0]}-{seeds[-1]}, "
                  f"{'/'.join(splits)}, {args.domain} domain) -> {table}")
    return 0

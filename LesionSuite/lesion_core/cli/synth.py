"""``lesion-suite synth``: generate synthetic subjects with known ground truth."""

from __future__ import annotations

import argparse

from ..synth import KINDS, SubjectConfig, make_cohort
from ..synth.anatomy import AnatomyConfig
from ..synth.splits import seeds
from .progress_bar import ProgressBar


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="generate a synthetic cohort (FLAIR+T1 / SWI / CT)")
    parser.add_argument("--kind", choices=KINDS + ("all",), default="all",
                        help="which subjects: wmh (FLAIR + T1), cmb (SWI), ich (CT), or all")
    parser.add_argument("--n", type=int, default=3, help="subjects per kind (default %(default)s)")
    parser.add_argument("--split", choices=("train", "validation", "benchmark"), default="train",
                        help="seed range to draw from (kept apart so splits never overlap)")
    parser.add_argument("--offset", type=int, default=0, help="first seed within the split")
    parser.add_argument("--spacing", type=float, default=1.0,
                        help="voxel size (mm) of the subject grid before acquisition")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kinds = KINDS if args.kind == "all" else (args.kind,)
    subject_seeds = seeds(args.split, args.n, args.offset)
    config = SubjectConfig(anatomy=AnatomyConfig(spacing_mm=args.spacing))
    with ProgressBar(args, "synth") as progress:
        for index, kind in enumerate(kinds):
            stage = progress.sub(index / len(kinds), (index + 1) / len(kinds))
            csv = make_cohort(kind, subject_seeds, args.out, config, progress=stage)
            print(f"{kind}: {len(subject_seeds)} subjects -> {csv}")
    return 0

"""``lesion-suite validate FILE [--modality CT|MR]``: the checks every task runs on its input."""

from __future__ import annotations

import argparse

from ..io import read_volume
from ..validation import Modality, guess_modality, validate_image


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("validate", help="check that an image can be used (exit 2 if not)")
    parser.add_argument("path", help="image file or DICOM series folder")
    parser.add_argument("--series", default=None, help="SeriesInstanceUID, for a folder of several")
    parser.add_argument("--modality", choices=[m.value for m in Modality], default=None,
                        help="also check the intensities fit this modality (CT in HU, or MR)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    modality = Modality(args.modality) if args.modality else None
    volume = validate_image(read_volume(args.path, series_uid=args.series), modality)
    print(f"{args.path}: OK ({' x '.join(map(str, volume.shape))}, {volume.orientation}, "
          f"looks like {guess_modality(volume)})")
    return 0

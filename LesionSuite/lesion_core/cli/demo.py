"""``lesion-suite demo``: the main job on built-in data, end to end.

The demo grows with the project: it runs every pipeline that exists. Today that is the
image layer on the bundled real T1: describe, validate, reorient to RAS, resample to
1 mm, write NIfTI and NRRD, and record a reader note in a feedback store.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..feedback import FeedbackStore
from ..io import read_volume, write_volume
from ..validation import Modality, validate_image
from .info import describe_volume
from .progress_bar import ProgressBar

#: The real T1 shipped with the repository's test data (MIT licence, see its LICENSE file).
BUNDLED_T1 = Path(__file__).resolve().parents[3] / "Testing" / "Data" / "real" / \
    "t1_deep-T1-WMH_example.nii.gz"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the pipelines that exist on built-in data")
    parser.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    parser.add_argument("--input", default=str(BUNDLED_T1), help="image to use (default: the bundled real T1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with ProgressBar(args, "demo") as progress:
        progress.update(0.0, "reading")
        volume = validate_image(read_volume(args.input), Modality.MR)
        progress.update(0.2, "reorienting to RAS and resampling to 1 mm")
        resampled = volume.to_ras().resample_to_spacing(1.0)
        progress.update(0.6, "writing")
        written = [write_volume(resampled, out / "t1_ras_1mm.nii.gz"),
                   write_volume(resampled, out / "t1_ras_1mm.nrrd")]
        facts = {"input": describe_volume(volume), "resampled": describe_volume(resampled)}
        (out / "report.json").write_text(json.dumps(facts, indent=2, default=str))
        store = FeedbackStore(out / "feedback")
        store.case("demo_t1").record(kind="note", target="case", payload={"text": "demo run"},
                                     reader="demo", model_id="none", model_version="0")
        progress.update(1.0, "done")
    print(f"input:  {volume.source} ({volume.orientation}, {volume.shape})")
    print(f"output: {', '.join(str(p) for p in written)}, {out / 'report.json'}")
    print(f"feedback store: {out / 'feedback'} ({len(store.case('demo_t1').records())} record)")
    return 0

"""DICOM export speed and size: the SEG and SR of one result per task.

    python bench/dicom_export_speed.py [--seed 900000] [--repeats 3] [--out FILE]

For each task (WMH on FLAIR, CMB on SWI, ICH on CT) one synthetic subject with 1.5 mm
anatomy is generated with its DICOM series (``lesion-suite synth ... --dicom``; the
benchmark seed range, never trained on), the shipped model predicts on the DICOM series
(not timed), and the export is timed as ``predict --dicom`` runs it
(:func:`lesion_core.dicom_export.export.export_case`): reading the source headers,
building the SEG and the SR, writing both. Median of ``--repeats`` runs; the sizes of the
SEG, the SR and the source series, and the segments and frames the SEG holds.

Writes the ``dicom_export_speed`` section of ``--out`` (default: print it only; the lead
pastes it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import lesion_core  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(1, str(HERE.parent / "LesionSuite"))

from bench_report import machine_description, update_document  # noqa: E402

SPACING_MM = 1.5
#: task -> (synthetic kind, image the model reads, options of predict).
CASES = {"wmh": ("wmh", "FLAIR", {}), "cmb": ("cmb", "SWI", {"sequence": "SWI"}),
         "ich": ("ich", "CT", {})}


def _subject(kind: str, image: str, seed: int, folder: Path) -> Path:
    """The DICOM series folder of one 1.5 mm subject (CMB: an SWI one)."""
    from dataclasses import replace

    from lesion_core.synth import SubjectConfig, make_cohort
    from lesion_core.synth.anatomy import AnatomyConfig

    config = SubjectConfig(anatomy=AnatomyConfig(spacing_mm=SPACING_MM))
    if kind == "cmb":
        config = replace(config, swi_variant="SWI")
    make_cohort(kind, [seed], folder, config, dicom=True)
    return folder / f"{kind}_{seed:05d}" / "dicom" / image.lower()


def _size_kb(paths) -> float:
    return sum(Path(p).stat().st_size for p in paths) / 1024.0


def measure(task_name: str, seed: int, repeats: int, root: Path) -> dict:
    from lesion_core.dicom_export.export import (SUMMARY_ROLES, export_case, export_result,
                                                 read_source_datasets, source_files)
    from lesion_core.tasks import get_task
    from lesion_core.tasks.cases import prepare_case

    kind, image, options = CASES[task_name]
    series = _subject(kind, image, seed, root / "subjects" / kind)
    task = get_task(task_name)
    case = prepare_case(task, series, None, True, **options)
    model = task.load_model(None, "cpu", task.kind(**options))
    prediction = task.predict(case.inputs, model, None, "fp32", **options)
    outputs = root / "outputs" / task_name
    paths = task.write_outputs(prediction, outputs, str(series), **options)
    files = source_files(task.head_image(case.inputs))
    summary = json.loads(Path(paths[SUMMARY_ROLES[task_name]]).read_text())
    seconds, parts = [], {"read headers": [], "SEG + SR built": []}
    for repeat in range(repeats):
        target = root / f"export_{task_name}_{repeat}"
        target.mkdir(parents=True)
        start = time.perf_counter()
        written = export_case(task_name, prediction.labels, paths[SUMMARY_ROLES[task_name]],
                              files, target, task_name)
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        datasets = read_source_datasets(files)
        parts["read headers"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result = export_result(task_name, prediction.labels, summary, datasets)
        parts["SEG + SR built"].append(time.perf_counter() - start)
    seg = result.seg
    return {"task": task_name, "image": image, "grid": list(prediction.labels.shape),
            "model": f"{model.model_id} {model.version}",
            "seconds": statistics.median(seconds),
            "parts": {k: statistics.median(v) for k, v in parts.items()},
            "seg_kb": _size_kb([written["dicom_seg"]]), "sr_kb": _size_kb([written["dicom_sr"]]),
            "source_kb": _size_kb(files), "segments": len(seg.SegmentSequence),
            "seg_frames": int(seg.NumberOfFrames), "source_frames": len(files)}


def render(result: dict) -> str:
    lines = ["<!-- bench:dicom_export_speed -->",
             "## DICOM SEG and SR export (`bench/dicom_export_speed.py`, issue 18)", "",
             f"Machine: {result['machine']}; {result['date']}. One synthetic subject per task "
             f"({SPACING_MM:g} mm anatomy, seed {result['seed']}, acquired at the task's usual "
             "resolution), the shipped model's result exported as `predict --dicom` does it "
             f"(median of {result['repeats']} runs; the prediction itself is not timed).", "",
             "| task | image grid | model | export (s) | of which: read headers / build SEG + SR (s) "
             "| SEG (KB) | SR (KB) | source series (KB) | segments | SEG frames / source frames |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        grid = " x ".join(str(n) for n in row["grid"])
        lines.append(
            f"| {row['task'].upper()} ({row['image']}) | {grid} | {row['model']} | "
            f"{row['seconds']:.2f} | {row['parts']['read headers']:.2f} / "
            f"{row['parts']['SEG + SR built']:.2f} | {row['seg_kb']:.0f} | {row['sr_kb']:.0f} | "
            f"{row['source_kb']:.0f} | {row['segments']} | {row['seg_frames']} / "
            f"{row['source_frames']} |")
    lines += ["", "<!-- /bench:dicom_export_speed -->", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=900000,
                        help="subject seed (default: the first benchmark seed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", help="write the section into this Markdown file")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(task, args.seed, args.repeats, Path(tmp)) for task in args.tasks]
    result = {"machine": machine_description(), "date": datetime.date.today().isoformat(),
              "seed": args.seed, "repeats": args.repeats, "rows": rows}
    print(json.dumps(result, indent=2))
    section = render(result)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.out:
        update_document(Path(args.out), {"dicom_export_speed": section})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the bad-input probes as a user would and write their outcomes into docs/reliability.md.

Each probe makes a small bad input in a temporary folder, runs one ``lesion-suite`` command
in a new process (the shipped models), and records the exit code and what the terminal
showed. A probe passes when the command ends in one clear error line (exit 2); for the
probes run with ``--force``, in a result marked out of distribution (exit 0); for damage the
command can do without (an optional DICOM tag), in a normal answer. Nothing may end in a
traceback or an internal error (exit 1) or a confident answer.

    python bench/probe_bad_inputs.py [--doc docs/reliability.md] [--only NAME]

The table replaces the block between the ``probes`` markers of the document.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "LesionSuite"))

from lesion_core.io import read_volume, write_volume  # noqa: E402
from lesion_core.volume import Volume  # noqa: E402

REAL_T1 = ROOT / "Testing" / "Data" / "real" / "t1_deep-T1-WMH_example.nii.gz"
BEGIN, END = "<!-- probes: begin -->", "<!-- probes: end -->"


@dataclass
class Probe:
    """``make(folder)`` writes the input and returns the command's arguments."""

    name: str
    make: Callable[[Path], list[str]]
    #: "error": one error line (exit 2); "forced": a result marked out of distribution;
    #: "ok": a sensible answer (exit 0), for damage the command can do without
    expect: str = "error"


def _noise(folder: Path, name: str, low: float, high: float, shape=(96, 96, 64)) -> str:
    rng = np.random.default_rng(0)
    volume = Volume(rng.uniform(low, high, shape).astype(np.float32), np.diag([2.0, 2, 2.5, 1]))
    return str(write_volume(volume, folder / name))


def _real_t1_with(folder: Path, name: str, array=None, spacing=None, dtype=None) -> str:
    volume = read_volume(REAL_T1)
    affine = volume.affine.copy()
    if spacing is not None:
        affine[:3, :3] = affine[:3, :3] / volume.spacing * np.asarray(spacing)
    data = volume.array if array is None else array(np.asarray(volume.array))
    return str(write_volume(Volume(data if dtype is None else data.astype(dtype), affine),
                            folder / name))


def _zero_pixdim(folder: Path) -> list[str]:
    import nibabel as nib

    path = folder / "zero_pixdim.nii"
    image = nib.Nifti1Image(np.asarray(read_volume(REAL_T1).array, np.float32), None)
    image.header["pixdim"][1:4] = 0
    image.header.set_qform(None, code=0)
    image.header.set_sform(None, code=0)
    nib.save(image, str(path))
    return ["validate", str(path)]


def _huge_values(folder: Path) -> list[str]:
    array = np.full((96, 96, 48), -1000.0, np.float64)
    array[20:76, 20:76, 5:43] = 40.0
    array[0, 0, 0], array[0, 0, 1] = 1e308, -1e308
    path = write_volume(Volume(array, np.diag([2.0, 2, 3, 1])), folder / "huge.nii.gz")
    return ["ich", "predict", str(path), "--out", str(folder / "out")]


def _dicom(folder: Path, keyword: str, value: str) -> list[str]:
    import pydicom
    from pydicom.data import get_testdata_file

    series = folder / "series"
    series.mkdir()
    from pydicom.dataelem import RawDataElement

    tag = pydicom.datadict.tag_for_keyword(keyword)
    raw = value.encode() + b" " * (len(value) % 2)  # even length, as DICOM stores it
    series_uid = pydicom.uid.generate_uid()
    for index in range(3):  # a 3-slice series, one of its files damaged
        dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        dataset.SeriesInstanceUID, dataset.SOPInstanceUID = series_uid, pydicom.uid.generate_uid()
        dataset.ImagePositionPatient = [-158.1, -179.0, -75.7 + 5.0 * index]
        dataset.InstanceNumber = index + 1
        if index == 1:  # raw bytes, as a damaged file holds them (pydicom refuses to assign)
            dataset[tag] = RawDataElement(pydicom.tag.Tag(tag),
                                          pydicom.datadict.dictionary_VR(tag), len(raw), raw,
                                          0, False, True)
        dataset.save_as(str(series / f"slice{index}.dcm"))
    return ["validate", str(folder)]


def _nrrd_gzip_garbage(folder: Path) -> list[str]:
    path = folder / "garbage.nrrd"
    path.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
                     b"endian: little\n"
                     b"sizes: 8 8 8\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
                     b"encoding: gzip\nspace origin: (0,0,0)\n\n" + bytes(range(256)) * 4)
    return ["info", str(path)]


def _nifti_bad_datatype(folder: Path) -> list[str]:
    path = Path(_real_t1_with(folder, "t1.nii"))
    data = bytearray(path.read_bytes())
    data[70:72] = (12345).to_bytes(2, "little")  # datatype code of the NIfTI-1 header
    path.write_bytes(bytes(data))
    return ["info", str(path)]


def _model_with(folder: Path, change: Callable[[dict], None]) -> list[str]:
    model = folder / "model"
    shutil.copytree(ROOT / "LesionSuite" / "Models" / "wmh_flair_dualtasker", model)
    meta = json.loads((model / "metadata.json").read_text())
    change(meta)
    (model / "metadata.json").write_text(json.dumps(meta))
    return ["wmh", "predict", str(REAL_T1), "--model", str(model), "--out", str(folder / "out")]


def _set_channels(value: int) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        args = next(iter(meta["networks"].values()))["args"]
        key = next(k for k in ("channels", "features", "init_features") if k in args)
        args[key] = [value] + list(args[key])[1:] if isinstance(args[key], list) else value
    return change


def _cohort_with_bad_targets(folder: Path, task: str, text: str) -> list[str]:
    subprocess.run([sys.executable, "-m", "lesion_core", "synth", task, "--n", "1",
                    "--size", "small", "--out", str(folder / "cohort")], check=True,
                   capture_output=True, cwd=ROOT)
    for targets in (folder / "cohort").rglob("targets.json"):
        targets.write_text(text)
    steps = ["--steps", "1"] if task == "wmh" else ["--classifier-steps", "1",
                                                    "--segmenter-steps", "1"]
    return [task, "train", "--synthetic", str(folder / "cohort"), *steps,
            "--out", str(folder / "model")]


def _file(folder: Path, name: str, content: bytes) -> str:
    (folder / name).write_bytes(content)
    return str(folder / name)


def _two_series(folder: Path) -> list[str]:
    import pydicom
    from pydicom.data import get_testdata_file

    for index in range(2):
        dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        dataset.SeriesInstanceUID = pydicom.uid.generate_uid()
        dataset.SOPInstanceUID = pydicom.uid.generate_uid()
        dataset.save_as(str(folder / f"s{index}.dcm"))
    return ["ich", "predict", str(folder), "--out", str(folder / "out")]


def _out_under_file(folder: Path) -> list[str]:
    blocker = _file(folder, "a_file", b"x")
    return ["wmh", "predict", str(REAL_T1), "--t1", "--out", f"{blocker}/out"]


PROBES = [
    Probe("uniform noise as FLAIR", lambda f: ["wmh", "predict", _noise(f, "n.nii.gz", 0, 1000),
                                               "--out", str(f / "out")]),
    Probe("uniform noise as SWI", lambda f: ["cmb", "predict", _noise(f, "n.nii.gz", 0, 1000),
                                             "--out", str(f / "out")]),
    Probe("uniform noise in the HU range as CT",
          lambda f: ["ich", "predict", _noise(f, "n.nii.gz", -1000, 2000), "--out", str(f / "out")]),
    Probe("binary 0/1 mask as FLAIR", lambda f: ["wmh", "predict", _real_t1_with(
        f, "mask.nii.gz", lambda a: (a > np.percentile(a, 70)).astype(np.uint8)),
        "--out", str(f / "out")]),
    Probe("5x5x5 image to cmb predict", lambda f: ["cmb", "predict", _noise(
        f, "tiny.nii.gz", 0, 1000, (5, 5, 5)), "--out", str(f / "out")]),
    Probe("head whose header says 0.5x0.5x10 mm", lambda f: ["wmh", "predict", _real_t1_with(
        f, "mislabelled.nii.gz", spacing=(0.5, 0.5, 10.0)), "--t1", "--out", str(f / "out")]),
    Probe("head whose header says 1 mm (its voxels are 1.75 mm)", lambda f: [
        "wmh", "predict", _real_t1_with(f, "small.nii.gz", spacing=(1.0, 1.0, 1.0)), "--t1",
        "--out", str(f / "out")]),
    Probe("uniform noise as FLAIR, --force", lambda f: [
        "wmh", "predict", _noise(f, "n.nii.gz", 0, 1000), "--out", str(f / "out"), "--force"],
        expect="forced"),
    Probe("zero pixdim", _zero_pixdim),
    Probe("float64 voxels of +-1e308 as CT", _huge_values),
    Probe("--out is an existing file", lambda f: ["wmh", "predict", str(REAL_T1), "--t1",
                                                  "--out", _file(f, "a_file", b"x")]),
    Probe("--out under a regular file", _out_under_file),
    Probe("--stem ../../x", lambda f: ["wmh", "predict", str(REAL_T1), "--t1", "--stem",
                                       "../../x", "--out", str(f / "out")]),
    Probe("DICOM NumberOfFrames '1A' (validate on the folder)",
          lambda f: _dicom(f, "NumberOfFrames", "1A")),
    Probe("DICOM RescaleSlope 'zz'", lambda f: _dicom(f, "RescaleSlope", "zz")),
    Probe("DICOM SliceThickness 'x5' (optional: the slice positions give the spacing)",
          lambda f: _dicom(f, "SliceThickness", "x5"), expect="ok"),
    Probe("NRRD, gzip encoding over garbage", _nrrd_gzip_garbage),
    Probe("NIfTI with an unknown datatype code", _nifti_bad_datatype),
    Probe("model metadata: negative channel count", lambda f: _model_with(f, _set_channels(-4))),
    Probe("model metadata: 200,000 channels", lambda f: _model_with(f, _set_channels(200_000))),
    Probe("wmh train --table on an empty CSV", lambda f: [
        "wmh", "train", "--table", _file(f, "empty.csv", b""), "--out", str(f / "m")]),
    Probe("wmh train --synthetic with a corrupt targets.json",
          lambda f: _cohort_with_bad_targets(f, "wmh", "{not json")),
    Probe("ich train --synthetic with a corrupt targets.json",
          lambda f: _cohort_with_bad_targets(f, "ich", "[1, 2]")),
    Probe("cmb evaluate on a binary table", lambda f: [
        "cmb", "evaluate", _file(f, "table.csv", bytes(range(256)) * 8)]),
    Probe("synth --n 0", lambda f: ["synth", "wmh", "--n", "0", "--out", str(f / "o")]),
    Probe("synth --n -3", lambda f: ["synth", "wmh", "--n", "-3", "--out", str(f / "o")]),
    Probe("synth --spacing -1", lambda f: ["synth", "wmh", "--spacing", "-1", "--out", str(f / "o")]),
    Probe("synth --spacing 0", lambda f: ["synth", "wmh", "--spacing", "0", "--out", str(f / "o")]),
    Probe("synth --out under a file", lambda f: ["synth", "wmh", "--n", "1", "--out",
                                                 _file(f, "a_file", b"x") + "/o"]),
    Probe("DICOM folder with two series, no --series", _two_series),
    Probe("validate ''", lambda f: ["validate", ""]),
    Probe("info /usr (a tree with no image)", lambda f: ["info", "/usr"]),
]


def run_probe(probe: Probe, timeout: float = 600) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = probe.make(Path(tmp))
        done = subprocess.run([sys.executable, "-m", "lesion_core", *argv], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        err = [line for line in done.stderr.splitlines() if line.strip()
               and not re.match(r"^\S+ (predict|train|evaluate):", line)]  # progress bars
        out = done.stdout
    if probe.expect == "forced":
        passed = done.returncode == 0 and "OUT OF DISTRIBUTION" in out
        shown = next((line for line in out.splitlines() if "OUT OF DISTRIBUTION" in line), "")
    elif probe.expect == "ok":
        passed = done.returncode == 0 and not err
        shown = " / ".join(out.strip().splitlines()[:2])
    else:
        passed = (done.returncode == 2 and len(err) == 1 and "Traceback" not in done.stderr)
        shown = err[-1] if err else out.strip().splitlines()[-1:] or ""
    return {"probe": probe.name, "command": "lesion-suite " + " ".join(
        a.replace(tmp, "TMP") for a in argv), "exit": done.returncode,
            "shown": str(shown).replace(tmp, "TMP"), "passed": passed}


def interrupted_predict(delays_s=(0.0, 0.01, 0.03, 0.06, 0.1, 0.2)) -> dict:
    """Ctrl-C at moments of ``wmh predict --t1`` writing its files (``delays_s`` after its
    staging folder appears) into a folder holding an earlier result: every file must stay
    whole and readable, with no staging folder or marker left behind."""
    import signal
    import time

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = [sys.executable, "-m", "lesion_core", "wmh", "predict", str(REAL_T1), "--t1",
                "--out", str(out)]
        subprocess.run(argv, capture_output=True, check=True)
        names = sorted(p.name for p in out.iterdir())
        codes, damaged = [], []
        for k, delay in enumerate(delays_s):
            # A shell starts background jobs with Ctrl-C ignored, and Python keeps an ignored
            # SIGINT ignored: give the child the terminal's default, as a user's run has.
            child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                      signal.SIG_DFL))
            while child.poll() is None and not any(out.glob(".staging-*")):
                time.sleep(0.001)
            time.sleep(delay)
            child.send_signal(signal.SIGINT)
            codes.append(child.wait())
            left = sorted(p.name for p in out.iterdir())
            if left != names:
                damaged.append(f"try {k}: files {left}")
            for path in out.glob("*.nii.gz"):
                try:
                    read_volume(path).array.sum()
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    damaged.append(f"try {k}: {path.name}: {exc}")
            for path in out.glob("*.json"):
                try:
                    json.loads(path.read_text())
                except ValueError as exc:
                    damaged.append(f"try {k}: {path.name}: {exc}")
    shown = (f"exit codes {codes}; after each, the folder held the complete earlier or new "
             "result" if not damaged else "; ".join(damaged))
    return {"probe": f"Ctrl-C at {len(delays_s)} moments of `wmh predict` writing over an "
                     "earlier result", "command": "",
            "exit": "/".join(map(str, sorted(set(codes)))), "shown": shown,
            "passed": not damaged and 130 in codes}


def render(results: list[dict]) -> str:
    lines = [BEGIN, "", "| probe | exit | what the user sees | outcome |", "|---|---|---|---|"]
    for r in results:
        shown = r["shown"].replace("|", "\\|")
        lines.append(f"| {r['probe']} | {r['exit']} | {shown} | "
                     f"{'as required' if r['passed'] else '**FAILS**'} |")
    passed = sum(r["passed"] for r in results)
    lines += ["", f"{passed} of {len(results)} probes end as required.", "", END]
    return "\n".join(lines)


def _print(result: dict) -> None:
    print(f"{'ok  ' if result['passed'] else 'FAIL'} {result['probe']}: exit "
          f"{result['exit']}: {result['shown'][:160]}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--only", help="run only the probes whose name contains this")
    args = parser.parse_args()
    results = []
    for probe in PROBES:
        if args.only and args.only not in probe.name:
            continue
        results.append(run_probe(probe))
        _print(results[-1])
    if not args.only or args.only in "interrupted":
        results.append(interrupted_predict())
        _print(results[-1])
    if not args.only:
        text = args.doc.read_text() if args.doc.exists() else f"{BEGIN}\n{END}\n"
        start, end = text.index(BEGIN), text.index(END) + len(END)
        args.doc.write_text(text[:start] + render(results) + text[end:])
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

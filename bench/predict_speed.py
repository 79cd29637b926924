"""Prediction speed: one whole ``lesion-suite <task> predict`` on a 1 mm scan.

    python bench/predict_speed.py --task cmb|wmh|ich [--seed 900001] [--runs 3]
                                  [--other-tree DIR] [--work DIR]

One synthetic subject with 1 mm anatomy (``lesion-suite synth <task> --spacing 1.0``; the
benchmark seed range, timed only) is made once: the SWI for ``cmb``, the FLAIR for ``wmh``,
the CT for ``ich``; FLAIR and CT, acquired in thick slices, are resampled (trilinear) to
1 mm voxels, the full-size case the speed targets name (:data:`SCANS`). Then
``python -m lesion_core <task> predict`` with the shipped model runs on it ``--runs``
times, each a fresh process as a user runs it (interpreter start, imports, model load,
registration, the networks and writing the files included). Reported: the median and the
range of the wall time, the peak resident memory of the child process (its own, from
``wait4``), and the 1-minute load average before each run. With ``--other-tree DIR`` (the
root of another checkout, e.g. a ``git worktree`` of an older commit) its CLI runs too,
taking turns with this one, so that a load from other jobs falls on both.

Prints a markdown table. Figures on a machine that others load are upper bounds for time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import machine_description  # noqa: E402

#: The checkout this script belongs to.
THIS_TREE = HERE.parent


#: What each task predicts on: the synth options, the image file of a subject, and whether
#: it is resampled to 1 mm voxels (the 2D FLAIR and the CT are acquired in 4-5 mm slices;
#: the 3D SWI is kept as acquired, 1 x 1 x 1.5 mm).
SCANS = {"cmb": (["--sequence", "SWI"], "swi.nii.gz", False),
         "wmh": ([], "flair.nii.gz", True), "ich": ([], "ct.nii.gz", True)}


def make_scan(task: str, seed: int, work: Path) -> Path:
    """The 1 mm image of one synthetic subject of ``task`` (made once, then reused)."""
    options, name, resample = SCANS[task]
    folder = work / f"{task}_{seed}_1mm"
    acquired = folder / f"{task}_{seed}" / name
    image = folder / f"{name.split('.')[0]}_1mm.nii.gz" if resample else acquired
    if image.exists():
        return image
    command = [sys.executable, "-m", "lesion_core", "synth", task, "--n", "1", "--seed",
               str(seed), "--spacing", "1.0", *options, "--out", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(THIS_TREE))
    if done.returncode != 0 or not acquired.exists():
        raise SystemExit(f"synth failed ({done.returncode}): {done.stderr[-2000:]}")
    if resample:
        from lesion_core.io import read_volume, write_volume

        write_volume(read_volume(acquired).resample_to_spacing(1.0), image)
    return image


def _environment(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m lesion_core`` the one of checkout ``tree``."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    path = [str(tree / "LesionSuite")] + inherited
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def predict_once(task: str, tree: Path, image: Path, out: Path) -> dict:
    """One ``<task> predict`` process of ``tree``: wall seconds and its peak memory (MB)."""
    command = [sys.executable, "-m", "lesion_core", task, "predict", str(image),
               "--out", str(out)]
    load = os.getloadavg()[0]
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        began = time.monotonic()
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                 env=_environment(tree))
        # wait4: the child's own resource use (getrusage of all children takes the maximum
        # over every child waited for so far).
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{task} predict failed ({child.returncode}): see {log}")
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024.0, "load": load}


def _shape(image: Path) -> str:
    from lesion_core.io import read_volume

    return " x ".join(str(n) for n in read_volume(image).shape[:3])


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| tree | runs | wall s, median (range) | peak memory MB, max "
             "| load average (1 min) |", "|---|---|---|---|---|"]
    for name, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        loads = [r["load"] for r in runs]
        lines.append(f"| {name} | {len(runs)} | {statistics.median(walls):.1f} "
                     f"({min(walls):.1f}-{max(walls):.1f}) | "
                     f"{max(r['peak_mb'] for r in runs):.0f} | "
                     f"{min(loads):.1f}-{max(loads):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(SCANS), required=True)
    parser.add_argument("--seed", type=int, default=900001, help="synthetic subject's seed")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of each tree (the median is reported)")
    parser.add_argument("--other-tree", help="root of another checkout to time in turns")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="predict_speed_"))
    image = make_scan(args.task, args.seed, work)
    trees = {"this": THIS_TREE}
    if args.other_tree:
        trees["other"] = Path(args.other_tree).resolve()
    # Named by the tree's folder only: the table goes into docs, machine paths do not.
    results: dict[str, list[dict]] = {f"{name} ({tree.name})": [] for name, tree in trees.items()}
    for run in range(args.runs):
        for (name, tree), key in zip(trees.items(), results):
            results[key].append(predict_once(args.task, tree, image,
                                             work / f"out_{args.task}_{name}_{run}"))
    print(f"{args.task} prediction of one 1 mm scan ({image.name}, seed {args.seed}, "
          f"{_shape(image)} voxels), shipped model, `lesion-suite {args.task} predict`; "
          f"{machine_description()}.\n")
    print(table(results))


if __name__ == "__main__":
    main()

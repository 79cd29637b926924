"""CMB prediction speed: one whole ``lesion-suite cmb predict`` on a 1 mm SWI scan.

    python bench/cmb_predict_speed.py [--seed 900001] [--runs 3] [--other-tree DIR]
                                      [--work DIR]

One synthetic SWI subject with 1 mm anatomy (``lesion-suite synth cmb --sequence SWI
--spacing 1.0``; the benchmark seed range, timed only) is made once, then
``python -m lesion_core cmb predict`` with the shipped model runs on it ``--runs`` times,
each a fresh process as a user runs it (interpreter start, imports, model load, the three
stages, registration to MNI and writing the files included). Reported: the median and the
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


def make_scan(seed: int, work: Path) -> Path:
    """The SWI image of one 1 mm synthetic subject (made once, then reused)."""
    folder = work / f"swi_{seed}_1mm"
    image = folder / f"cmb_{seed}" / "swi.nii.gz"
    if not image.exists():
        command = [sys.executable, "-m", "lesion_core", "synth", "cmb", "--n", "1",
                   "--seed", str(seed), "--spacing", "1.0", "--sequence", "SWI",
                   "--out", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True,
                              env=_environment(THIS_TREE))
        if done.returncode != 0 or not image.exists():
            raise SystemExit(f"synth failed ({done.returncode}): {done.stderr[-2000:]}")
    return image


def _environment(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m lesion_core`` the one of checkout ``tree``."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    path = [str(tree / "LesionSuite")] + inherited
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def predict_once(tree: Path, image: Path, out: Path) -> dict:
    """One ``cmb predict`` process of ``tree``: wall seconds and its peak memory (MB)."""
    command = [sys.executable, "-m", "lesion_core", "cmb", "predict", str(image),
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
        raise SystemExit(f"cmb predict failed ({child.returncode}): see {log}")
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024.0, "load": load}


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
    parser.add_argument("--seed", type=int, default=900001, help="synthetic subject's seed")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of each tree (the median is reported)")
    parser.add_argument("--other-tree", help="root of another checkout to time in turns")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cmb_predict_speed_"))
    image = make_scan(args.seed, work)
    trees = {"this": THIS_TREE}
    if args.other_tree:
        trees["other"] = Path(args.other_tree).resolve()
    # Named by the tree's folder only: the table goes into docs, machine paths do not.
    results: dict[str, list[dict]] = {f"{name} ({tree.name})": [] for name, tree in trees.items()}
    for run in range(args.runs):
        for (name, tree), key in zip(trees.items(), results):
            results[key].append(predict_once(tree, image, work / f"out_{name}_{run}"))
    print(f"CMB prediction of one 1 mm SWI scan ({image.name}, seed {args.seed}), shipped "
          f"model, `lesion-suite cmb predict`; {machine_description()}.\n")
    print(table(results))


if __name__ == "__main__":
    main()

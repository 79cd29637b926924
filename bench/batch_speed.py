"""Batch and multi-process training speed: what ``lesion-suite batch`` and ``torchrun`` give.

    python bench/batch_speed.py [--task wmh] [--n 6] [--spacing 1.5] [--skip 1000]
                                [--train-steps 12] [--train-repeats 3] [--only-training]
                                [--work DIR] [--out docs/benchmarks.md]

1. Cases per minute of ``lesion-suite batch TASK`` with ``--workers 1`` and ``--workers 2``
   on ``--n`` synthetic subjects (``--spacing`` mm anatomy, the benchmark's 1.5 mm by
   default) with the shipped model on the CPU, each a whole command as a user runs it
   (worker start-up and model loading included), and their ratio; the median seconds of
   one case inside a worker; the peak resident memory of a worker.
2. The overhead of resuming: a batch whose ``--skip`` cases are all finished (records and
   folders in place) run again, which skips them all: the whole command, and the library
   call alone (listing, reading the records, writing the summary).
3. Training samples per second of one process (all cores as torch threads) against two
   ``torchrun`` processes on gloo (one thread each): a MONAI U-Net(16-32-64) on 4 random
   48^3 patches per process and step, through the training engine, after 2 warm-up steps;
   the median of ``--train-repeats`` runs of each, taken in turns.

Prints the ``batch_speed`` section of the benchmark document; ``--out FILE`` also replaces
that section in FILE. Figures on a machine that others load are upper bounds for time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import lesion_core  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(1, str(HERE.parent / "LesionSuite"))

#: The image column of each task's synthetic cohort table.
IMAGE_COLUMN = {"wmh": "flair", "cmb": "swi", "ich": "ct"}
#: Seeds of the speed cohort: the shifted set's range, in the standard domain; only timed.
SEED0 = 950000


def _environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


# -------------------------------------------------------------------- the cohort
def make_table(task: str, n: int, spacing: float, work: Path) -> Path:
    """A CSV of ``n`` synthetic subjects (made once, then reused from ``work``)."""
    from lesion_core.synth import SubjectConfig, make_cohort
    from lesion_core.synth.anatomy import AnatomyConfig

    folder = work / f"cohort_{task}_{spacing:g}mm"
    labels = make_cohort(task, list(range(SEED0, SEED0 + n)), folder,
                         SubjectConfig(anatomy=AnatomyConfig(spacing_mm=spacing)), workers=2)
    table = work / f"cases_{task}_{n}_{spacing:g}mm.csv"
    with open(labels, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "path"])
        writer.writerows([row["subject"], row[IMAGE_COLUMN[task]]] for row in rows)
    return table


# ---------------------------------------------------------------- batch workers
def batch_run(task: str, table: Path, out: Path, workers: int) -> dict:
    """One whole ``lesion-suite batch`` command: wall time and what its records say."""
    import shutil

    from lesion_core.batch import BatchState, list_cases

    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "lesion_core", "batch", task, "--inputs", str(table),
               "--out", str(out), "--workers", str(workers), "--device", "cpu"]
    env = _environment()
    env.pop("OMP_NUM_THREADS", None)  # the batch splits the cores between its workers
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"batch failed ({done.returncode}): {done.stderr[-2000:]}")
    threads = re.search(r"x (\d+) thread", done.stdout)
    state = BatchState(out)
    records = [state.read(case.case_id) for case in list_cases(table)]
    seconds = [r.seconds for r in records if r is not None and r.status == "done"]
    peaks = [r.worker_peak_mb for r in records if r is not None and r.worker_peak_mb]
    return {"workers": workers, "threads": int(threads.group(1)) if threads else None,
            "cases": len(records), "done": len(seconds), "wall_s": wall,
            "cases_per_min": 60.0 * len(records) / wall,
            "case_median_s": statistics.median(seconds) if seconds else None,
            "peak_mb": max(peaks) if peaks else None, "stdout": done.stdout.strip()}


# ----------------------------------------------------------------------- resume
def resume_overhead(task: str, skip: int, work: Path) -> dict:
    """Time to skip ``skip`` finished cases: the whole command, and the library call."""
    import shutil

    from lesion_core.batch import DONE, BatchPlan, BatchState, CaseRecord, WorkerSetup
    from lesion_core.batch import list_cases, run_batch

    folder = work / "resume"
    shutil.rmtree(folder, ignore_errors=True)
    out = folder / "out"
    table = folder / "cases.csv"
    folder.mkdir(parents=True)
    image = folder / "image.nii.gz"
    image.write_bytes(b"")  # never read: every case is finished
    table.write_text("case_id,path\n" + "".join(f"case{i:05d},{image}\n" for i in range(skip)))
    state = BatchState(out)
    state.create()
    for case in list_cases(table):
        (out / case.case_id).mkdir(parents=True)
        state.write(CaseRecord(case.case_id, case.path, DONE, seconds=10.0,
                               figures={"lesion_ml": 1.0}))
    command = [sys.executable, "-m", "lesion_core", "batch", task, "--inputs", str(table),
               "--out", str(out), "--device", "cpu"]
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=_environment())
    command_s = time.monotonic() - began
    if done.returncode != 0 or f"{skip} finished earlier were skipped" not in done.stdout:
        raise SystemExit(f"resume run failed: {done.stdout}{done.stderr[-2000:]}")
    began = time.monotonic()
    setup = WorkerSetup(task, str(out), dict)  # never started: nothing to run
    plan = BatchPlan(setup, ("lesion_ml",), json.loads((state.folder / "settings.json")
                                                       .read_text()))
    outcome = run_batch(list_cases(table), plan)
    library_s = time.monotonic() - began
    assert outcome.skipped == skip and outcome.ran == 0
    began = time.monotonic()
    startup = subprocess.run([sys.executable, "-m", "lesion_core", "--version"],
                             capture_output=True, env=_environment())
    startup_s = time.monotonic() - began
    assert startup.returncode == 0
    return {"cases": skip, "command_s": command_s, "library_s": library_s,
            "startup_s": startup_s}


# --------------------------------------------------------------------- training
def train_worker(steps: int, result: Path) -> None:
    """Run under torchrun: train the U-Net and, on rank 0, write the step times."""
    import torch
    from monai.networks.nets import UNet

    from lesion_core.training import OptimConfig, run_training
    from lesion_core.training.distributed import ranks_from_environment

    ranks = ranks_from_environment()
    batch, size = 4, 48
    stamps: list[float] = []

    def sample(ctx):
        stamps.append(time.perf_counter())
        x = torch.randn(batch, 1, size, size, size, generator=ctx.generator)
        return x, (x > 0.5).float()

    def loss(net, xy, ctx):
        x, y = xy
        return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)}

    def build():
        return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(16, 32, 64),
                    strides=(2, 2), num_res_units=1)

    config = OptimConfig(steps=steps, lr=1e-3, batch_size=batch, seed=0, device="cpu",
                         precision="fp32", log_every=10 ** 6)
    began = time.perf_counter()
    run_training(build, sample, loss, config, prefetch=False)
    stamps.append(time.perf_counter())
    if ranks.main:
        warm = 2
        rate = (steps - warm) * batch * ranks.world_size / (stamps[-1] - stamps[warm])
        result.write_text(json.dumps({"processes": ranks.world_size,
                                      "threads": torch.get_num_threads(),
                                      "samples_per_s": rate,
                                      "wall_s": time.perf_counter() - began}))


def training_speed(steps: int, repeats: int, work: Path) -> list[dict]:
    """Samples/s of 1 process (all cores) and 2 gloo processes (one thread each): the
    median of ``repeats`` runs of each, taken in turns so that a load from other jobs
    falls on both."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    setups = ((1, cores), (2, max(1, cores // 2)))
    runs: dict[int, list[dict]] = {processes: [] for processes, _ in setups}
    for repeat in range(repeats):
        for processes, threads in setups:
            result = work / f"train_{processes}_{repeat}.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={processes}", str(Path(__file__).resolve()),
                       "--train-worker", "--train-steps", str(steps), "--result", str(result)]
            done = subprocess.run(command, capture_output=True, text=True,
                                  env=_environment(OMP_NUM_THREADS=str(threads)))
            if done.returncode != 0:
                raise SystemExit(f"torchrun failed: {done.stderr[-2000:]}")
            runs[processes].append(json.loads(result.read_text()))
    summary = []
    for processes, _ in setups:
        rates = [run["samples_per_s"] for run in runs[processes]]
        summary.append({**runs[processes][0], "samples_per_s": statistics.median(rates),
                        "all_samples_per_s": rates})
    return summary


# ---------------------------------------------------------------------- report
def section(task: str, n: int, spacing: float, runs: list[dict], resume: dict,
            training: list[dict]) -> str:
    from bench_report import machine_description

    one, two = runs
    ratio = two["cases_per_min"] / one["cases_per_min"]
    train_ratio = training[1]["samples_per_s"] / training[0]["samples_per_s"]
    lines = [
        "<!-- bench:batch_speed -->",
        "## Batch and multi-process training speed (`bench/batch_speed.py`)",
        "",
        f"Machine: {machine_description()}; {date.today().isoformat()}.",
        "",
        f"`lesion-suite batch {task}`, shipped model, CPU, {n} synthetic subjects "
        f"({spacing:g} mm anatomy); each figure is one whole command (start-up and model "
        "loading included):",
        "",
        "| workers (threads each) | cases/min | median s per case in a worker | peak memory "
        "per worker (MB) |",
        "|---|---|---|---|",
    ]
    for run in runs:
        lines.append(f"| {run['workers']} ({run['threads']}) | {run['cases_per_min']:.2f} | "
                     f"{run['case_median_s']:.1f} | {run['peak_mb']:.0f} |")
    lines += [
        "",
        f"- `--workers 2` / `--workers 1`: **{ratio:.2f}x** cases per minute.",
        f"- Resuming a batch of {resume['cases']} finished cases (all skipped): "
        f"{resume['command_s']:.2f} s for the whole command, of which "
        f"{resume['library_s']:.2f} s listing the cases, reading their records and writing "
        f"the summary ({resume['startup_s']:.2f} s is the interpreter and CLI start-up "
        "alone).",
        f"- Training, U-Net(16-32-64) on 4 x 48^3 per process and step, fp32, median of "
        f"{len(training[0]['all_samples_per_s'])} runs each: 1 process x "
        f"{training[0]['threads']} threads {training[0]['samples_per_s']:.2f} samples/s "
        f"({_spread(training[0])}); 2 gloo processes x {training[1]['threads']} thread "
        f"{training[1]['samples_per_s']:.2f} samples/s ({_spread(training[1])}): "
        f"**{train_ratio:.2f}x**.",
        "- reproduce: `python bench/batch_speed.py --task " + task + f" --n {n} --spacing "
        f"{spacing:g}`",
        "<!-- /bench:batch_speed -->",
    ]
    return "\n".join(lines) + "\n"


def _spread(run: dict) -> str:
    rates = run["all_samples_per_s"]
    return f"{min(rates):.2f}-{max(rates):.2f}" if len(rates) > 1 else "one run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(IMAGE_COLUMN), default="wmh")
    parser.add_argument("--n", type=int, default=6, help="cases of the speed cohort")
    parser.add_argument("--spacing", type=float, default=1.5, help="anatomy voxel size (mm)")
    parser.add_argument("--skip", type=int, default=1000, help="finished cases to resume over")
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--train-repeats", type=int, default=3,
                        help="runs of each training setup (the median is reported)")
    parser.add_argument("--only-training", action="store_true",
                        help="measure the training speed alone")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--out", help="also replace the section in this document")
    parser.add_argument("--train-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_worker:
        train_worker(args.train_steps, Path(args.result))
        return
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="batch_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    training = training_speed(args.train_steps, args.train_repeats, work)
    if args.only_training:
        print(json.dumps(training, indent=1))
        return
    table = make_table(args.task, args.n, args.spacing, work)
    runs = [batch_run(args.task, table, work / f"out_{k}", k) for k in (1, 2)]
    resume = resume_overhead(args.task, args.skip, work)
    (work / "batch_speed.json").write_text(json.dumps(
        {"runs": runs, "resume": resume, "training": training}, indent=1))
    text = section(args.task, args.n, args.spacing, runs, resume, training)
    print(text)
    if args.out:
        from bench_report import update_document

        update_document(Path(args.out), {"batch_speed": text})


if __name__ == "__main__":
    main()

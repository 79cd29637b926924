"""Benchmark a method on a fixed synthetic benchmark set and update ``docs/benchmarks.md``.

Usage (from the repository root)::

    python bench/run_benchmark.py --method wmh_threshold|cmb_log|ich_threshold|all \\
        [--set standard|shifted] --n 10 --spacing 1.5 --out docs/benchmarks.md

For every method: the cases of its kind in the chosen set (``bench_cases.SETS``) are
generated once and cached (``bench_cases``), then a fresh Python process runs the method
on each case, timing it and measuring the peak resident memory of that process, and
computes the metrics (``bench_metrics``). Per-case results are kept as JSON beside the
set's cache; the method's section of the Markdown file is rebuilt from the results of
both sets that exist (``bench_report``: one column per set and the gap). Methods are
looked up in ``bench_methods.METHODS``; ``--plugin MODULE`` imports a module that
registers more.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
try:
    import lesion_core  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(1, str(ROOT / "LesionSuite"))

import bench_cases  # noqa: E402
import bench_methods  # noqa: E402


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MB (``ru_maxrss`` is kB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _import_plugins(names: list[str]) -> None:
    import importlib
    for name in names:
        importlib.import_module(name)


def _grid_note(cases_facts: list[dict]) -> str:
    in_plane = [f["in_plane_mm"] for f in cases_facts if "in_plane_mm" in f]
    thick = [f["slice_thickness_mm"] for f in cases_facts if "slice_thickness_mm" in f]
    if not in_plane or not thick:
        return "evaluated on the acquired image grids"
    orientations = sorted({str(f.get("orientation")) for f in cases_facts if f.get("orientation")})
    tilts = [math.dist(f["domain"]["acquisition"]["tilt_deg"], (0, 0, 0))
             for f in cases_facts if "domain" in f]
    tilt = f", tilted {min(tilts):.0f}-{max(tilts):.0f} degrees" if tilts else ""
    return (f"evaluated on the acquired image grids: {min(in_plane):.2g}-{max(in_plane):.2g} mm "
            f"in-plane, {min(thick):.2g}-{max(thick):.2g} mm slices, "
            f"orientations {', '.join(orientations) or 'n/a'}{tilt}")


def run_worker(args: argparse.Namespace) -> int:
    """Run one method over the cached cases (in this fresh process); write a result JSON."""
    import numpy as np

    import bench_metrics
    _import_plugins(args.plugin)
    method = bench_methods.METHODS[args.worker]
    paths = [bench_cases.case_path(method.kind, seed, args.spacing, Path(args.cache), args.set)
             for seed in bench_cases.benchmark_seeds(args.n, args.set)]
    start_rss = _rss_mb()
    per_case, times, facts, seeds = [], [], [], []
    for index, path in enumerate(paths):
        case = bench_cases.load_case(path)
        t0 = time.perf_counter()
        prediction = method.predict(case)
        times.append(time.perf_counter() - t0)
        row = bench_metrics.case_metrics(method.kind, case, prediction)
        row.update({"subject": case.subject_id, "seed": case.seed, "seconds": times[-1],
                    "extra": prediction.extra})
        per_case.append(row)
        facts.append(case.acquisition.get(case.primary_modality, {}))
        seeds.append(case.seed)
        print(f"  {method.name} {index + 1}/{len(paths)} {case.subject_id}: {times[-1]:.2f} s",
              flush=True)
        del case, prediction
    result = {
        "method": method.name, "kind": method.kind, "description": method.description,
        "device": method.device, "set": args.set, "n_cases": len(paths), "seeds": seeds,
        "spacing_mm": args.spacing, "grid_note": _grid_note(facts),
        "summary": bench_metrics.summarize(method.kind, per_case),
        "timing": {"median_s": float(np.median(times)), "max_s": float(np.max(times)),
                   "per_case_s": times},
        "peak_rss_mb": _rss_mb(), "start_rss_mb": start_rss,
        "code": bench_cases.code_fingerprint(), "per_case": per_case,
    }
    Path(args.result).write_text(json.dumps(result, indent=1, default=float))
    return 0


def run_method(name: str, args: argparse.Namespace, machine: str) -> dict:
    """Generate/cache the cases of ``args.set``, run ``name`` in a fresh process, store
    and return its result."""
    method = bench_methods.METHODS[name]
    bench_cases.ensure_cases(method.kind, args.n, args.spacing, Path(args.cache),
                             workers=args.workers, bench_set=args.set)
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                   "--set", args.set, "--n", str(args.n), "--spacing", str(args.spacing),
                   "--cache", str(args.cache), "--result", str(result_path)]
        for plugin in args.plugin:
            command += ["--plugin", plugin]
        subprocess.run(command, check=True)
        result = json.loads(result_path.read_text())
    plugins = "".join(f" --plugin {p}" for p in args.plugin)
    result.update({
        "machine": machine, "date": datetime.date.today().isoformat(),
        "command": f"python bench/run_benchmark.py --method {name} --set {args.set} "
                   f"--n {args.n} --spacing {args.spacing:g} --out {args.out}{plugins}"})
    bench_cases.result_path(method.kind, name, args.n, args.spacing, Path(args.cache),
                            args.set).write_text(json.dumps(result, indent=1))
    return result


def record_in_model(folder: str, name: str, result: dict) -> None:
    """Store the summary in a model bundle's ``evaluation`` (its model card): the standard
    set's figures at the top level, the shifted set's under ``"shifted"``; each set's
    entry replaces only its own."""
    from lesion_core.bundle import read_metadata, record_evaluation
    entry = {"benchmark": name, "cases": result["n_cases"], "seeds": result["seeds"],
             "anatomy_mm": result["spacing_mm"], "machine": result["machine"],
             "date": result["date"], "median_seconds": result["timing"]["median_s"],
             "peak_memory_mb": result["peak_rss_mb"],
             "figures": {metric: value for metric, value, _ in result["summary"]}}
    evaluation = dict(read_metadata(folder).evaluation or {})
    if result["set"] == "standard":
        evaluation = {**entry, **({"shifted": evaluation["shifted"]} if "shifted" in evaluation else {})}
    else:
        evaluation[result["set"]] = entry
    record_evaluation(folder, evaluation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="all",
                        help="registered method name, or 'all' (default)")
    parser.add_argument("--set", choices=tuple(bench_cases.SETS), default="standard",
                        help="benchmark set: standard (seeds 900000+, default) or shifted "
                             "(seeds 950000+, acquisitions outside the training ranges)")
    parser.add_argument("--n", type=int, default=10, help="cases per kind (default 10)")
    parser.add_argument("--spacing", type=float, default=1.5,
                        help="anatomy voxel size of the synthetic subjects, mm (default 1.5)")
    parser.add_argument("--out", default="docs/benchmarks.md", help="Markdown file to update")
    parser.add_argument("--cache", default=str(bench_cases.CACHE_DIR),
                        help="cache folder of generated cases (default bench/.cache)")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes generating missing cases (default 2)")
    parser.add_argument("--plugin", action="append", default=[],
                        help="module to import that registers more methods (repeatable)")
    parser.add_argument("--record-model", metavar="DIR",
                        help="also store the summary in this model bundle's metadata "
                             "(its model card's evaluation entry)")
    parser.add_argument("--list", action="store_true", help="list registered methods and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        raise SystemExit("--n must be at least 1")
    if args.worker:
        return run_worker(args)
    _import_plugins(args.plugin)
    if args.list:
        for method in bench_methods.METHODS.values():
            print(f"{method.name:20s} {method.kind:4s} {method.description}")
        return 0
    names = list(bench_methods.METHODS) if args.method == "all" else [args.method]
    unknown = [n for n in names if n not in bench_methods.METHODS]
    if unknown:
        raise SystemExit(f"unknown method {unknown[0]!r}; registered: "
                         f"{', '.join(bench_methods.METHODS)}")
    import bench_report
    machine = bench_report.machine_description()
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    for name in names:
        print(f"benchmarking {name} on {args.n} case(s) of the {args.set} set at "
              f"{args.spacing:g} mm", flush=True)
        result = run_method(name, args, machine)
        results = bench_cases.latest_results(result["kind"], name, args.n, args.spacing,
                                             Path(args.cache))
        section = bench_report.render_section(name, results)
        bench_report.update_document(out, {name: section})
        print(section, flush=True)
        if args.record_model:
            record_in_model(args.record_model, name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

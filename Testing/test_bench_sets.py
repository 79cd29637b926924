"""The benchmark harness's two sets (standard and shifted): seeds, domains, cache folders,
per-set results and the side-by-side report with the gap."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_cases
    import bench_report
    return bench_cases, bench_report


def _result(bench_set: str, dice: float, seeds: list[int], auc_note: str) -> dict:
    return {"method": "toy", "kind": "ich", "description": "A toy method", "device": "cpu",
            "set": bench_set, "n_cases": len(seeds), "seeds": seeds, "spacing_mm": 1.5,
            "grid_note": "evaluated on the acquired image grids",
            "summary": [["Dice, any ICH", {"mean": dice, "sd": 0.1, "n": len(seeds)}, "scans with haemorrhage"],
                        ["scan AUC", 0.9, auc_note],
                        ["true CMBs / detections", "3 / 4", "all scans"]],
            "timing": {"median_s": 1.0, "max_s": 2.0}, "peak_rss_mb": 500.0, "start_rss_mb": 300.0,
            "code": "0123456789", "machine": "a machine", "date": "2026-12-03",
            "command": f"python bench/run_benchmark.py --method toy --set {bench_set}"}


def test_sets_have_their_own_seeds_domain_and_cache(bench, tmp_path):
    bench_cases, _ = bench
    assert list(bench_cases.benchmark_seeds(2)) == [900_000, 900_001]
    assert list(bench_cases.benchmark_seeds(2, "shifted")) == [950_000, 950_001]
    assert bench_cases.SETS["shifted"] == ("shifted_benchmark", "shifted")
    standard = bench_cases.case_path("ich", 900_000, 1.5, tmp_path)
    shifted = bench_cases.case_path("ich", 950_000, 1.5, tmp_path, "shifted")
    code = bench_cases.code_fingerprint()
    assert standard.parent.name == f"ich_1.5mm_{code}"  # the standard cache keeps its name
    assert shifted.parent.name == f"ich_1.5mm_shifted_{code}"


def test_report_shows_both_sets_side_by_side_with_the_gap(bench):
    _, bench_report = bench
    section = bench_report.render_section("toy", {
        "standard": _result("standard", 0.5, [900_000, 900_001], "2 pos / 0 neg"),
        "shifted": _result("shifted", 0.3, [950_000, 950_001], "1 pos / 1 neg")})
    lines = section.splitlines()
    assert lines[0] == "<!-- bench:toy -->" and lines[-1] == "<!-- /bench:toy -->"
    assert "| metric | standard set | shifted set | gap (standard − shifted) | n | note |" in lines
    assert "| Dice, any ICH | 0.5 ± 0.1 | 0.3 ± 0.1 | +0.2 | 2 / 2 | scans with haemorrhage |" in lines
    assert "| scan AUC | 0.9 | 0.9 | +0 |  | standard: 2 pos / 0 neg; shifted: 1 pos / 1 neg |" in lines
    assert "| true CMBs / detections | 3 / 4 | 3 / 4 |  |  | all scans |" in lines
    assert any("shifted set: 2 synthetic ICH subjects, seeds 950000-950001" in line for line in lines)
    assert any("--set shifted" in line for line in lines)


def test_report_marks_a_set_that_was_not_run(bench):
    _, bench_report = bench
    section = bench_report.render_section("toy", {"shifted": _result("shifted", 0.3, [950_000], "x")})
    assert "| Dice, any ICH | not run | 0.3 ± 0.1 |  | 1 | scans with haemorrhage |" in section
    assert "- standard set: not run yet" in section


def test_latest_results_prefer_the_current_code_then_the_newest_older_run(bench, tmp_path):
    bench_cases, _ = bench
    def write(bench_set, code, dice, age_s=0):
        path = bench_cases.result_path("ich", "toy", 2, 1.5, tmp_path, bench_set, code)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_result(bench_set, dice, [1, 2], "")))
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age_s))

    write("standard", "aaaaaaaaaa", 0.1, age_s=100)
    write("standard", "bbbbbbbbbb", 0.2, age_s=10)
    found = bench_cases.latest_results("ich", "toy", 2, 1.5, tmp_path)
    assert set(found) == {"standard"} and found["standard"]["summary"][0][1]["mean"] == 0.2
    write("standard", None, 0.3, age_s=1000)  # the current code wins even when older
    write("shifted", None, 0.05)
    found = bench_cases.latest_results("ich", "toy", 2, 1.5, tmp_path)
    assert found["standard"]["summary"][0][1]["mean"] == 0.3
    assert found["shifted"]["summary"][0][1]["mean"] == 0.05

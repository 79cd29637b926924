"""``lesion-suite batch``: cohort listing, shards, resume after SIGKILL, bad input in a cohort,
crashes and dead workers recorded while the batch goes on, shard summaries merged."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lesion_core.batch import (CRASHED, DONE, FAILED, BatchPlan, BatchState, Shard,
                               WorkerSetup, list_cases, merge_summaries, run_batch,
                               threads_per_worker)
from lesion_core.cli import main
from lesion_core.errors import CommandError
from lesion_core.output_folder import WRITING_MARKER

HERE = Path(__file__).resolve().parent


def _environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((out / ".batch").glob("events*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ich_model(tmp_path_factory) -> Path:
    """A tiny untrained ICH model (the toy config of the ICH tests)."""
    import torch
    from ich_toys import TOY

    from lesion_core.ich.model import ICHModel, ICHThresholds, save_ich_model
    from lesion_core.ich.segmenter import build_segmenter
    from lesion_core.ich.train import build_classifier

    torch.manual_seed(0)
    model = ICHModel(None, build_classifier(TOY).eval(), build_segmenter(TOY).eval(), TOY,
                     ICHThresholds(0.5, 0.5, (0.3, 0.4, 0.5, 0.6, 0.7)), "segmenter")
    folder = tmp_path_factory.mktemp("batch_ich_model") / "model"
    save_ich_model(folder, model, name="ich_toy", version="1.0")
    return folder


def _toy_cts(folder: Path, n: int) -> Path:
    """``n`` small synthetic head CTs (toy heads: they pass with --force)."""
    from ich_toys import toy_ct

    from lesion_core.io import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_volume(toy_ct(i, blood_slices=(3, 4), shape=(40, 40, 24)),
                     folder / f"case{i:02d}.nii.gz")
    return folder


# ------------------------------------------------------------------ listing, shards
def test_a_folder_lists_one_case_per_image_or_series_folder(tmp_path):
    for name in ("b.nii.gz", "a.nii", "c.nrrd", "d.nhdr", "d.raw", "seg.seg.nrrd",
                 "notes.json", ".hidden.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "series1").mkdir()
    (tmp_path / ".batch").mkdir()
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == ["a", "b", "c", "d", "series1"]
    assert all(Path(c.path).is_absolute() for c in cases)


def test_a_table_lists_its_rows(tmp_path):
    (tmp_path / "t.csv").write_text("case_id,path,series\nx,img/x.nii.gz,\ny,/abs/y,1.2.3\n")
    cases = list_cases(tmp_path / "t.csv")
    assert [(c.case_id, c.series) for c in cases] == [("x", None), ("y", "1.2.3")]
    assert cases[0].path == str(tmp_path / "img" / "x.nii.gz") and cases[1].path == "/abs/y"
    for text, problem in (("id,path\nx,a\n", "lacks the column"),
                          ("case_id,path\nx,a\nX,b\n", "two cases have the id"),
                          ("case_id,path\n../x,a\n", "not a plain folder name"),
                          ("case_id,path\n,a\n", "has no case_id"),
                          ("case_id,path\n", "holds no case")):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(CommandError, match=problem):
            list_cases(tmp_path / "bad.csv")
    with pytest.raises(CommandError, match="does not exist"):
        list_cases(tmp_path / "absent")


def test_shards_cover_a_cohort_once_with_no_coordination():
    ids = [f"sub-{i:03d}" for i in (7, 3, 12, 1, 9, 4, 11, 0, 5, 2, 8, 10, 6)]
    for count in range(1, 6):
        shards = [Shard(i, count).select(ids, key=str) for i in range(count)]
        flat = [case for shard in shards for case in shard]
        assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        # The same split whatever order the cohort was listed in.
        assert [Shard(i, count).select(ids[::-1], key=str) for i in range(count)] == shards
    assert Shard.parse("2/4") == Shard(2, 4) and Shard.parse(None).whole
    assert Shard(1, 3).label == "shard-1-of-3" and Shard().label == ""
    for bad in ("4/4", "1/0", "a/b", "-1/2", "1"):
        with pytest.raises(CommandError):
            Shard.parse(bad)


def test_threads_are_split_between_workers():
    assert threads_per_worker(1, {}) >= threads_per_worker(2, {}) >= 1
    assert threads_per_worker(1, {"OMP_NUM_THREADS": "1"}) == 1
    assert threads_per_worker(10 ** 6, {}) == 1


def test_shard_summaries_merge_into_one_table(tmp_path):
    header = "case_id,path,status,error,seconds,present\n"
    (tmp_path / "batch_summary.shard-0-of-2.csv").write_text(header + "a,/a,done,,1.0,1\n"
                                                             "c,/c,failed,bad,0.1,\n")
    with pytest.raises(CommandError, match="shard.s. 1 of 2 are missing"):
        merge_summaries([tmp_path])
    assert merge_summaries([tmp_path], allow_missing=True).counts == {"done": 1, "failed": 1}
    (tmp_path / "batch_summary.shard-1-of-2.csv").write_text(header + "b,/b,done,,2.0,0\n")
    merged = merge_summaries([tmp_path], tmp_path / "all.csv")
    assert [r["case_id"] for r in _rows(tmp_path / "all.csv")] == ["a", "b", "c"]
    assert merged.counts == {"done": 2, "failed": 1} and len(merged.shards) == 2
    (tmp_path / "batch_summary.shard-0-of-3.csv").write_text(header)
    with pytest.raises(CommandError, match="different sizes"):
        merge_summaries([tmp_path])


# --------------------------------------------------- the workers: failures, deaths
def test_failures_crashes_and_a_dead_worker_are_recorded_and_the_batch_goes_on(tmp_path):
    """User errors fail a case, exceptions and a worker killed inside a case crash it; the
    other cases are done, by a new worker where one died."""
    from batch_toys import load_missing_model, load_toy_model

    from lesion_core.errors import ModelBundleError

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    plan = {"a": "0", "b": "bad", "c": "crash", "d": "die", "e": "0.1", "f": "0"}
    for name, text in plan.items():
        (inputs / f"{name}.nii").write_text(text)
    # A model the workers cannot load stops the batch with its own error, and the right
    # model afterwards is not refused as "other settings" (nothing was made).
    wrong = WorkerSetup("batchtoy", str(tmp_path / "out"), load_missing_model, threads=1)
    with pytest.raises(ModelBundleError, match="there is no model here"):
        run_batch(list_cases(inputs), BatchPlan(wrong, ("size",), {"model": "wrong"}))
    setup = WorkerSetup("batchtoy", str(tmp_path / "out"), load_toy_model, threads=1)
    outcome = run_batch(list_cases(inputs), BatchPlan(setup, ("size",), {"model": "toy"},
                                                      workers=2))
    rows = {r["case_id"]: r for r in _rows(outcome.summary)}
    assert {k: r["status"] for k, r in rows.items()} == {
        "a": DONE, "b": FAILED, "c": CRASHED, "d": CRASHED, "e": DONE, "f": DONE}
    assert "the toy image is bad" in rows["b"]["error"]
    assert rows["c"]["error"] == "internal error: RuntimeError: a bug in the toy"
    assert "exit code 3" in rows["d"]["error"] and rows["e"]["size"] == "3"
    record = BatchState(tmp_path / "out").read("c")
    assert "Traceback" in record.details and record.worker_pid
    assert outcome.counts == {DONE: 3, FAILED: 1, CRASHED: 2} and outcome.ran == 6
    # A rerun skips them all; with retry_failed it runs the three that did not finish.
    again = run_batch(list_cases(inputs), BatchPlan(setup, ("size",), {"model": "toy"}))
    assert (again.ran, again.skipped) == (0, 6)
    (inputs / "b.nii").write_text("0")
    retried = run_batch(list_cases(inputs), BatchPlan(setup, ("size",), {"model": "toy"},
                                                      retry_failed=True))
    assert retried.ran == 3 and retried.counts[DONE] == 4
    with pytest.raises(CommandError, match="other settings"):
        run_batch(list_cases(inputs), BatchPlan(setup, ("size",), {"model": "other"}))


# ----------------------------------------------------- the command, a real model
def test_a_batch_killed_halfway_resumes_and_runs_every_case_once(ich_model, tmp_path):
    """12 synthetic CTs, 2 workers, SIGKILL once half are done; the rerun does the rest,
    every case is done exactly once, and no worker outlived the batch."""
    inputs = _toy_cts(tmp_path / "cts", 12)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lesion_core", "batch", "ich", "--inputs", str(inputs),
               "--out", str(out), "--model", str(ich_model), "--force", "--workers", "2",
               "--device", "cpu"]
    batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=_environment())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and batch.poll() is None:
        if (out / ".batch").is_dir() and sum(e["event"] == DONE for e in _events(out)) >= 6:
            break
        time.sleep(0.02)
    assert batch.poll() is None, batch.stderr.read().decode()[-2000:]
    workers = _children(batch.pid)
    os.kill(batch.pid, signal.SIGKILL)
    batch.wait()
    state = BatchState(out)
    finished_before = [c.case_id for c in list_cases(inputs)
                       if state.is_done(state.read(c.case_id))]
    assert 6 <= len(finished_before) < 12
    _wait_gone(workers)

    rerun = subprocess.run(command, capture_output=True, text=True, env=_environment(),
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(finished_before)} finished earlier were skipped" in rerun.stdout
    rows = _rows(out / "batch_summary.csv")
    assert [r["case_id"] for r in rows] == [f"case{i:02d}" for i in range(12)]
    assert {r["status"] for r in rows} == {DONE}
    assert all(r["volume_ml"] != "" and r["present"] in ("0", "1") for r in rows)
    done = [e["case_id"] for e in _events(out) if e["event"] == DONE]
    assert sorted(done) == [r["case_id"] for r in rows], "a case was done twice"
    for row in rows:
        folder = out / row["case_id"]
        assert not (folder / WRITING_MARKER).exists()
        assert sorted(p.name for p in folder.iterdir()) == [
            "ich_cam.nii.gz", "ich_labels.nii.gz", "ich_slices.csv", "ich_summary.json"]


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux; elsewhere none are checked)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _wait_gone(pids: set[int], seconds: float = 30.0) -> None:
    """Wait until none of ``pids`` runs (orphaned workers end with their batch)."""
    deadline = time.monotonic() + seconds
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
                if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                    alive.discard(pid)  # a zombie has ended; only its parent may reap it
            except (ProcessLookupError, FileNotFoundError):
                alive.discard(pid)
        time.sleep(0.05)
    assert not alive, f"batch workers outlived the batch: {sorted(alive)}"


def test_two_shards_cover_the_cohort_and_merge(ich_model, tmp_path, capsys):
    inputs = _toy_cts(tmp_path / "cts", 5)
    out = tmp_path / "out"
    common = ["batch", "ich", "--inputs", str(inputs), "--out", str(out), "--model",
              str(ich_model), "--force", "--device", "cpu"]
    for index in (0, 1):
        assert main(common + ["--shard", f"{index}/2"]) == 0
    first, second = (_rows(out / f"batch_summary.shard-{i}-of-2.csv") for i in (0, 1))
    ids = [r["case_id"] for r in first] + [r["case_id"] for r in second]
    assert sorted(ids) == [f"case{i:02d}" for i in range(5)] and len(set(ids)) == 5
    assert len(first) == 3 and len(second) == 2
    assert main(["batch-merge", str(out)]) == 0
    assert "merged 2 shard summaries: 5 cases (5 done)" in capsys.readouterr().out
    merged = _rows(out / "batch_summary.csv")
    assert [r["case_id"] for r in merged] == sorted(ids)
    # Another model into the same folder is refused before anything runs.
    assert main(common[:6] + ["--model", str(tmp_path), "--force"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_inputs_in_a_cohort_are_recorded_and_the_others_done(tmp_path, capsys):
    """WMH (an MR task) over a cohort with a truncated file, a 2D image, a CT and a missing
    path among two good FLAIRs: four one-line errors, two results, exit code 0."""
    import nibabel as nib
    from ich_toys import toy_ct
    from wmh_toys import save_tiny_models

    from lesion_core.cli.synth import small_config
    from lesion_core.io import write_volume
    from lesion_core.synth import make_cohort

    models = save_tiny_models(tmp_path / "models")
    make_cohort("wmh", [41, 42], tmp_path / "cohort", small_config("wmh"))
    good = [tmp_path / "cohort" / f"wmh_{s:05d}" / "flair.nii.gz" for s in (41, 42)]
    whole = gzip.decompress(good[0].read_bytes())
    (tmp_path / "truncated.nii.gz").write_bytes(gzip.compress(whole[:len(whole) // 2]))
    nib.save(nib.Nifti1Image(np.ones((64, 64), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    write_volume(toy_ct(1, shape=(40, 40, 24)), tmp_path / "ct.nii.gz")
    table = tmp_path / "cases.csv"
    table.write_text("case_id,path\n" + "".join(
        f"{case},{path}\n" for case, path in (
            ("good1", good[0]), ("good2", good[1]), ("truncated", "truncated.nii.gz"),
            ("flat", "flat.nii.gz"), ("ct", "ct.nii.gz"), ("missing", "absent.nii.gz"))))
    code = main(["batch", "wmh", "--inputs", str(table), "--out", str(tmp_path / "out"),
                 "--model", str(models["flair"]), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "6 cases: 2 done, 4 failed, 0 crashed" in printed
    rows = {r["case_id"]: r for r in _rows(tmp_path / "out" / "batch_summary.csv")}
    assert {k: r["status"] for k, r in rows.items()} == {
        "good1": DONE, "good2": DONE, "truncated": FAILED, "flat": FAILED, "ct": FAILED,
        "missing": FAILED}
    for case in ("truncated", "flat", "ct", "missing"):
        error = rows[case]["error"]
        assert "\n" not in error and error.startswith(rows[case]["path"])
    assert "does not exist" in rows["missing"]["error"]
    for case in ("good1", "good2"):
        assert float(rows[case]["brain_ml"]) > 0 and rows[case]["arwmc_total"] != ""
        assert (tmp_path / "out" / case / "wmh_summary.json").is_file()
    assert not any((tmp_path / "out" / case).exists() for case in ("truncated", "flat", "ct"))

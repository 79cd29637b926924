"""The feedback store keeps every reader decision through crashes and concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from lesion_core.errors import FeedbackStoreError
from lesion_core.feedback import FeedbackStore, FeedbackStoreWarning, Record
from lesion_core.volume import Volume

posix_only = pytest.mark.skipif(os.name != "posix", reason="uses SIGKILL")


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "feedback")


def _run_python(code: str, *args: str) -> subprocess.Popen:
    """Start a child interpreter (the same one, so lesion_core imports)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_record_fields_and_round_trip(store: FeedbackStore) -> None:
    case = store.case("sub-001")
    rec = case.record("cmb.candidate", "c12", {"decision": "accept"}, reader="dr_a",
                      model_id="cmb-default", model_version="1.0.0")
    assert rec.time.endswith("Z") and len(rec.record_id) == 36
    line = (store.root / "sub-001" / "records.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["target"] == "c12"
    assert case.records() == [rec]
    assert store.cases() == ["sub-001"]


def test_latest_decision_wins(store: FeedbackStore) -> None:
    case = store.case("s1")
    case.record("cmb.candidate", "c1", {"decision": "accept"}, reader="a")
    case.record("cmb.candidate", "c2", {"decision": "reject"}, reader="a")
    last = case.record("cmb.candidate", "c1", {"decision": "reject"}, reader="b")
    state = case.state()
    assert state.get("cmb.candidate", "c1") == last
    assert state.get("cmb.candidate", "c2").payload == {"decision": "reject"}
    assert set(state.of_kind("cmb.candidate")) == {"c1", "c2"}


def test_undo_restores_earlier_state_and_redo(store: FeedbackStore) -> None:
    case = store.case("s1")
    first = case.record("wmh.rating", "frontal_left", {"score": 1}, reader="a")
    second = case.record("wmh.rating", "frontal_left", {"score": 3}, reader="a")
    undo = case.undo(second.record_id, reader="a")
    assert undo.kind == "undo" and undo.payload["undoes"] == second.record_id
    assert case.state().get("wmh.rating", "frontal_left") == first
    redo = case.undo(undo.record_id, reader="a")  # undoing the undo restores it
    assert case.state().get("wmh.rating", "frontal_left") == second
    case.undo(redo.record_id)
    case.undo(first.record_id)
    assert case.state().get("wmh.rating", "frontal_left") is None
    with pytest.raises(FeedbackStoreError, match="already undone"):
        case.undo(first.record_id)
    with pytest.raises(FeedbackStoreError, match="no record"):
        case.undo("not-a-record")


@pytest.mark.parametrize("bad", ["../evil", "a/b", "a\\b", "..", ".hidden", "", "with space",
                                 "CON", "trailing."])
def test_bad_case_id_refused(store: FeedbackStore, bad: str) -> None:
    with pytest.raises(FeedbackStoreError, match="is not allowed") as info:
        store.case(bad)
    assert "no path separators" in str(info.value)
    assert not store.root.exists()


def test_torn_last_line_skipped_and_next_append_repairs(store: FeedbackStore) -> None:
    case = store.case("s1")
    kept = [case.record("ich.slice", f"k={k}", {"ich": True}) for k in range(3)]
    with open(case.records_path, "ab") as fh:
        fh.write(b'{"record_id": "torn", "case_')
    with pytest.warns(FeedbackStoreWarning, match="cut off"):
        result = case.read()
    assert result.records == kept and result.problems[0].torn_tail
    new = case.record("ich.slice", "k=9", {"ich": False})
    with pytest.warns(FeedbackStoreWarning, match="line 4"):  # sealed fragment, now mid-file
        assert case.records() == kept + [new]
    with pytest.raises(FeedbackStoreError, match="line 4 is not a valid record") as info:
        case.read(strict=True)
    assert "records.jsonl" in str(info.value) and "repair or delete" in str(info.value)


def test_corrupt_middle_line_reported(store: FeedbackStore) -> None:
    case = store.case("s1")
    a = case.record("k", "t1")
    with open(case.records_path, "ab") as fh:
        fh.write(b"\x00\xffgarbage\n" + json.dumps({"no": "fields"}).encode() + b"\n")
    b = case.record("k", "t2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = case.read()
    assert result.records == [a, b]
    assert [p.line for p in result.problems] == [2, 3] and len(caught) == 2


@posix_only
def test_sigkill_during_write_keeps_complete_records(store: FeedbackStore) -> None:
    child = _run_python("""
        import os, signal, sys
        from lesion_core.feedback import FeedbackStore
        case = FeedbackStore(sys.argv[1]).case("crash")
        for i in range(20):
            case.record("cmb.candidate", f"c{i}", {"i": i}, reader="r")
        fd = os.open(case.records_path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b'{"record_id": "half-written", "payl')
        os.kill(os.getpid(), signal.SIGKILL)
    """, str(store.root))
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()
    case = store.case("crash")
    with pytest.warns(FeedbackStoreWarning):
        records = case.records()
    assert [r.payload["i"] for r in records] == list(range(20))
    case.record("cmb.candidate", "c20", {"i": 20})
    with pytest.warns(FeedbackStoreWarning):
        assert len(case.state().of_kind("cmb.candidate")) == 21


@posix_only
def test_sigkill_in_tight_write_loop(store: FeedbackStore) -> None:
    child = _run_python("""
        import sys
        from lesion_core.feedback import FeedbackStore
        case = FeedbackStore(sys.argv[1]).case("loop")
        i = 0
        while True:
            case.record("ich.slice", f"k={i}", {"i": i, "pad": "x" * 4000})
            i += 1
    """, str(store.root))
    path = store.root / "loop" / "records.jsonl"
    deadline = time.monotonic() + 30
    while (not path.exists() or path.read_bytes().count(b"\n") < 30) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeedbackStoreWarning)  # a torn tail is allowed
        records = store.case("loop").records()
    assert len(records) >= 30
    assert [r.payload["i"] for r in records] == list(range(len(records)))


def test_two_writers_interleave_without_corruption(store: FeedbackStore) -> None:
    code = """
        import sys
        from lesion_core.feedback import FeedbackStore
        case = FeedbackStore(sys.argv[1]).case("shared")
        for i in range(200):
            case.record("cmb.candidate", f"{sys.argv[2]}-{i}", {"i": i, "pad": "y" * 500},
                        reader=sys.argv[2])
    """
    children = [_run_python(code, str(store.root), name) for name in ("a", "b")]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeedbackStoreWarning)
        result = store.case("shared").read(strict=True)
    assert len(result.records) == 400 and not result.problems
    for reader in ("a", "b"):
        mine = [r.payload["i"] for r in result.records if r.reader == reader]
        assert mine == list(range(200))
    assert len({r.record_id for r in result.records}) == 400


def _label(value: int) -> Volume:
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    array = np.zeros((6, 5, 4), dtype=np.int64)
    array[1:3, 2, 1] = value
    return Volume(array, affine)


def test_label_images_are_versioned_never_overwritten(store: FeedbackStore) -> None:
    case = store.case("s1")
    r1 = case.save_label_image("cmb_edit", _label(1), reader="a", payload={"note": "first"})
    first_bytes = (case.folder / r1.payload["file"]).read_bytes()
    r2 = case.save_label_image("cmb_edit", _label(2), reader="b")
    assert r1.payload["file"] != r2.payload["file"] and r2.payload["version"] == 2
    assert (case.folder / r1.payload["file"]).read_bytes() == first_bytes
    assert [p.name for p in case.label_versions("cmb_edit")] == [
        "cmb_edit_v001.nii.gz", "cmb_edit_v002.nii.gz"]
    latest = case.load_label_image("cmb_edit")
    assert latest.array.max() == 2 and np.allclose(latest.affine, _label(2).affine)
    assert case.load_label_image("cmb_edit", version=1).array.max() == 1
    assert case.state().get("label_image", "cmb_edit") == r2
    case.undo(r2.record_id)  # undo points back at version 1, file 2 stays on disk
    assert case.load_label_image("cmb_edit").array.max() == 1
    assert len(case.label_versions("cmb_edit")) == 2
    assert not [p for p in case.labels_dir.iterdir() if p.name.startswith(".tmp")]


def test_missing_label_and_bad_label_name(store: FeedbackStore) -> None:
    case = store.case("s1")
    with pytest.raises(FeedbackStoreError, match="no label image"):
        case.load_label_image("nothing")
    with pytest.raises(FeedbackStoreError, match="not allowed"):
        case.save_label_image("../x", _label(1))


def test_case_info_and_unstorable_payload(store: FeedbackStore) -> None:
    case = store.case("s1")
    assert case.info() == {}
    case.write_info({"image": "flair.nii.gz"})
    assert case.info() == {"image": "flair.nii.gz"}
    with pytest.raises(FeedbackStoreError, match="JSON"):
        case.record("k", "t", {"bad": object()})
    assert case.records() == []


def test_record_from_dict_rejects_incomplete() -> None:
    with pytest.raises(ValueError, match="missing"):
        Record.from_dict({"record_id": "x"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_payload_is_refused_and_nothing_written(store: FeedbackStore,
                                                                 bad: float) -> None:
    """Python's json would write a bare ``NaN``, which no strict JSON reader accepts."""
    case = store.case("s1")
    case.record("k", "t0", {"score": 0.5})
    with pytest.raises(FeedbackStoreError, match="NaN or infinity") as err:
        case.record("k", "t1", {"score": [1.0, bad]})
    assert "records.jsonl" in str(err.value) and "None" in str(err.value)
    with pytest.raises(FeedbackStoreError, match="NaN or infinity"):
        case.save_label_image("lesions", _label(1), payload={"volume_ml": bad})
    assert case.label_versions("lesions") == []  # no image without its record
    lines = case.records_path.read_bytes().splitlines()
    assert len(lines) == 1 and all(json.loads(line, parse_constant=lambda c: 1 / 0)
                                   for line in lines)


def test_records_written_with_nan_before_stay_readable(store: FeedbackStore) -> None:
    """A file written by an earlier version (bare NaN on a line) loses no decision."""
    case = store.case("s1")
    kept = case.record("k", "t0", {"score": 0.5})
    old = json.dumps({**kept.__dict__, "record_id": "old-1", "target": "t1",
                      "payload": {"score": float("nan")}}, separators=(",", ":"))
    with open(case.records_path, "ab") as handle:
        handle.write(old.encode() + b"\n")
    case.record("k", "t2", {"score": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no line is skipped
        records = case.records(strict=True)
    assert [r.target for r in records] == ["t0", "t1", "t2"]
    assert np.isnan(records[1].payload["score"])

"""A reader's saved work from before still loads, and the reviews still write the same.

``Testing/Data/saved_work`` is the feedback store a fixed script of review actions
(``saved_work.py``) wrote with the three task modules as they were before the shared
Slicer task layer. Under the slicer-core wheel: today's reviews show that store as the
reader left it and go on writing into it; and the same actions write the same records
(ids and times aside), the same case facts and the same reader mask, so stores made
before and after mix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")

import saved_work as sw  # noqa: E402

from lesion_core import io as lesion_io  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402


@pytest.fixture
def saved(tmp_path) -> Path:
    """A copy of the saved store, its case images named where the copy put them."""
    root = tmp_path / "saved"
    shutil.copytree(sw.DATA, root)
    for info in root.glob("*/*/case.json"):
        facts = json.loads(info.read_text(encoding="utf-8"))
        facts["image"] = str(info.parent / Path(facts["image"]).name)
        info.write_text(json.dumps(facts), encoding="utf-8")
    return root


def _case_folder(store: Path) -> Path:
    folders = [p for p in store.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def _normalised(case_folder: Path) -> list[dict]:
    """The records without their ids and times; an undo names the index it undoes."""
    lines = (case_folder / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    index = {r["record_id"]: n for n, r in enumerate(records)}
    out = []
    for record in records:
        record = {k: v for k, v in record.items() if k not in ("record_id", "time")}
        if "undoes" in record["payload"]:
            record["payload"] = {**record["payload"],
                                 "undoes": index[record["payload"]["undoes"]]}
        out.append(record)
    return out


# ------------------------------------------------------------------ loading


def test_saved_ratings_show_as_the_reader_left_them(mrml_scene, saved, tmp_path):
    case = sw.make_case("wmh", mrml_scene, tmp_path / "work")
    review = case.open_review(saved / "wmh")
    assert review.case.folder.parent == saved / "wmh" and not review.skipped_lines
    assert review.ratings == {"frontal_left": 2, "total": 11, "temporal_right": 1}
    reader = {f"{r['region']}_{r['side']}".rstrip("_"): r["reader_rating"]
              for r in mb.table_to_rows(case.result.table)}
    assert {k: v for k, v in reader.items() if v} == {"frontal_left": "2", "total": "11",
                                                      "temporal_right": "1"}
    review.set_rating("infratentorial_left", 1)  # the reader goes on where they stopped
    assert case.open_review(saved / "wmh").ratings["infratentorial_left"] == 1


def test_saved_decisions_show_as_the_reader_left_them(mrml_scene, saved, tmp_path):
    case = sw.make_case("cmb", mrml_scene, tmp_path / "work")
    review = case.open_review(saved / "cmb")
    assert [i.decision for i in review.items] == ["accept", "reject", "accept", None, None,
                                                  "add"]
    assert [r["decision"] for r in mb.table_to_rows(case.result.table)] == [
        "accept", "reject", "accept", "", "", "add"]
    assert case.result.markups.GetNumberOfControlPoints() == 6
    review.reject(4)
    assert [i.decision for i in case.open_review(saved / "cmb").items][4] == "reject"


def test_saved_slice_labels_and_mask_show_as_the_reader_left_them(mrml_scene, saved,
                                                                  tmp_path):
    case = sw.make_case("ich", mrml_scene, tmp_path / "work")
    review = case.open_review(saved / "ich")
    assert {k: label.describe() for k, label in review.labels.items()} == {
        0: "no haemorrhage", 4: "haemorrhage: subdural",
        7: "haemorrhage: intraparenchymal, subarachnoid"}
    # A re-run shows the stored mask instead of the model's, which it keeps beside it.
    rerun = case.logic.load_results(case.result.input, tmp_path / "work" / "ich",
                                    feedback_root=saved / "ich")
    assert rerun.reader_mask_version == 1
    assert rerun.segmentation.GetName() == "CT ICH (reader v1)"
    assert rerun.model_segmentation.GetName() == "CT ICH (model)"
    review = case.logic.open_review(rerun, saved / "ich")
    assert review.save_reader_mask().payload["version"] == 2


# ------------------------------------------------------------------ writing


@pytest.mark.parametrize("task", sw.TASKS)
def test_the_same_actions_write_the_same_store(task, mrml_scene, tmp_path):
    case = sw.make_case(task, mrml_scene, tmp_path / "work")
    sw.play(task, case.open_review(tmp_path / "new"))
    before, now = _case_folder(sw.DATA / task), _case_folder(tmp_path / "new")
    assert now.name == before.name                              # the same case id
    assert _normalised(now) == _normalised(before)
    facts = [json.loads((folder / "case.json").read_text()) for folder in (before, now)]
    assert [(f["modality"], Path(f["image"]).name) for f in facts][0] == \
        (facts[1]["modality"], Path(facts[1]["image"]).name)
    images = sorted(p.relative_to(before).as_posix() for p in before.rglob("*.nii.gz"))
    assert images == sorted(p.relative_to(now).as_posix() for p in now.rglob("*.nii.gz"))
    for name in images:
        old, new = (lesion_io.read_volume(folder / name) for folder in (before, now))
        np.testing.assert_array_equal(new.array, old.array)
        np.testing.assert_allclose(new.affine, old.affine, atol=1e-6)

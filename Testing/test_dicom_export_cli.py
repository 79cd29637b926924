"""``lesion-suite <task> predict <DICOM series> --dicom`` end to end, with tiny untrained
models on small synthetic subjects written by ``lesion-suite synth ... --dicom``.

The SEG and SR are published with the other files; they pass dciodvfy; highdicom reads
the SEG back to the NIfTI label map's voxels (as segments); the SR's volumes are the JSON
summary's; ``--dicom`` on a NIfTI input is one clear error before any work.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dciodvfy_check import assert_valid
from lesion_core.cli import main
from lesion_core.dicom_export.export import read_source_datasets
from lesion_core.dicom_export.seg import read_seg_labels
from lesion_core.dicom_export.segments import segment_plan
from lesion_core.dicom_export.sr import sr_measurements
from lesion_core.io import read_volume
from lesion_core.output_folder import WRITING_MARKER


@pytest.fixture(scope="module")
def subjects(tmp_path_factory) -> dict[str, dict]:
    """One small subject of each task with its DICOM series: task -> its table row."""
    folder = tmp_path_factory.mktemp("dicom_subjects")
    assert main(["synth", "all", "--n", "1", "--seed", "5", "--size", "small", "--dicom",
                 "--sequence", "SWI", "--out", str(folder)]) == 0
    rows = {}
    for task in ("wmh", "cmb", "ich"):
        with (folder / task / f"{task}_labels.csv").open(newline="") as handle:
            rows[task] = next(csv.DictReader(handle))
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny untrained bundles of the three tasks (seconds to build and run)."""
    from ich_toys import TOY
    from lesion_core.cmb.candidates import CandidateConfig
    from lesion_core.cmb.discriminator import build_network
    from lesion_core.cmb.model import CMBConfig, CMBModel
    from lesion_core.cmb.stage1 import Stage1Config, build_stage1
    from lesion_core.ich.model import ICHModel, ICHThresholds, save_ich_model
    from lesion_core.ich.segmenter import build_segmenter
    from lesion_core.ich.train import build_classifier
    from lesion_core.tasks import ModelCard
    from wmh_toys import save_tiny_models

    folder = tmp_path_factory.mktemp("dicom_models")
    save_tiny_models(folder / "wmh")
    torch.manual_seed(0)
    stage1 = Stage1Config(features=(4, 8), patch_size=24, inference_roi=48,
                          candidates=CandidateConfig(spacing_mm=2.0))
    config = CMBConfig(stage1=replace(stage1, candidates=CandidateConfig(spacing_mm=2.0,
                                                                         threshold=0.9)))
    CMBModel(None, build_stage1(stage1), build_network("student"), None, config,
             ModelCard("cmb_toy")).save(folder / "cmb")
    save_ich_model(folder / "ich", ICHModel(
        None, build_classifier(TOY).eval(), build_segmenter(TOY).eval(), TOY,
        ICHThresholds(0.5, 0.5, (0.3, 0.4, 0.5, 0.6, 0.7)), "segmenter"),
        name="ich_toy", version="1.0")
    return {"wmh": folder / "wmh" / "flair", "cmb": folder / "cmb", "ich": folder / "ich"}


def _predict(task: str, source: str, model: Path, out: Path, *extra: str) -> int:
    return main([task, "predict", source, "--model", str(model), "--out", str(out),
                 "--device", "cpu", "--force", "--dicom", *extra])


def _check(task: str, out: Path, stem: str, summary_file: str, source: str, capsys) -> dict:
    """The common checks; returns the summary and the SR's volumes."""
    printed = capsys.readouterr().out
    seg_path, sr_path = out / f"{stem}_seg.dcm", out / f"{stem}_sr.dcm"
    assert f"{seg_path}" in printed and f"{sr_path}" in printed
    assert not (out / WRITING_MARKER).exists() and not list(out.glob(".staging-*"))
    for path in (seg_path, sr_path):
        assert_valid(path)
    summary = json.loads((out / summary_file).read_text())
    labels = read_volume(out / f"{stem}_labels.nii.gz" if task == "wmh" else
                         out / f"{task}_labels.nii.gz")
    image = read_volume(source)
    datasets = read_source_datasets(image.meta["dicom_files"])
    back = read_seg_labels(seg_path, datasets)
    plan = segment_plan(task, labels, summary)
    assert np.array_equal(back, plan.segment_map.array)
    assert np.array_equal(back > 0, np.asarray(labels.array) > 0)
    return {"summary": summary, "volumes": sr_measurements(sr_path), "plan": plan}


def test_wmh_predict_dicom_with_a_stem(subjects, models, tmp_path, capsys):
    source = subjects["wmh"]["flair_dicom"]
    out = tmp_path / "wmh"
    assert _predict("wmh", source, models["wmh"], out, "--stem", "case1") == 0
    found = _check("wmh", out, "case1", "case1_summary.json", source, capsys)
    summary, volumes = found["summary"], found["volumes"]
    assert volumes["WMH"] == [pytest.approx(summary["lesion_ml"], rel=1e-9, abs=1e-12)]
    assert volumes["WMH frontal left"] == [
        pytest.approx(summary["region_ml"]["frontal_left"], rel=1e-9, abs=1e-12)]


def test_cmb_predict_dicom(subjects, models, tmp_path, capsys):
    source = subjects["cmb"]["swi_dicom"]
    out = tmp_path / "cmb"
    assert _predict("cmb", source, models["cmb"], out) == 0
    found = _check("cmb", out, "cmb", "cmb_candidates.json", source, capsys)
    kept = [c for c in found["summary"]["candidates"] if c["kept"]]
    assert len(found["plan"].segments) == max(len(kept), 1)
    for candidate in kept:
        assert found["volumes"][f"CMB {candidate['id']}"] == [candidate["volume_mm3"]]


def test_ich_predict_dicom(subjects, models, tmp_path, capsys):
    source = subjects["ich"]["ct_dicom"]
    out = tmp_path / "ich"
    assert _predict("ich", source, models["ich"], out) == 0
    found = _check("ich", out, "ich", "ich_summary.json", source, capsys)
    for key, ml in found["summary"]["volume_ml_by_subtype"].items():
        name = "ICH unknown subtype" if key == "unknown" else f"ICH {key}"
        assert found["volumes"][name] == [ml]
    assert found["volumes"]["ICH scan"] == [found["summary"]["volume_ml"]]


def test_dicom_on_a_nifti_input_is_one_error_before_any_work(subjects, models, tmp_path,
                                                             capsys, monkeypatch):
    from lesion_core.tasks import get_task

    def no_reading(*args, **kwargs):
        raise AssertionError("the input was read although --dicom was refused")
    monkeypatch.setattr(get_task("ich"), "read_input", no_reading)
    out = tmp_path / "never"
    assert _predict("ich", subjects["ich"]["ct"], models["ich"], out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dicom" in err[0] and "not DICOM" in err[0]
    assert subjects["ich"]["ct"] in err[0] and not out.exists()


def test_batch_writes_the_dicom_objects_of_each_dicom_case(subjects, models, tmp_path, capsys):
    """``batch ich --dicom``: the DICOM series case gets its SEG and SR with its other
    files; a NIfTI case fails with the reason and the batch goes on."""
    table = tmp_path / "cases.csv"
    table.write_text(f"case_id,path\nseries,{subjects['ich']['ct_dicom']}\n"
                     f"nifti,{subjects['ich']['ct']}\n")
    out = tmp_path / "batch"
    assert main(["batch", "ich", "--inputs", str(table), "--out", str(out), "--model",
                 str(models["ich"]), "--device", "cpu", "--force", "--dicom"]) == 0
    capsys.readouterr()
    assert_valid(out / "series" / "ich_seg.dcm")
    assert_valid(out / "series" / "ich_sr.dcm")
    with (out / "batch_summary.csv").open(newline="") as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert rows["series"]["status"] == "done"
    assert rows["nifti"]["status"] == "failed" and "--dicom" in rows["nifti"]["error"]
    assert not (out / "nifti").exists()

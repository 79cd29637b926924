"""The command line: exit codes, one-line errors, no tracebacks for user mistakes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from geometry import random_volume
from lesion_core import __version__
from lesion_core.cli import main
from lesion_core.io import write_volume


def run_cli(*args):
    """Run the CLI as a user would (a new process), returning (code, stdout, stderr).
    The timeout only guards against a hang (the demo runs every model: minutes on a
    loaded 2-core machine); speed is measured by the benchmarks, not here."""
    done = subprocess.run([sys.executable, "-m", "lesion_core", *map(str, args)],
                          capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout, done.stderr


def test_version():
    code, out, _ = run_cli("--version")
    assert code == 0 and __version__ in out


def test_info_on_real_t1_reports_its_geometry(real_t1_path, capsys):
    assert main(["info", str(real_t1_path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape"] == [137, 137, 93]
    assert facts["spacing_mm"] == [1.75, 1.75, 1.75]
    assert facts["orientation"] == "LAS" and facts["dtype"] == "float64"
    assert facts["modality_guess"] == "MR" and facts["intensity"]["max"] == 255.0
    assert main(["info", str(real_t1_path)]) == 0
    text = capsys.readouterr().out
    assert "1.75 x 1.75 x 1.75 mm" in text and "LAS" in text


def test_info_on_nrrd_and_oblique_volume(tmp_path, capsys):
    path = write_volume(random_volume(), tmp_path / "oblique.nrrd")
    assert main(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["oblique"] is True and facts["format"] == "nrrd"
    assert np.allclose(facts["spacing_mm"], [0.7, 1.1, 3.0])


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    (b"plain text", "not a supported image file"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, content, fragment):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli("info", path)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(path) in err and fragment in err


def test_corrupt_nifti_from_cli(tmp_path, real_t1_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(real_t1_path.read_bytes()[:5000])
    code, _, err = run_cli("info", broken)
    assert code == 2 and "Traceback" not in err and "truncated or corrupt" in err


def test_demo_runs_every_pipeline_and_reports_progress_lines(tmp_path):
    """The README's main job, once (it generates three synthetic subjects: ~1 min)."""
    from lesion_core.progress import parse_progress_line
    code, out, err = run_cli("--progress-lines", "demo", "--out", tmp_path / "demo", "--spacing", "3")
    assert code == 0, err
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["real_t1"]["resampled"]["orientation"] == "RAS"
    assert report["real_t1"]["resampled"]["spacing_mm"] == [1.0, 1.0, 1.0]
    wmh = report["wmh"]
    assert wmh["arwmc_total_truth"] > 0 and wmh["dice_baseline"] is not None
    assert 0 <= wmh["arwmc_total_dualtasker"] <= 30 and wmh["dice_dualtasker"] is not None
    assert set(wmh["arwmc_levels_dualtasker"]) == set(wmh["arwmc_levels_truth"])
    assert 0.0 <= wmh["rating_segmentation_agreement"] <= 1.0
    assert 0 <= wmh["dice_t1_mode"] <= 1
    assert 800 < report["real_t1"]["brain_ml"] < 2200
    assert (tmp_path / "demo" / "feedback" / "demo_wmh" / "records.jsonl").is_file()
    assert report["cmb"]["cmb_count_truth"] == 8
    assert report["ich"]["ich_ml_truth"] > 0
    subject = tmp_path / "demo" / "synthetic" / report["wmh"]["subject"]
    assert (subject / "flair.nii.gz").exists() and (subject / "wmh_baseline.nii.gz").exists()
    assert (subject / "wmh_dualtasker.nii.gz").exists()
    events = [parse_progress_line(line) for line in out.splitlines()]
    fractions = [e[0] for e in events if e is not None]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any(line.startswith("wmh (") for line in out.splitlines())
    # The HTML reports (lesion_core.report; their content: test_report.py).
    pages = report["html_reports"]
    assert set(pages) == {"wmh", "cmb", "ich", "real_t1", "cohort"}
    assert pages["cohort"] == str(tmp_path / "demo" / "cohort_report.html")
    for kind in ("wmh", "cmb", "ich"):
        assert pages[kind] == str(tmp_path / "demo" / "predictions" / report[kind]["subject"]
                                  / "report.html")
    for page in pages.values():
        text = open(page, encoding="utf-8").read()
        assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    cohort = open(pages["cohort"], encoding="utf-8").read()
    assert "4 case(s)" in cohort and cohort.count('href="') == 4
    assert f"cohort page: {pages['cohort']}" in out


def _bad_inputs(tmp_path, real_t1_path):
    """(path, --modality, expected fragment) for every kind of bad input."""
    import nibabel as nib
    from lesion_core.volume import Volume

    def nifti(name, array, affine=np.eye(4)):
        return write_volume(Volume(np.asarray(array), affine), tmp_path / name)

    rng = np.random.default_rng(0)
    mr = rng.uniform(0, 500, (12, 12, 12)).astype(np.float32)
    with_nan = mr.copy()
    with_nan[1, 2, 3] = np.nan
    ct = np.where(rng.uniform(size=(12, 12, 12)) > 0.5, -1000.0, 40.0).astype(np.float32)
    huge = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    huge.header.set_data_shape((4096, 4096, 64))
    (tmp_path / "huge.nii").write_bytes(huge.header.binaryblock + b"\0" * 4)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(real_t1_path.read_bytes()[:4000])
    (tmp_path / "notes.txt").write_text("not an image")
    return [
        (tmp_path / "notes.txt", None, "not a supported image file"),
        (truncated, None, "truncated or corrupt"),
        (nifti("slice.nii.gz", mr[:, :, :1]), None, "single slice"),
        (nifti("series.nii.gz", np.stack([mr, mr], -1)), None, "4D"),
        (nifti("nan.nii.gz", with_nan), None, "NaN or infinite"),
        (nifti("flat.nii.gz", np.ones((8, 8, 8), np.float32)), None, "constant"),
        (nifti("tiny.nii.gz", mr, np.diag([0.01, 0.01, 0.01, 1])), None, "outside 0.1-10 mm"),
        (tmp_path / "huge.nii", None, "crop it to the head"),
        (nifti("ct.nii.gz", ct), "MR", "looks like CT"),
        (nifti("mr.nii.gz", mr), "CT", "does not look like CT"),
    ]


def test_every_bad_input_exits_2_with_its_one_line_error(tmp_path, real_t1_path):
    for path, modality, fragment in _bad_inputs(tmp_path, real_t1_path):
        args = ["validate", path] + (["--modality", modality] if modality else [])
        code, _, err = run_cli(*args)
        assert code == 2, (path, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert str(path) in err and fragment.lower() in err.lower(), err


def test_validate_accepts_the_real_t1_as_mr(real_t1_path, capsys):
    assert main(["validate", str(real_t1_path), "--modality", "MR"]) == 0
    assert "OK" in capsys.readouterr().out


def test_info_on_dicom_file_and_series_folder(capsys):
    from pathlib import Path
    from pydicom.data import get_testdata_file

    assert main(["info", get_testdata_file("CT_small.dcm"), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["format"] == "dicom" and facts["metadata"]["modality"] == "CT"
    assert facts["intensity"]["min"] < -500  # rescaled to HU
    series = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"
    assert main(["info", str(series), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape"] == [16, 16, 5] and facts["spacing_mm"][2] == pytest.approx(2.5)


def test_model_loading_hands_over_its_model_or_its_error():
    """The model a command loads on another thread reaches the caller's thread, and so
    does the loader's error (the same object, raised where the prediction needs it)."""
    import threading

    from lesion_core.errors import ModelBundleError
    from lesion_core.tasks.cases import ModelLoading

    threads = []
    loading = ModelLoading(lambda: threads.append(threading.current_thread()) or "model")
    assert loading.result() == "model" and loading.result() == "model"
    assert threads[0] is not threading.current_thread() and threads[0].daemon
    error = ModelBundleError("the weights do not match", "Re-copy the model folder")

    def fail():
        raise error

    with pytest.raises(ModelBundleError) as raised:
        ModelLoading(fail).result()
    assert raised.value is error

"""The command line's error paths: one line each, the right exit code, before any long work.

* an internal error (a bug of ours) is one line and exit 1, its traceback in a log file;
* a model folder whose ``metadata.json`` asks for an implausible network is refused before
  a tensor is made;
* an empty, header-only or binary table and a damaged ``targets.json`` are one
  ``CohortError`` naming the file;
* ``synth`` refuses options that would make nothing or fail later;
* ``--series`` chooses the series of a DICOM folder for every ``predict``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lesion_core.bundle import load_bundle, read_metadata
from lesion_core.cli import build_parser, log_folders, main
from lesion_core.errors import CohortError, ModelBundleError
from lesion_core.model_folders import default_models_dir
from lesion_core.tasks import all_tasks
from test_dicom import write_series

TASKS = {task.name: task for task in all_tasks()}


def one_line(err: str) -> str:
    """The only line of ``err`` (a test fails when there are more)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_long_work(monkeypatch):
    """Fail the test when a verb gets as far as loading a model or showing progress."""
    from lesion_core.cli import tasks

    def refuse(*args, **kwargs):
        pytest.fail("the command went on to long work")  # BaseException: not caught by main
    monkeypatch.setattr(tasks, "load_model", refuse)
    monkeypatch.setattr(tasks, "ProgressBar", refuse)


# ------------------------------------------------------------------ internal errors
@pytest.fixture
def broken_info(monkeypatch):
    """``info`` raising what a bug of ours would raise."""
    from lesion_core.cli import info

    def run(args):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr(info, "run", run)


def test_internal_error_is_one_line_and_exit_1_with_a_log(broken_info, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setenv("LESION_SUITE_LOG_DIR", str(tmp_path / "logs"))
    assert main(["info", "image.nii.gz"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("lesion-suite: internal error: RuntimeError: boom second line "
                           "(details in ")
    assert line.endswith("); please report it")
    logs = list((tmp_path / "logs").glob("lesion-suite-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line
    text = logs[0].read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text
    assert "command: lesion-suite info image.nii.gz" in text
    # A second failure gets a file of its own.
    assert main(["info", "image.nii.gz"]) == 1
    assert len(list((tmp_path / "logs").glob("lesion-suite-*.log"))) == 2


def test_internal_error_log_falls_back_to_the_temporary_folder(broken_info, tmp_path,
                                                                monkeypatch, capsys):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("LESION_SUITE_LOG_DIR", str(tmp_path / "a_file" / "logs"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert main(["info", "image.nii.gz"]) == 1
    line = one_line(capsys.readouterr().err)
    logs = list((tmp_path / "tmp" / "lesion-suite-logs").glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in line


def test_internal_error_without_any_log_prints_the_traceback(broken_info, tmp_path,
                                                             monkeypatch, capsys):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("LESION_SUITE_LOG_DIR", str(tmp_path / "a_file" / "logs"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a_file"))
    assert main(["info", "image.nii.gz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lesion-suite: internal error: RuntimeError: boom second line "
                          "(details below); please report it\nTraceback")


@pytest.mark.skipif(os.name == "nt", reason="Windows keeps caches in %LOCALAPPDATA%")
def test_default_log_folder_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LESION_SUITE_LOG_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert log_folders() == [tmp_path / "lesion-suite" / "logs",
                             Path(tempfile.gettempdir()) / "lesion-suite-logs"]


def test_user_errors_keep_exit_2_and_error_json(tmp_path, capsys):
    error_file = tmp_path / "error.json"
    assert main(["--error-json", str(error_file), "info", str(tmp_path / "none.nii.gz")]) == 2
    one_line(capsys.readouterr().err)
    assert json.loads(error_file.read_text())["type"] == "UnreadableFileError"


# --------------------------------------------------------------- model metadata
@pytest.fixture
def model_copy(tmp_path):
    """A copy of the shipped T1 WMH model and a function that edits its network args."""
    folder = tmp_path / "model"
    shutil.copytree(default_models_dir() / "wmh_t1_thickslice", folder)

    def edit(**args):
        meta = json.loads((folder / "metadata.json").read_text())
        meta["networks"]["net"]["args"].update(args)
        (folder / "metadata.json").write_text(json.dumps(meta))
        return folder
    return edit


@pytest.mark.parametrize("args, fragment", [
    ({"channels": [-4, 16, 32, 64]}, "channels = -4, outside the whole numbers 1-1024"),
    ({"channels": [200000, 16, 32, 64]}, "channels = 200000"),
    ({"channels": [8] * 40}, "a list of 40 items"),
    ({"strides": [2, 2, 0]}, "strides = 0"),
    ({"kernel_size": 99}, "kernel_size = 99"),
    ({"num_res_units": 10000}, "num_res_units = 10000"),
    ({"dropout": 1.5}, "dropout = 1.5, not a fraction"),
    ({"spatial_dims": 7}, "spatial_dims = 7"),
    ({"in_channels": float("nan")}, "in_channels = nan, not a finite number"),
    ({"out_channels": True}, "out_channels = True"),
])
def test_implausible_network_args_are_refused_when_read(model_copy, args, fragment):
    folder = model_copy(**args)
    for read in (read_metadata, load_bundle):  # before any network or tensor is made
        with pytest.raises(ModelBundleError) as raised:
            read(folder)
        message = str(raised.value)
        assert message.startswith(f"{folder / 'metadata.json'}: network 'net' (monai.UNet)")
        assert fragment in message and "altered or is corrupt" in message
        assert "re-train" in message


def test_a_network_larger_than_its_weights_is_refused_before_it_is_built(model_copy):
    folder = model_copy(channels=[8, 16, 32, 128])  # plausible, but not these weights
    with pytest.raises(ModelBundleError, match="do not fit its architecture .* holds 298,291"
                       ) as raised:
        load_bundle(folder)
    assert str(raised.value).startswith(str(folder / "metadata.json"))


def test_the_shipped_models_pass_the_checks():
    for folder in sorted(default_models_dir().iterdir()):
        if (folder / "metadata.json").is_file():
            load_bundle(folder)


# ---------------------------------------------------------------------- tables
def write_cohort(folder, kind: str, targets_text: str):
    """A cohort table of one subject whose ``targets.json`` holds ``targets_text`` (the
    images are never opened: the targets are refused first)."""
    subject = folder / "s1"
    subject.mkdir(parents=True)
    (subject / "targets.json").write_text(targets_text)
    image = "flair" if kind == "wmh" else "ct"
    truth = "flair_wmh_truth" if kind == "wmh" else "ct_ich_truth"
    (folder / f"{kind}_labels.csv").write_text(
        f"subject,{image},{truth},targets\n"
        f"s1,{subject / 'image.nii.gz'},{subject / 'truth.nii.gz'},{subject / 'targets.json'}\n")
    return folder


@pytest.mark.parametrize("content, fragment", [
    ("", "the table is empty"),
    ("subject,image,total\n", "the table has a header row but no rows"),
])
def test_wmh_train_on_an_empty_table(tmp_path, capsys, no_long_work, content, fragment):
    table = tmp_path / "ratings.csv"
    table.write_text(content)
    assert main(["wmh", "train", "--table", str(table), "--out", str(tmp_path / "m")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"error: {table}: {fragment}" in line and "Give a ratings CSV" in line


@pytest.mark.parametrize("task", ["wmh", "ich"])
@pytest.mark.parametrize("targets, fragment", [
    ("not JSON {", "the subject's targets cannot be read"),
    ("[1, 2]", "this is not a synthetic subject's targets"),
    ('{"targets": [1]}', "this is not a synthetic subject's targets"),
    ('{"targets": {}, "acquisition": 3}', "this is not a synthetic subject's targets"),
])
def test_train_synthetic_with_a_damaged_targets_file(tmp_path, capsys, no_long_work, task,
                                                     targets, fragment):
    cohort = write_cohort(tmp_path / "cohort", task, targets)
    assert main([task, "train", "--synthetic", str(cohort), "--out", str(tmp_path / "m")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{cohort / 's1' / 'targets.json'}: {fragment}" in line
    assert f"Regenerate the cohort with `lesion-suite synth {task}" in line


def test_synthetic_targets_of_another_shape_inside(tmp_path):
    from lesion_core.ich.data import table_from_synthetic_cohort as ich_table
    from lesion_core.wmh.data import table_from_synthetic_cohort as wmh_table

    wmh = write_cohort(tmp_path / "wmh", "wmh", '{"targets": {"arwmc": [3]}}')
    with pytest.raises(CohortError, match="'arwmc' is not an object"):
        wmh_table(wmh)
    ich = write_cohort(tmp_path / "ich", "ich", '{"targets": {"slices": [{"index": "x"}]}}')
    with pytest.raises(CohortError, match="not those of a synthetic ICH subject"):
        ich_table(ich)


def test_cmb_evaluate_on_a_binary_file(tmp_path, capsys, no_long_work):
    table = tmp_path / "cohort.csv"
    table.write_bytes(bytes(range(256)) * 8)
    assert main(["cmb", "evaluate", str(table)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"error: {table}: cannot read the table" in line
    assert "cmb_labels.csv that 'lesion-suite synth cmb' wrote" in line


# ----------------------------------------------------------------------- synth
@pytest.mark.parametrize("options, fragment", [
    (["--n", "0"], "--n 0 makes no subject"),
    (["--n", "-3"], "--n -3 makes no subject"),
    (["--spacing", "-1"], "--spacing -1 mm is outside 0.5-10 mm"),
    (["--spacing", "0"], "--spacing 0 mm is outside"),
    (["--spacing", "nan"], "--spacing nan mm is outside"),
    (["--workers", "0"], "--workers 0"),
    (["--seed", "-1"], "--seed -1 is negative"),
])
def test_synth_refuses_options_that_make_nothing(tmp_path, capsys, options, fragment):
    out = tmp_path / "cohort"
    assert main(["synth", "wmh", "--size", "small", "--out", str(out)] + options) == 2
    assert fragment in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_synth_refuses_an_output_folder_inside_a_file(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "cohort"
    assert main(["synth", "wmh", "--n", "1", "--size", "small", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{out}: {tmp_path / 'a_file'} is a file, not a folder" in line
    assert main(["synth", "wmh", "--n", "1", "--out", str(tmp_path / "a_file")]) == 2
    assert "is a file, not a folder" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------- --series
def head_slices(shape: tuple[int, int, int], ct: bool) -> np.ndarray:
    """Stored values of a crude head: MR (a bright ball) or CT (brain in a skull; stored =
    HU + 1024)."""
    i, j, k = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(i ** 2 + j ** 2 + k ** 2)
    noise = np.random.default_rng(0).normal(0, 5, shape)
    if ct:
        return (np.where(r < 0.75, 35, np.where(r < 0.9, 1000, -1000)) + noise + 1024
                ).astype(np.int16)
    return (np.where(r < 0.8, 400 + 100 * k, 0) + noise.clip(0)).astype(np.int16)


def write_two_series(folder, modality: str) -> dict[str, int]:
    """A DICOM folder with two series of ``modality`` (MR or CT): UID -> number of slices."""
    lps = np.diag([4.0, 4.0, 4.0, 1.0])
    lps[:3, 3] = [-80, -80, -50]
    ct = modality == "CT"
    series = {"1.2.826.0.1.3680043.8.498.31": 30, "1.2.826.0.1.3680043.8.498.32": 24}
    for n, (uid, slices) in enumerate(series.items()):
        write_series(folder / f"series{n}", head_slices((40, 40, slices), ct), lps,
                     modality=modality, series_uid=uid, intercept=-1024 if ct else 0)
    return series


def modality_of(task: str) -> str:
    return "CT" if task == "ich" else "MR"


@pytest.mark.parametrize("task", ["wmh", "cmb", "ich"])
def test_read_input_reads_the_chosen_series(task, tmp_path):
    series = write_two_series(tmp_path / "dicom", modality_of(task))
    for uid, slices in series.items():
        inputs = TASKS[task].read_input(tmp_path / "dicom", series=uid)
        image = inputs["image"] if isinstance(inputs, dict) else inputs
        assert image.shape == (40, 40, slices)


@pytest.mark.parametrize("task", ["wmh", "cmb", "ich"])
def test_predict_on_a_folder_of_two_series_names_the_option(task, tmp_path, capsys,
                                                            no_long_work):
    write_two_series(tmp_path / "dicom", modality_of(task))
    assert main([task, "predict", str(tmp_path / "dicom"), "--out", str(tmp_path / "out")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "holds 2 series" in line and "--series UID" in line


@pytest.mark.parametrize("task", ["wmh", "cmb", "ich"])
def test_every_predict_takes_series(task):
    args = build_parser().parse_args([task, "predict", "dicom_folder", "--series", "1.2.3"])
    assert args.series == "1.2.3"

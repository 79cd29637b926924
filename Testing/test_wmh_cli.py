"""``lesion-suite wmh predict|train|evaluate`` with tiny models on small synthetic subjects
and the real T1: outputs on the input grid, bundles that load, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from lesion_core import io as lesion_io
from lesion_core.bundle import BundleMetadata, NetworkSpec, save_bundle
from lesion_core.cli import main
from lesion_core.cli.synth import small_config
from lesion_core.feedback import FeedbackStore
from lesion_core.synth import make_cohort
from lesion_core.volume import Volume
from lesion_core.wmh import reader_ratings as rr
from lesion_core.wmh.config import DualTaskerConfig
from lesion_core.wmh.model import load_wmh_model, save_wmh_model
from lesion_core.wmh.train import build_network
from wmh_toys import save_tiny_models

#: For training from the command line: a coarser grid keeps a few steps cheap.
TRAIN_CONFIG = {"spacing_mm": 6.0, "shape": [32, 40, 32], "features": [4, 8, 16]}


def run_cli(*args):
    """Run the CLI as a user would (a new process), returning (code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "lesion_core", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny untrained FLAIR and T1 bundles (a coarser FLAIR one to fine-tune), and a
    bundle of another task."""
    folder = tmp_path_factory.mktemp("wmh_cli_models")
    save_tiny_models(folder)
    coarse = DualTaskerConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in TRAIN_CONFIG.items()})
    save_wmh_model(folder / "flair_coarse", build_network(coarse), coarse)
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8],
            "strides": [2], "num_res_units": 0}
    meta = BundleMetadata(name="cmb_student", task="cmb", version="1.0",
                          input_modality="SWI", spacing_mm=(1.0, 1.0, 1.0),
                          networks={"net": NetworkSpec("monai.UNet", args)})
    from monai.networks.nets import UNet
    save_bundle(folder / "cmb", meta, {"net": UNet(**args)})
    return folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three small synthetic WMH subjects (3.5 mm) as `lesion-suite synth wmh` writes them."""
    folder = tmp_path_factory.mktemp("wmh_cli_cohort")
    make_cohort("wmh", [41, 42, 43], folder, small_config("wmh"))
    return folder


def _records(folder):
    with (folder / "wmh_labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _reads(monkeypatch) -> list[str]:
    """Record every image path the library reads from here on."""
    seen: list[str] = []
    original = lesion_io.read_volume
    monkeypatch.setattr(lesion_io, "read_volume",
                        lambda path, *a, **k: seen.append(str(path)) or original(path, *a, **k))
    return seen


def _same_grid(volume: Volume, image: Volume) -> bool:
    return volume.shape == image.shape and np.allclose(volume.affine, image.affine, atol=1e-4)


# ------------------------------------------------------------------------- predict
def test_predict_writes_outputs_aligned_with_the_input(cohort, models, tmp_path, capsys):
    flair_path = _records(cohort)[0]["flair"]
    out = tmp_path / "out"
    assert main(["wmh", "predict", flair_path, "--model", str(models / "flair"),
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    image = lesion_io.read_volume(flair_path)
    for name in ("labels", "activation", "arwmc_regions"):
        assert _same_grid(lesion_io.read_volume(out / f"wmh_{name}.nii.gz"), image), name
    labels = lesion_io.read_volume(out / "wmh_labels.nii.gz").array
    summary = json.loads((out / "wmh_summary.json").read_text())
    assert summary["lesion_ml"] == pytest.approx(labels.sum() * image.voxel_volume_ml)
    assert 1200.0 < summary["brain_ml"] < 2600.0          # a whole synthetic brain
    assert 0.0 < summary["lesion_ml"] < 0.1 * summary["brain_ml"]
    assert 0 <= summary["arwmc_total"] <= 30
    assert f"ARWMC total: {summary['arwmc_total']} (0-30)" in printed
    assert f"WMH volume: {summary['lesion_ml']:.2f} mL" in printed
    assert str(out / "wmh_labels.nii.gz") in printed


def test_predict_t1_on_the_real_t1(real_t1_path, models, tmp_path, capsys):
    out = tmp_path / "t1"
    assert main(["wmh", "predict", str(real_t1_path), "--t1", "--model", str(models / "t1"),
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    image = lesion_io.read_volume(real_t1_path)
    labels = lesion_io.read_volume(out / "wmh_labels.nii.gz")
    assert _same_grid(labels, image) and labels.orientation == "LAS"
    assert _same_grid(lesion_io.read_volume(out / "wmh_activation.nii.gz"), image)
    summary = json.loads((out / "wmh_summary.json").read_text())
    assert summary["modality"] == "T1" and summary["arwmc_total"] is None
    assert 1000.0 <= summary["brain_ml"] <= 2000.0
    assert summary["lesion_ml"] <= summary["brain_ml"]
    assert "ARWMC total" not in printed and "WMH volume" in printed


def test_predict_with_given_atlases_skips_registration(cohort, models, tmp_path, monkeypatch,
                                                       capsys):
    """``--atlases DIR``: the brain mask and atlases are read, not registered; brain voxels
    they leave unlabelled take the nearest label, so the volumes add up."""
    from lesion_core import registration
    from lesion_core.wmh.atlases import ATLAS_FILES, write_atlases
    from lesion_core.wmh.evaluate import known_transform_atlases
    from scipy import ndimage

    def no_registration(*args, **kwargs):
        raise AssertionError("registered although the atlases were given")
    monkeypatch.setattr(registration, "register_to_mni", no_registration)
    record = _records(cohort)[0]
    image = lesion_io.read_volume(record["flair"])
    known = known_transform_atlases(image, lesion_io.read_volume(
        record["flair_arwmc_regions_truth"]))
    # A brain mask one voxel larger than the atlases, as a registered mask may be.
    brain = ndimage.binary_dilation(known.brain.array > 0)
    known.brain = image.with_array(brain.astype(np.uint8))
    known.zones = known.arwmc
    folder = write_atlases(known, tmp_path / "atlases")
    out = tmp_path / "out"
    assert main(["wmh", "predict", record["flair"], "--atlases", str(folder), "--model",
                 str(models / "flair"), "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    summary = json.loads((out / "wmh_summary.json").read_text())
    assert summary["brain_ml"] == pytest.approx(brain.sum() * image.voxel_volume_ml)
    assert sum(summary["region_ml"].values()) == pytest.approx(summary["lesion_ml"], abs=1e-6)
    assert sum(summary["zone_ml"].values()) == pytest.approx(summary["lesion_ml"], abs=1e-6)
    regions = lesion_io.read_volume(out / "wmh_arwmc_regions.nii.gz").array
    assert np.array_equal(regions > 0, brain)

    (folder / ATLAS_FILES["zones"]).unlink()
    code = main(["wmh", "predict", record["flair"], "--atlases", str(folder),
                 "--model", str(models / "flair")])
    _one_line(code, capsys.readouterr().err, str(folder), "there is no zones.nii.gz",
              "brain.nii.gz, arwmc.nii.gz, zones.nii.gz")


# --------------------------------------------------------------------------- train
def test_train_synthetic_writes_a_ratings_only_bundle(cohort, tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    seen = _reads(monkeypatch)
    out = tmp_path / "model"
    assert main(["wmh", "train", "--synthetic", str(cohort), "--known-transform",
                 "--config", str(config), "--steps", "2", "--seed", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "model saved in" in capsys.readouterr().out
    assert seen and not any("wmh_truth" in path for path in seen), "a voxel label was read"
    model = load_wmh_model(out)
    training = model.metadata.training
    assert model.task == "wmh" and training["subjects"] == 3
    assert training["supervision"] == "ARWMC ratings only (no voxel labels)"
    assert training["train_config"]["optim"]["steps"] == 2 == training["steps"]
    assert training["train_config"]["optim"]["seed"] == 1
    assert training["precision"] in ("fp32", "bf16") and training["wall_s"] >= 0
    assert model.config.spacing_mm == 6.0 and model.config.shape == (32, 40, 32)
    assert "optim" not in model.metadata.extra["config"]    # training is not architecture


def test_train_feedback_fine_tunes_from_reader_ratings(cohort, models, tmp_path, capsys):
    store = FeedbackStore(tmp_path / "store")
    record = _records(cohort)[1]
    case = store.case(record["subject"])
    rr.ensure_case_image(case, record["flair"], "FLAIR")
    rr.record_rating(case, rr.TOTAL, int(record["arwmc_total"]), reader="ann")
    rr.record_rating(case, "frontal_left", int(record["arwmc_frontal_left"]), reader="ann")
    out = tmp_path / "tuned"
    assert main(["wmh", "train", "--feedback", str(store.root), "--init",
                 str(models / "flair_coarse"),
                 "--steps", "2", "--out", str(out), "--device", "cpu"]) == 0
    assert "fine-tuned from wmh_flair_dualtasker 1.0" in capsys.readouterr().out
    tuned = load_wmh_model(out)
    assert tuned.metadata.training["subjects"] == 1
    assert tuned.metadata.training["data"] == "reader ratings (feedback)"
    assert tuned.config.shape == (32, 40, 32)     # fine-tuning keeps the model's grid
    before = load_wmh_model(models / "flair_coarse").net.state_dict()
    after = tuned.net.state_dict()
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)


def test_train_t1_from_thick_slice_labels(cohort, tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    seen = _reads(monkeypatch)
    out = tmp_path / "t1_model"
    assert main(["wmh", "train", "--t1", "--synthetic", str(cohort), "--known-transform",
                 "--config", str(config), "--steps", "2", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "T1 model saved in" in capsys.readouterr().out
    assert any("thick_label" in path for path in seen)
    assert not any("wmh_truth" in path for path in seen), "a fine voxel label was read"
    model = load_wmh_model(out, t1=True)
    assert model.is_t1 and model.metadata.training["subjects"] == 3
    assert "thick-slice" in model.metadata.training["supervision"]


def test_train_resumes_from_its_checkpoint_and_reads_the_cache(cohort, tmp_path, monkeypatch,
                                                               capsys):
    """--checkpoint: the same command after a finished (or killed) run continues from the
    checkpoint; --cache: the second run reads no image."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    argv = ["wmh", "train", "--t1", "--synthetic", str(cohort), "--known-transform",
            "--config", str(config), "--steps", "2", "--device", "cpu", "--precision", "fp32",
            "--checkpoint", str(tmp_path / "ckpt"), "--cache", str(tmp_path / "cache")]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "ckpt" / "checkpoint.pt").is_file()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    seen = _reads(monkeypatch)
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    assert not seen, "the cached subjects were read again"
    first, second = (load_wmh_model(tmp_path / n, t1=True).net.state_dict() for n in "ab")
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)
    assert "2 steps" in capsys.readouterr().out
    # Other settings with the same checkpoint folder: refused, not mixed.
    assert main(argv + ["--lr", "0.01", "--out", str(tmp_path / "c")]) == 2
    assert "from a run with other settings" in capsys.readouterr().err.splitlines()[-1]


# ------------------------------------------------------------------------ evaluate
def test_evaluate_prints_the_metrics_without_reading_truth_atlases(cohort, models, tmp_path,
                                                                   monkeypatch, capsys):
    two = tmp_path / "two"
    two.mkdir()
    records = _records(cohort)[:2]
    with (two / "wmh_labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    seen = _reads(monkeypatch)
    result = tmp_path / "eval.json"
    assert main(["wmh", "evaluate", str(two), "--model", str(models / "flair"),
                 "--json", str(result), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert not any("arwmc_regions_truth" in path for path in seen)
    for metric in ("Dice", "HD95 (mm)", "AVD (%)", "lesion-wise F1", "volume, truth (mL)",
                   "seconds per case", "ARWMC total MAE", "ARWMC total kappa (quadratic)",
                   "ARWMC region-side kappa (quadratic)"):
        assert metric in printed, metric
    assert "on 2 subjects" in printed and "registration to MNI" in printed
    report = json.loads(result.read_text())
    assert [c["subject"] for c in report["cases"]] == [r["subject"] for r in records]
    assert report["summary"]["n_cases"] == 2
    dice = report["summary"]["dice"]
    assert f"{dice['mean']:.3g}" in printed and 0.0 <= dice["mean"] <= 1.0


# ----------------------------------------------------------------------- bad input
def _one_line(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_bad_input_exits_2_with_one_line(models, cohort, tmp_path, capsys):
    missing = tmp_path / "missing.nii.gz"
    # Once as a user runs it (a new process: no traceback reaches the terminal) ...
    _one_line(*run_cli("wmh", "predict", missing, "--model", models / "flair")[::2],
              str(missing), "does not exist")
    # ... and the other bad inputs in this process, to keep the test short.
    rng = np.random.default_rng(0)
    ct = np.where(rng.uniform(size=(16, 16, 16)) > 0.5, -1000.0, 40.0).astype(np.float32)
    ct_path = lesion_io.write_volume(Volume(ct, np.eye(4)), tmp_path / "head_ct.nii.gz")
    code = main(["wmh", "predict", str(ct_path), "--model", str(models / "flair")])
    _one_line(code, capsys.readouterr().err, str(ct_path), "looks like CT")
    flair_path = _records(cohort)[0]["flair"]  # a head: the model is what is wrong
    code = main(["wmh", "predict", str(flair_path), "--model", str(models / "cmb")])
    _one_line(code, capsys.readouterr().err, str(models / "cmb"), "not a WMH model")
    code = main(["wmh", "predict", str(flair_path), "--model", str(tmp_path)])
    _one_line(code, capsys.readouterr().err, str(tmp_path), "no metadata.json")


def test_error_json_gives_a_parent_the_same_error(models, tmp_path, capsys):
    """``--error-json FILE``: a parent process rebuilds the error's class and parts. The
    image is checked before torch is imported, so a wrong one fails at once."""
    from lesion_core.errors import CommandError, ModalityError, error_from_json

    rng = np.random.default_rng(0)
    ct = np.where(rng.uniform(size=(16, 16, 16)) > 0.5, -1000.0, 40.0).astype(np.float32)
    ct_path = lesion_io.write_volume(Volume(ct, np.eye(4)), tmp_path / "head_ct.nii.gz")
    error_file = tmp_path / "child" / "error.json"
    argv = ["--progress-lines", "--error-json", str(error_file), "wmh", "predict",
            str(ct_path), "--model", str(models / "flair"), "--out", str(tmp_path / "out")]
    code = ("import sys\nfrom lesion_core.cli import main\n"
            f"code = main({argv!r})\n"
            "assert 'torch' not in sys.modules, 'torch imported before the image check'\n"
            "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    _one_line(done.returncode, done.stderr, str(ct_path), "looks like CT")
    error = error_from_json(error_file.read_text())
    assert type(error) is ModalityError and error.source == str(ct_path) and error.fix
    assert f"lesion-suite: error: {error}" == done.stderr.strip()

    # The commands' one error class for options that do not fit comes back as itself.
    other = tmp_path / "other.json"
    code = main(["--error-json", str(other), "wmh", "train", "--table", "r.csv",
                 "--known-transform", "--out", str(tmp_path / "m")])
    _one_line(code, capsys.readouterr().err, "--known-transform needs --synthetic")
    error = error_from_json(other.read_text())
    assert type(error) is CommandError and "--known-transform" in str(error)
    assert main(["--error-json", str(tmp_path / "none.json"), "info", str(ct_path)]) == 0
    assert not (tmp_path / "none.json").exists()


def test_mismatched_options_exit_2_with_one_line(models, cohort, tmp_path, monkeypatch,
                                                  capsys):
    def check(argv, *fragments):
        code = main(argv)
        _one_line(code, capsys.readouterr().err, *fragments)

    image = _records(cohort)[0]["flair"]
    check(["wmh", "predict", image, "--t1", "--model", str(models / "flair")],
          "FLAIR model", "Leave out --t1")
    check(["wmh", "predict", image, "--model", str(models / "flair"), "--device", "tpu"],
          "'tpu' is not a device name", "cuda:N")
    check(["wmh", "evaluate", str(tmp_path), "--model", str(models / "flair")],
          str(tmp_path), "wmh_labels.csv")
    check(["wmh", "train", "--table", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m")],
          "none.csv", "cannot read the table")
    check(["wmh", "train", "--table", str(tmp_path / "r.csv"), "--known-transform",
           "--out", str(tmp_path / "m")], "--known-transform needs --synthetic")
    check(["wmh", "train", "--feedback", str(tmp_path / "empty"), "--init",
           str(models / "flair"), "--out", str(tmp_path / "m")], "no case holds ARWMC ratings")
    check(["wmh", "train", "--synthetic", str(cohort), "--init", str(models / "t1"),
           "--out", str(tmp_path / "m")], "T1 model", "Ratings fine-tune a FLAIR")
    # No shipped model in this (temporary) models folder: say so, and what to pass instead.
    monkeypatch.setattr("lesion_core.model_folders.default_models_dir", lambda: tmp_path / "none")
    check(["wmh", "predict", image], "shipped FLAIR WMH model is not installed", "--model")
    check(["wmh", "evaluate", str(cohort), "--t1"], "shipped T1 WMH model", "--model")
    table = tmp_path / "ratings.csv"
    table.write_text("subject,image,total\ns1,gone.nii.gz,3\n")
    check(["wmh", "train", "--table", str(table), "--out", str(tmp_path / "m")],
          str(table), "gone.nii.gz does not exist")


def test_cancel_exits_130(cohort, models, tmp_path, monkeypatch, capsys):
    from lesion_core.errors import OperationCancelled
    from lesion_core.progress import Progress
    from lesion_core.wmh import predict as predict_module
    from lesion_core.wmh.evaluate import evaluate_cohort

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(predict_module, "predict", interrupted)
    image = _records(cohort)[0]["flair"]
    assert main(["wmh", "predict", image, "--model", str(models / "flair"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 130
    assert capsys.readouterr().err.strip().endswith("lesion-suite: cancelled")
    assert not (tmp_path / "out").exists()
    cancelled = Progress()
    cancelled.cancel()
    with pytest.raises(OperationCancelled):
        evaluate_cohort(load_wmh_model(models / "flair"), cohort, progress=cancelled)

"""The task contract: the registry of the three tasks, the one bundle loader, a model that
saves itself with its card, the shared report and settings types, the torch-free output
readers, and a fourth task plugged in from outside reaching the command line."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_core.bundle import BundleMetadata, NetworkSpec, save_bundle
from lesion_core.errors import LesionSuiteError, ModelBundleError, UnreadableFileError
from lesion_core.tasks import (VERBS, EvaluationReport, ModelCard, Task, TaskModel,
                               TrainSettings, all_tasks, bundle_kinds, get_task, load_model,
                               next_version, option, register_task, task_of_kind)
from lesion_core.tasks import registry
from wmh_toys import TINY, save_tiny_models

UNET_ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [4, 8],
             "strides": [2], "num_res_units": 0}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Tiny untrained WMH bundles of both kinds."""
    folder = tmp_path_factory.mktemp("task_bundles")
    save_tiny_models(folder)
    return folder


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


# ---------------------------------------------------------------------- registry
def test_the_registry_holds_the_three_tasks_in_command_order():
    assert [t.name for t in all_tasks()] == ["wmh", "cmb", "ich"]
    assert bundle_kinds() == ("wmh", "wmh_t1", "cmb", "ich")
    assert task_of_kind("wmh_t1") is get_task("wmh") and task_of_kind("ich").article == "an"
    with pytest.raises(LesionSuiteError, match="no task 'tumour'. Choose one of wmh, cmb, ich"):
        get_task("tumour")
    for task in all_tasks():
        assert set(task.default_models) == set(task.bundle_kinds), task.name
        assert set(task.options) <= set(VERBS) and set(task.verb_help) == set(VERBS)
        assert set(task.output_readers) <= set(task.output_files.names), task.name
        assert task.default_model_folder().name == task.default_models[task.bundle_kinds[0]]


def test_the_task_modules_and_the_output_readers_import_no_torch(tmp_path):
    """The command line builds its parser from the registry, and the Slicer GUI process
    reads output folders, before torch is installed."""
    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("case_labels.nii.gz", "case_activation.nii.gz", "case_arwmc_regions.nii.gz"):
        (folder / name).write_bytes(b"")
    summary = {"model": "m", "model_version": "1.0", "modality": "FLAIR", "arwmc_total": 4,
               "ratings": None, "levels": None, "lesion_ml": 1.5, "brain_ml": 1100.0,
               "region_ml": {"frontal_left": 1.5}, "zone_ml": {"periventricular": 1.5}}
    (folder / "case_summary.json").write_text(json.dumps(summary))
    (folder / "case_ratings.csv").write_text("region,side,rating,level,lesion_ml\n"
                                             "frontal,left,1.25,1,1.5\ntemporal,left,,,0\n")
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from lesion_core.tasks import all_tasks, get_task
        from lesion_core.cli import build_parser

        build_parser()
        assert len(all_tasks()) == 3
        outputs = get_task("wmh").read_outputs({str(folder)!r}, stem="case")
        assert outputs["summary"]["arwmc_total"] == 4, outputs
        assert outputs["ratings"][1] == {{"region": "temporal", "side": "left", "rating": None,
                                         "level": None, "lesion_ml": 0.0}}, outputs
        assert outputs["labels"].name == "case_labels.nii.gz"
        assert "torch" not in sys.modules, "torch was imported"
        """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_damaged_output_folder_is_one_clear_error(tmp_path):
    wmh = get_task("wmh")
    with pytest.raises(UnreadableFileError, match="the labels file is missing") as error:
        wmh.read_outputs(tmp_path)
    assert str(tmp_path / "wmh_labels.nii.gz") in str(error.value)
    assert "lesion-suite wmh predict again" in str(error.value)
    (tmp_path / "ich_summary.json").write_text('{"model": ')
    with pytest.raises(UnreadableFileError, match="cannot be read: it is not valid JSON"):
        get_task("ich").output_readers["summary"](tmp_path / "ich_summary.json")
    (tmp_path / "wmh_ratings.csv").write_text("region,side,rating,level,lesion_ml\n"
                                              "frontal,left,4.5,1,1.0\n")
    with pytest.raises(UnreadableFileError, match="line 2 of the WMH ratings table has a "
                                                  "rating outside 0-3"):
        wmh.output_readers["ratings"](tmp_path / "wmh_ratings.csv")


# ------------------------------------------------------------------ the loader
def test_the_loader_gives_each_kind_its_model(bundles):
    flair = load_model("wmh", bundles / "flair")
    t1 = get_task("wmh").load_model(bundles / "t1")
    assert (flair.kind, flair.modality, flair.is_t1, t1.modality, t1.is_t1) == (
        "wmh", "FLAIR", False, "T1", True)
    assert (flair.model_id, flair.version, t1.model_id) == (
        "wmh_flair_dualtasker", "1.0", "wmh_t1_thickslice")
    assert flair.config == TINY and not flair.net.training


def test_a_bundle_of_another_task_is_refused_before_its_weights_are_read(bundles, tmp_path):
    folder = tmp_path / "flair"
    shutil.copytree(bundles / "flair", folder)
    (folder / "model.safetensors").write_bytes(b"not read: the task is checked first")
    for name, article in (("cmb", "a CMB"), ("ich", "an ICH")):
        with pytest.raises(ModelBundleError) as error:
            load_model(name, folder)
        assert str(error.value) == (f"{folder}: this is a 'wmh' model, not {article} model. "
                                    f"Choose {article} model folder (task {name})")
    with pytest.raises(ModelBundleError, match="do not match the checksum"):
        load_model("wmh", folder)          # its own task: now the weights are checked


def test_a_bundle_of_a_task_no_one_registered_is_refused_by_the_loader(bundles, tmp_path):
    """The bundle layer knows no task; the loader asks the registry which kinds exist."""
    folder = tmp_path / "tumour"
    shutil.copytree(bundles / "flair", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "task": "tumour"}))
    with pytest.raises(ModelBundleError) as error:
        load_model("wmh", folder)
    assert str(error.value) == (
        f"{folder / 'metadata.json'}: metadata is invalid: task 'tumour' is not one of "
        "wmh, wmh_t1, cmb, ich. Re-copy the model folder, or save the model again with "
        "LesionSuite")


def test_an_unusable_configuration_or_a_missing_network_is_one_clear_error(bundles, tmp_path):
    folder = tmp_path / "flair"
    shutil.copytree(bundles / "flair", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["extra"]["config"]["bogus_setting"] = 1
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelBundleError, match="configuration is missing or invalid") as error:
        load_model("wmh", folder)
    assert str(folder) in str(error.value) and "retrain" in str(error.value)

    from monai.networks.nets import UNet
    other = BundleMetadata(name="odd", task="wmh", version="1.0", input_modality="FLAIR",
                           spacing_mm=(1.0, 1.0, 1.0),
                           networks={"other": NetworkSpec("monai.UNet", UNET_ARGS)})
    save_bundle(tmp_path / "odd", other, {"other": UNet(**UNET_ARGS)})
    with pytest.raises(ModelBundleError, match="the model has no net network"):
        load_model("wmh", tmp_path / "odd")


# ------------------------------------------------------------- card and saving
def test_a_model_saves_itself_with_its_card_and_a_fine_tune_counts_up(bundles, tmp_path):
    model = load_model("wmh", bundles / "flair")
    card = ModelCard.of(model.metadata)
    tuned_card = card.fine_tuned({"data": "reader ratings (feedback)"})
    assert (tuned_card.name, tuned_card.version, tuned_card.description,
            tuned_card.training, tuned_card.evaluation) == (
        "wmh_flair_dualtasker", "1.1", card.description, {"data": "reader ratings (feedback)"},
        {})
    unsaved = replace(model, metadata=None, card=tuned_card)
    assert (unsaved.model_id, unsaved.version) == ("wmh_flair_dualtasker", "1.1")
    stored = unsaved.save(tmp_path / "tuned")
    again = load_model("wmh", tmp_path / "tuned")
    assert (stored.version, again.version) == ("1.1", "1.1")
    assert again.metadata.training == {"data": "reader ratings (feedback)"}
    assert _same_weights(model.net, again.net) and again.config == model.config
    with pytest.raises(ModelBundleError, match="already saved"):
        unsaved.save(tmp_path / "tuned")
    # A loaded model saved again keeps the card it was loaded with.
    copy = model.save(tmp_path / "copy")
    assert (copy.name, copy.version, copy.weights_sha256) == (
        model.metadata.name, model.metadata.version, model.metadata.weights_sha256)
    assert [next_version(v) for v in ("1.0", "2.9", "beta", "1.0-rc")] == [
        "1.1", "2.10", "beta.1", "1.0-rc.1"]


def test_the_evaluation_report_is_one_type_with_its_json_and_record():
    report = EvaluationReport("ich", "ich_toy", "1.2", "CT", "/data/cohort",
                              {"precision": "fp32"},
                              [{"subject": "a", "dice": float("nan")}],
                              {"dice": np.float32(0.5)})
    assert report.headline() == "CT model ich_toy 1.2 on 1 subject of /data/cohort " \
                                "(precision: fp32)"
    document = json.loads(json.dumps(report.as_dict()))
    assert document["cases"] == [{"subject": "a", "dice": None}]
    assert (document["task"], document["precision"], document["summary"]) == (
        "ich", "fp32", {"dice": 0.5})
    assert report.record("voxel labels") == {"cohort": "cohort", "subjects": 1,
                                             "truth": "voxel labels", "precision": "fp32",
                                             "dice": 0.5}


def test_train_settings_apply_onto_each_networks_own_defaults():
    from lesion_core.training import OptimConfig

    defaults = OptimConfig(steps=100, lr=1e-3, batch_size=4)
    settings = TrainSettings(lr=0.01, seed=3, device="cpu", precision="fp32",
                             checkpoint_minutes=2)
    optim = settings.optim(defaults)
    assert (optim.steps, optim.lr, optim.batch_size, optim.seed, optim.device,
            optim.precision, optim.checkpoint_every_s) == (100, 0.01, 4, 3, "cpu", "fp32", 120.0)
    assert TrainSettings(steps=5).optim(defaults).steps == 5
    assert TrainSettings(steps=5).optim(defaults, steps=7).steps == 7   # the network's own
    args = argparse.Namespace(steps=None, lr=None, batch_size=2, seed=0, device="auto",
                              precision="auto", checkpoint="ck", checkpoint_minutes=5.0,
                              other_option=True)
    parsed = TrainSettings.from_args(args)
    assert (parsed.batch_size, parsed.checkpoint, parsed.cache) == (2, Path("ck"), None)
    assert parsed.subfolder("teacher") == Path("ck/teacher")
    assert TrainSettings().subfolder("teacher") is None


# ------------------------------------------------------------ a fourth task
@dataclass
class ScaleModel(TaskModel):
    """A fourth task's model: one U-Net whose output is the prediction."""

    metadata: BundleMetadata | None
    net: torch.nn.Module
    card: ModelCard | None = None

    def bundle_contents(self, card):
        return (card.bundle_metadata("scale", input_modality="MR", spacing_mm=(1.0,) * 3,
                                     networks={"net": NetworkSpec("monai.UNet", UNET_ARGS)}),
                {"net": self.net})


class ScaleTask(Task):
    """Everything a fourth task writes besides its package: this class."""

    name = "scale"
    title = "scale"
    help = "a toy task: a U-Net on a text file of numbers"
    verb_help = {verb: f"{verb} a scale" for verb in VERBS}
    modalities = ("MR",)
    bundle_kinds = ("scale",)
    default_models = {"scale": "scale_default"}
    required_networks = ("net",)
    options = {"predict": (option("--gain", type=float, default=1.0,
                                  help="multiplies the result"),)}

    def model_from_bundle(self, loaded):
        return ScaleModel(loaded.metadata, loaded.networks["net"])

    def read_input(self, path, **options):
        return torch.tensor([float(v) for v in Path(path).read_text().split()])

    def predict(self, inputs, model, progress=None, precision="auto", gain=1.0, **options):
        with torch.no_grad():
            x = inputs.reshape(1, 1, -1, 1, 1).repeat(1, 1, 1, 4, 4)[:, :, :4]
            return float(model.net(x).mean()) * gain

    def write_outputs(self, prediction, folder, image_path=None, **options):
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / "scale.txt"
        path.write_text(f"{prediction:.6f}\n")
        return {"value": path}

    def prediction_lines(self, prediction, model, image_path):
        return [f"{image_path}: {prediction:.6f} ({model.model_id} {model.version})"]


@pytest.fixture
def fourth_task(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    return register_task(ScaleTask())


def test_a_fourth_task_plugs_into_the_registry_the_bundles_and_the_command_line(
        fourth_task, tmp_path, capsys):
    from monai.networks.nets import UNet

    from lesion_core.cli import main

    assert bundle_kinds()[-1] == "scale" and task_of_kind("scale") is fourth_task
    torch.manual_seed(0)
    model = ScaleModel(None, UNet(**UNET_ARGS), ModelCard("scale_toy"))
    model.save(tmp_path / "model")          # the bundle check knows the new kind
    (tmp_path / "input.txt").write_text("1 2 3 4")
    assert main(["scale", "predict", str(tmp_path / "input.txt"), "--model",
                 str(tmp_path / "model"), "--gain", "2", "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    value = float((tmp_path / "out" / "scale.txt").read_text())
    expected = fourth_task.predict(fourth_task.read_input(tmp_path / "input.txt"),
                                   load_model("scale", tmp_path / "model"), gain=2.0)
    assert value == pytest.approx(expected, abs=1e-6)
    assert "(scale_toy 1.0)" in printed and str(tmp_path / "out" / "scale.txt") in printed
    # Its bundles are refused by the other tasks, and theirs by it.
    with pytest.raises(ModelBundleError, match="not a WMH model"):
        load_model("wmh", tmp_path / "model")
    with pytest.raises(ModelBundleError, match="not a scale model"):
        load_model("scale", get_task("cmb").default_model_folder())


def test_a_task_may_not_take_another_tasks_bundle_kind(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    clash = type("Clash", (ScaleTask,), {"name": "clash", "bundle_kinds": ("cmb",)})
    with pytest.raises(ValueError, match="bundle kind 'cmb' belongs to task 'cmb'"):
        register_task(clash())

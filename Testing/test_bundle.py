"""Model bundles save, verify and load without pickle, and refuse altered folders."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from lesion_core import networks as registry
from lesion_core.bundle import (BundleMetadata, NetworkSpec, list_bundles, load_bundle,
                                read_metadata, save_bundle)
from lesion_core.model_folders import default_models_dir, user_models_dir
from lesion_core.errors import ModelBundleError
from lesion_core.labels import CMB

UNET_ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": (4, 8),
             "strides": (2,), "num_res_units": 1}


@registry.register_network("lesion_suite.TestHead")
class TinyHead(torch.nn.Module):
    """A project-style network registered by decorator."""

    def __init__(self, features: int = 3):
        super().__init__()
        self.fc = torch.nn.Linear(features, 1)
        self.norm = torch.nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


def _metadata(**changes) -> BundleMetadata:
    base = BundleMetadata(
        name="cmb-test", task="cmb", version="0.1.0", input_modality="SWI",
        spacing_mm=(1.0, 1.0, 1.0),
        networks={"candidate": NetworkSpec("monai.UNet", dict(UNET_ARGS)),
                  "student": NetworkSpec("lesion_suite.TestHead", {"features": 3})},
        intensity_normalisation={"method": "zscore", "mask": "brain"},
        labels=[CMB],
        training={"data": "synthetic cohort", "seed": 0, "command": "lesion-suite cmb train"},
        evaluation={"dice": 0.5}, extra={"threshold": 0.3})
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def _networks() -> dict[str, torch.nn.Module]:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    head = TinyHead(3)
    head.norm.running_mean.fill_(0.25)  # buffers must travel too
    return {"candidate": UNet(**UNET_ARGS), "student": head}


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, BundleMetadata, dict[str, torch.nn.Module]]:
    nets = _networks()
    folder = tmp_path / "models" / "cmb-test"
    meta = save_bundle(folder, _metadata(), nets)
    return folder, meta, nets


def test_save_load_gives_identical_outputs(saved) -> None:
    folder, meta, nets = saved
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.safetensors"]
    loaded = load_bundle(folder)
    assert loaded.device == torch.device("cpu")
    torch.manual_seed(1)
    x = torch.randn(1, 1, 16, 16, 16)
    features = torch.randn(4, 3)
    for net in nets.values():
        net.eval()
    cand, student = loaded.networks["candidate"], loaded.networks["student"]
    assert not cand.training and not student.training
    with torch.no_grad():
        assert torch.equal(nets["candidate"](x), cand(x))
        assert torch.equal(nets["student"](features), student(features))
    assert torch.equal(student.norm.running_mean, torch.full((3,), 0.25))
    only = load_bundle(folder, only=["student"])
    assert list(only.networks) == ["student"]


def test_metadata_round_trip(saved) -> None:
    folder, meta, _ = saved
    again = read_metadata(folder)
    assert again == meta and again.folder == folder
    assert len(meta.weights_sha256) == 64 and meta.created.endswith("Z")
    assert meta.lesion_suite_version and meta.monai_version and meta.pytorch_version
    assert meta.labels == [CMB] and again.labels[0].type == CMB.type
    raw = json.loads((folder / "metadata.json").read_text())
    assert raw["networks"]["candidate"] == {"class": "monai.UNet",
                                            "args": json.loads(json.dumps(UNET_ARGS))}
    assert raw["spacing_mm"] == [1.0, 1.0, 1.0] and "folder" not in raw
    assert raw["labels"][0]["type"] == {"scheme": "SCT", "value": CMB.type.value,
                                        "meaning": CMB.type.meaning}
    assert BundleMetadata.from_dict(raw) == meta


def test_flipped_byte_in_weights_refused(saved) -> None:
    folder, _, _ = saved
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelBundleError) as info:
        load_bundle(folder)
    message = str(info.value)
    assert "weights do not match the checksum in metadata.json" in message
    assert "re-copy the model folder or retrain" in message.lower()
    assert "model.safetensors" in message


def test_unknown_network_name_refused(saved) -> None:
    folder, _, _ = saved
    path = folder / "metadata.json"
    raw = json.loads(path.read_text())
    raw["networks"]["candidate"]["class"] = "os.system"
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelBundleError, match="'os.system' is not one LesionSuite allows"):
        load_bundle(folder)


def test_missing_files_give_clear_errors(saved, tmp_path: Path) -> None:
    folder, _, _ = saved
    with pytest.raises(ModelBundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelBundleError, match="no model.safetensors"):
        load_bundle(folder)
    (folder / "metadata.json").unlink()
    with pytest.raises(ModelBundleError) as info:
        load_bundle(folder)
    assert "no metadata.json" in str(info.value) and "Copy the whole model folder" in str(
        info.value)


def test_invalid_metadata_refused(saved) -> None:
    folder, _, _ = saved
    path = folder / "metadata.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "task": "tumour"}))
    with pytest.raises(ModelBundleError, match="task 'tumour'"):
        read_metadata(folder, known_tasks=("wmh", "cmb"))  # the registry's word, passed in
    assert load_bundle(folder).metadata.task == "tumour"  # the bundle layer knows no task
    bad_label = {**raw["labels"][0], "color": [2.0, 0.0, 0.0]}
    path.write_text(json.dumps({**raw, "labels": [bad_label]}))
    with pytest.raises(ModelBundleError, match="label entry is malformed"):
        load_bundle(folder)
    path.write_text("{not json")
    with pytest.raises(ModelBundleError, match="cannot be read"):
        load_bundle(folder)
    wrong_args = {**raw, "networks": {**raw["networks"], "student": {
        "class": "lesion_suite.TestHead", "args": {"features": 5}}}}
    path.write_text(json.dumps(wrong_args))
    with pytest.raises(ModelBundleError, match="do not fit its architecture"):
        load_bundle(folder)


def test_save_refuses_mismatches_and_overwrite(saved, tmp_path: Path) -> None:
    folder, meta, nets = saved
    with pytest.raises(ModelBundleError, match="already saved"):
        save_bundle(folder, _metadata(), nets)
    again = save_bundle(folder, _metadata(version="0.2.0"), nets, overwrite=True)
    assert read_metadata(folder).version == "0.2.0" == again.version
    wrong_class = _metadata(networks={"candidate": NetworkSpec("monai.BasicUNet", {}),
                                      "student": NetworkSpec("lesion_suite.TestHead", {})})
    with pytest.raises(ModelBundleError, match="metadata says 'monai.BasicUNet'"):
        save_bundle(tmp_path / "b", wrong_class, nets)
    wrong_args = _metadata(networks={"candidate": NetworkSpec("monai.UNet", dict(UNET_ARGS)),
                                     "student": NetworkSpec("lesion_suite.TestHead",
                                                            {"features": 4})})
    with pytest.raises(ModelBundleError, match="rebuild a different network"):
        save_bundle(tmp_path / "c", wrong_args, nets)
    with pytest.raises(ModelBundleError, match="do not match metadata networks"):
        save_bundle(tmp_path / "d", _metadata(), {"candidate": nets["candidate"]})
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    wrapped = {"candidate": torch.nn.DataParallel(nets["candidate"]), "student": nets["student"]}
    save_bundle(tmp_path / "e", _metadata(), wrapped)  # training wrappers are unwrapped
    keys = load_bundle(tmp_path / "e").networks["candidate"].state_dict()
    assert not [k for k in keys if k.startswith("module.")]


def test_list_bundles_flags_broken_folders(saved, tmp_path: Path) -> None:
    folder, meta, _ = saved
    root = folder.parent
    (root / "broken").mkdir()
    (root / "broken" / "model.safetensors").write_bytes(b"x")
    (root / "not-a-model").mkdir()
    problems: list[ModelBundleError] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = list_bundles(root, problems=problems)
        assert list_bundles(root, task="wmh") == []
    assert [m.name for m in found] == ["cmb-test"]
    assert len(problems) == 1 and "broken" in str(problems[0]) and len(caught) == 2
    assert list_bundles(tmp_path / "absent") == []


def test_metadata_is_read_without_torch(saved) -> None:
    """A model folder's metadata is read and checked before torch is imported (the
    command line checks the folder at once; the Slicer hub lists models without torch)."""
    folder, meta, _ = saved
    code = ("import sys\nfrom lesion_core.bundle_metadata import read_metadata\n"
            f"meta = read_metadata({str(folder)!r})\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint(meta.name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == meta.name


def test_model_dirs(monkeypatch, tmp_path: Path) -> None:
    assert default_models_dir().name == "Models"
    assert default_models_dir().parent == Path(registry.__file__).resolve().parent.parent
    monkeypatch.setenv("LESION_SUITE_MODELS", str(tmp_path / "mine"))
    assert user_models_dir() == tmp_path / "mine"
    monkeypatch.delenv("LESION_SUITE_MODELS")
    assert user_models_dir() == Path.home() / ".lesion-suite" / "models"
    assert not (tmp_path / "mine").exists()


def test_registry() -> None:
    assert "monai.UNet" in registry.network_names()
    assert registry.get_network_class("lesion_suite.TestHead") is TinyHead
    with pytest.raises(ValueError, match="already taken"):
        registry.register_network("lesion_suite.TestHead")(type("Other", (torch.nn.Module,), {}))
    with pytest.raises(ValueError, match="reserved"):
        registry.register_network("monai.Mine")
    with pytest.raises(ModelBundleError, match="not one LesionSuite allows"):
        registry.get_network_class("builtins.eval")


def test_record_evaluation_keeps_weights_loadable(saved) -> None:
    from lesion_core.bundle import record_evaluation

    folder, meta, nets = saved
    weights = (folder / "model.safetensors").read_bytes()
    updated = record_evaluation(folder, {"figures": {"Dice": 0.61}, "cases": 10})
    assert updated.evaluation == {"figures": {"Dice": 0.61}, "cases": 10}
    assert updated.weights_sha256 == meta.weights_sha256 and updated.training == meta.training
    assert (folder / "model.safetensors").read_bytes() == weights
    assert load_bundle(folder).metadata.evaluation["cases"] == 10
    with pytest.raises(ModelBundleError, match="JSON"):
        record_evaluation(folder, {"bad": object()})
    assert read_metadata(folder).evaluation["cases"] == 10       # a refused update changes nothing

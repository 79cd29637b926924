"""LesionSuiteLogic (the hub module's logic) under the slicer-core wheel, without the app."""

from __future__ import annotations

import ast
import sys
import json
from pathlib import Path

import pytest

from LesionSuiteLib import hub_logic, user_folders
from LesionSuiteLib.hub_logic import (
    DEVICE_CHOICES, DEVICE_SETTING, FORCE_CPU_SETTING, TORCH_REQUIREMENT, LesionSuiteLogic,
    device_preference, pip_constraints, pip_install_arguments, read_requirements,
    requirement_satisfied, setting_flag, write_pip_constraints,
)

MODULE_DIR = Path(__file__).resolve().parent.parent / "LesionSuite"


@pytest.fixture()
def logic():
    return LesionSuiteLogic()


# ------------------------------------------------------------------ dependencies
def test_missing_requirements_names_only_what_is_not_installed(logic, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# a comment\n"
        "\n"
        "--extra-index-url https://example.invalid/simple\n"
        "numpy>=1.0  # installed in every environment that runs these tests\n"
        "lesion-suite-no-such-package-xyz>=1.0\n"
        "numpy>=999\n"
        "lesion-suite-other-missing; python_version < '3'\n",
        encoding="utf-8")
    assert logic.requirements(req) == [
        "numpy>=1.0", "lesion-suite-no-such-package-xyz>=1.0", "numpy>=999",
        "lesion-suite-other-missing; python_version < '3'"]
    # The marker excludes the last line on any Python 3, so it is not missing.
    assert logic.missing_requirements(req) == [
        "lesion-suite-no-such-package-xyz>=1.0", "numpy>=999"]


def test_requirement_satisfied_checks_versions():
    assert requirement_satisfied("numpy")
    assert requirement_satisfied("numpy>=1.0")
    assert not requirement_satisfied("numpy<1.0")
    assert not requirement_satisfied("lesion-suite-no-such-package-xyz")


def test_shipped_requirements_file_is_valid_and_met_in_the_test_environment(logic):
    path = MODULE_DIR / "Resources" / "requirements.txt"
    lines = read_requirements(path)
    names = {line.split(">")[0].split("=")[0].split("<")[0].strip().lower() for line in lines}
    # The same packages as pyproject.toml's dependencies, less what Slicer ships (numpy,
    # scipy, pydicom, SimpleITK) or the PyTorch extension installs (torch).
    import tomllib
    project = tomllib.loads((MODULE_DIR.parent / "pyproject.toml").read_text())["project"]
    wanted = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower()
              for d in project["dependencies"]}
    assert names == wanted - {"torch", "numpy", "scipy", "pydicom", "simpleitk"}
    assert logic.requirements() == lines  # the default file is the shipped one
    # The test environment installs lesion-suite's dependencies, so nothing is missing.
    assert logic.missing_requirements() == []


def test_requirements_ranges_agree_with_pyproject():
    """Each package that both files name has the same lower bound."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((MODULE_DIR.parent / "pyproject.toml").read_text("utf-8"))
    project = {Requirement(r).name.lower(): Requirement(r).specifier
               for r in pyproject["project"]["dependencies"]}
    for line in read_requirements(MODULE_DIR / "Resources" / "requirements.txt"):
        req = Requirement(line)
        if req.name.lower() in project:
            assert req.specifier == project[req.name.lower()], req.name
    assert project["torch"] == Requirement("torch" + TORCH_REQUIREMENT).specifier


def test_unreadable_requirements_file_gives_a_lesion_suite_error(logic, tmp_path):
    from lesion_core.errors import LesionSuiteError

    with pytest.raises(LesionSuiteError, match="Reinstall the LesionSuite extension"):
        logic.missing_requirements(tmp_path / "absent.txt")


def test_dependency_summary_mentions_missing_packages(logic, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("lesion-suite-no-such-package-xyz\n", encoding="utf-8")
    summary = logic.dependency_summary(req)
    assert "lesion-suite-no-such-package-xyz" in summary
    assert "PyTorch" in summary


def test_missing_dependencies_name_torch_first_then_the_requirements(logic, tmp_path,
                                                                    monkeypatch):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy\nlesion-suite-no-such-package-xyz>=1\n", encoding="utf-8")
    monkeypatch.setattr(LesionSuiteLogic, "torch_satisfied", lambda self: False)
    assert logic.missing_dependencies(req) == [
        "torch" + TORCH_REQUIREMENT, "lesion-suite-no-such-package-xyz>=1"]
    monkeypatch.setattr(LesionSuiteLogic, "torch_satisfied", lambda self: True)
    assert logic.missing_dependencies(req) == ["lesion-suite-no-such-package-xyz>=1"]


def test_self_tests_are_skipped_not_passed_without_the_dependencies(monkeypatch):
    import unittest

    class SelfTest(unittest.TestCase):
        def runTest(self):
            hub_logic.skip_unless_installed(self)
            self.fail("ran without its dependencies")

    monkeypatch.setattr(LesionSuiteLogic, "torch_satisfied", lambda self: False)
    monkeypatch.setattr(LesionSuiteLogic, "missing_requirements", lambda self, f=None: [])
    result = unittest.TestResult()
    SelfTest().run(result)
    assert [reason for _test, reason in result.skipped] == [
        f"not installed: torch{TORCH_REQUIREMENT} (Install dependencies in the LesionSuite "
        "module)"]
    assert result.failures == [] and result.errors == []

    class ReviewSelfTest(unittest.TestCase):  # needs only the requirements
        def runTest(self):
            hub_logic.skip_unless_installed(self, torch=False)

    result = unittest.TestResult()
    ReviewSelfTest().run(result)
    assert result.skipped == [] and result.wasSuccessful()


def test_torch_version_is_read_without_importing_torch(logic):
    version = logic.torch_version()
    if version is None:
        pytest.skip("torch is not installed")
    assert logic.torch_satisfied() == requirement_satisfied("torch" + TORCH_REQUIREMENT)


# ------------------------------------------------------------------ pip constraints
def test_pip_constraints_pin_the_installed_torch_build_exactly(tmp_path):
    assert pip_constraints("2.5.1+cu121") == ["torch==2.5.1+cu121"]
    path = write_pip_constraints(tmp_path, "2.5.1+cu121")
    assert path.parent == tmp_path
    assert path.read_text(encoding="utf-8").splitlines() == ["torch==2.5.1+cu121"]
    from packaging.requirements import Requirement

    pin = Requirement(pip_constraints("2.5.1+cu121")[0])
    assert pin.specifier.contains("2.5.1+cu121") and not pin.specifier.contains("2.6.0")


def test_pip_install_arguments_pass_the_constraints_file_first(tmp_path):
    constraints = tmp_path / "c.txt"
    assert pip_install_arguments(["monai>=1.4", "tqdm>=4.60"], constraints) == [
        "-c", str(constraints), "monai>=1.4", "tqdm>=4.60"]


def test_logic_writes_constraints_for_the_installed_torch_only(logic, tmp_path, monkeypatch):
    monkeypatch.setattr(LesionSuiteLogic, "torch_version", staticmethod(lambda: "2.4.0"))
    path = logic.write_pip_constraints(tmp_path)
    assert path.read_text(encoding="utf-8").strip() == "torch==2.4.0"
    monkeypatch.setattr(LesionSuiteLogic, "torch_version", staticmethod(lambda: None))
    from lesion_core.errors import LesionSuiteError

    with pytest.raises(LesionSuiteError, match="PyTorch extension"):
        logic.write_pip_constraints(tmp_path / "none")


# ------------------------------------------------------------------ device
@pytest.mark.parametrize("stored, preference", [
    ("cuda", "cuda"), (" MPS ", "mps"), ("cpu", "cpu"), (None, "auto"), ("", "auto"),
    ("tpu", "auto"), ("cuda:1", "auto")])
def test_device_preference_from_a_stored_setting(stored, preference):
    assert device_preference(stored) == preference


@pytest.mark.parametrize("stored, flag", [
    (True, True), (False, False), ("true", True), ("false", False), ("True", True), (1, True),
    (0, False), (None, False), ("", False)])
def test_setting_flag_reads_what_settings_files_give_back(stored, flag):
    assert setting_flag(stored) is flag


def test_device_setting_keys_are_the_hubs():
    assert DEVICE_SETTING.startswith("LesionSuite/") and FORCE_CPU_SETTING.startswith(
        "LesionSuite/") and DEVICE_SETTING != FORCE_CPU_SETTING


def test_device_is_cpu_when_cpu_is_forced(logic):
    pytest.importorskip("torch")
    pytest.importorskip("lesion_core.device")
    for preference in DEVICE_CHOICES:
        device = logic.device(preference, force_cpu=True)
        assert device.type == "cpu", preference
    assert logic.device("cpu").type == "cpu"
    assert isinstance(logic.describe_device("cpu"), str) and logic.describe_device("cpu")
    assert "cpu" in logic.available_devices()


# ------------------------------------------------------------------ models
def _write_bundle_by_hand(folder: Path, name: str, task: str = "cmb") -> None:
    """A model folder as DESIGN.md describes it: metadata.json + model.safetensors."""
    bundle = pytest.importorskip("lesion_core.bundle")
    numpy_st = pytest.importorskip("safetensors.numpy")
    import numpy as np

    folder.mkdir(parents=True)
    meta = bundle.BundleMetadata(
        name=name, task=task, version="0.1.0", input_modality="SWI",
        spacing_mm=(1.0, 1.0, 1.0),
        networks={"student": bundle.NetworkSpec("lesion_suite.CMBStudent", {})})
    (folder / bundle.METADATA_FILE).write_text(json.dumps(meta.to_dict()), encoding="utf-8")
    numpy_st.save_file({"student.w": np.zeros(2, np.float32)},
                       str(folder / bundle.WEIGHTS_FILE))


def test_installed_models_lists_a_bundle_in_a_folder(logic, tmp_path):
    _write_bundle_by_hand(tmp_path / "models" / "cmb-small", "CMB small")
    (tmp_path / "models" / "not-a-model").mkdir()  # ignored: no bundle files
    rows = logic.installed_models([tmp_path / "models", tmp_path / "does-not-exist"])
    assert rows == [{
        "name": "CMB small", "task": "cmb", "version": "0.1.0", "modality": "SWI",
        "folder": str(tmp_path / "models" / "cmb-small"), "source": "user"}]


def test_installed_models_skips_and_reports_a_broken_bundle(logic, tmp_path):
    pytest.importorskip("lesion_core.bundle")
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "metadata.json").write_text("{not json", encoding="utf-8")
    problems: list = []
    with pytest.warns(UserWarning):
        rows = logic.installed_models([tmp_path / "models"], problems=problems)
    assert rows == [] and len(problems) == 1


def test_installed_models_skips_and_reports_a_bundle_of_an_unknown_task(logic, tmp_path):
    _write_bundle_by_hand(tmp_path / "models" / "tumour", "Tumour", task="tumour")
    problems: list = []
    with pytest.warns(UserWarning, match="task 'tumour' is not one of wmh, wmh_t1, cmb, ich"):
        rows = logic.installed_models([tmp_path / "models"], problems=problems)
    assert rows == [] and len(problems) == 1


def test_user_models_folder_follows_the_environment(logic, tmp_path, monkeypatch):
    """The panels' set-up asks for it before torch is installed (user_folders), the model
    library after: both use the one torch-free rule of lesion_core.model_folders."""
    from lesion_core import model_folders
    for value, expected in ((str(tmp_path / "mine"), tmp_path / "mine"),
                            ("~/elsewhere", Path.home() / "elsewhere"),
                            ("  ", Path.home() / ".lesion-suite" / "models"),
                            (None, Path.home() / ".lesion-suite" / "models")):
        if value is None:
            monkeypatch.delenv(model_folders.USER_MODELS_ENV, raising=False)
        else:
            monkeypatch.setenv(model_folders.USER_MODELS_ENV, value)
        assert user_folders.user_models_dir() == expected, value
        assert logic.user_models_dir() == expected
    assert user_folders.default_feedback_root("cmb") == expected.parent / "feedback" / "cmb"


def test_installed_models_default_folders(logic, tmp_path, monkeypatch):
    from lesion_core import model_folders
    monkeypatch.setenv(model_folders.USER_MODELS_ENV, str(tmp_path / "user-models"))
    _write_bundle_by_hand(tmp_path / "user-models" / "mine", "my model")
    dirs = dict(logic.models_dirs())
    assert dirs["user"] == tmp_path / "user-models"
    assert dirs["built-in"] == model_folders.default_models_dir()
    rows = logic.installed_models()
    assert [r for r in rows if r["source"] == "user"] == [{
        "name": "my model", "task": "cmb", "version": "0.1.0", "modality": "SWI",
        "folder": str(tmp_path / "user-models" / "mine"), "source": "user"}]
    assert all(r["source"] == "built-in" for r in rows if r["name"] != "my model")


# ------------------------------------------------------------------ parameter node
def test_parameter_node_is_a_singleton_in_the_scene(logic, mrml_scene, monkeypatch):
    import slicer

    scene = mrml_scene
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    node = logic.getParameterNode()
    assert node.IsA("vtkMRMLScriptedModuleNode")
    assert node.GetAttribute("ModuleName") == "LesionSuite"
    assert logic.getParameterNode() is node
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1


# ------------------------------------------------------------------ layering
def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_logic_and_child_process_do_not_import_qt_or_the_app():
    for name in ("hub_logic.py", "child_process.py"):
        imported = _imported_modules(MODULE_DIR / "LesionSuiteLib" / name)
        roots = {m.split(".")[0] for m in imported}
        assert not roots & {"qt", "ctk", "PythonQt", "PyTorchUtils"}, name
    tree = ast.parse((MODULE_DIR / "LesionSuiteLib" / "hub_logic.py").read_text("utf-8"))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    forbidden = {"app", "modules", "delayDisplay", "errorDisplay", "confirmOkCancelDisplay",
                 "pip_install", "pip_ensure"}
    assert not used & forbidden


def test_hub_logic_imports_without_the_dependencies_it_installs():
    """The hub must load in a fresh Slicer, before torch and requirements.txt are installed.

    (numpy and vtk may be imported: Slicer ships them, and the wheel's ``slicer`` uses them.)
    """
    import subprocess

    code = ("import sys; import LesionSuiteLib.hub_logic, LesionSuiteLib.child_process; "
            "heavy = {'torch', 'nibabel', 'monai', 'safetensors', 'nrrd', 'skimage', "
            "'highdicom', 'pylibjpeg', 'tqdm'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]"


def test_hub_module_imports_its_logic_from_the_library():
    """LesionSuite.py (needs qt, so not importable here) uses this very Logic class."""
    source = (MODULE_DIR / "LesionSuite.py").read_text(encoding="utf-8")
    assert "from LesionSuiteLib.hub_logic import" in source
    tree = ast.parse(source)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"LesionSuite", "LesionSuiteWidget", "LesionSuiteTest"} <= classes
    assert "LesionSuiteLogic" not in classes  # one Logic, defined in hub_logic
    # The device choice is a per-user application setting, not a scene parameter.
    assert "parameterNodeWrapper" not in source and "LesionSuiteParameterNode" not in classes
    assert hub_logic.LesionSuiteLogic is LesionSuiteLogic


# ------------------------------------------------------- LesionSuite.py, app faked
@pytest.fixture()
def hub_module(monkeypatch):
    """``LesionSuite.py`` imported with stand-ins for what only the application provides.

    Only ``ensure_dependencies`` and the device settings (from ``LesionSuiteGUI.dependencies``,
    through the hub's names) are exercised: what to install,
    the calls to the PyTorch extension and Slicer's pip functions, the restart offer (all
    recorded here instead), and the application settings (a dict here).
    """
    import importlib.util
    import types

    import slicer

    fakes = {
        "qt": types.ModuleType("qt"),
        "slicer.i18n": types.ModuleType("slicer.i18n"),
        "slicer.ScriptedLoadableModule": types.ModuleType("slicer.ScriptedLoadableModule"),
    }
    settings: dict = {}

    class FakeSettings:
        def value(self, key, default=None):
            return settings.get(key, default)

        def setValue(self, key, value):
            settings[key] = value

    fakes["qt"].QSettings = FakeSettings
    fakes["slicer.i18n"].tr = lambda text: text
    fakes["slicer.i18n"].translate = lambda context, text: text
    for base in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget",
                 "ScriptedLoadableModuleTest"):
        setattr(fakes["slicer.ScriptedLoadableModule"], base, type(base, (), {}))
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)

    calls: dict = {"confirm": [], "torch": [], "pip": [], "errors": [], "restart": []}

    class FakeTorchLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None,
                         torchVersionRequirement=None):
            calls["torch"].append((askConfirmation, torchVersionRequirement))
            return object()

    fake_pytorch = types.ModuleType("PyTorchUtils")
    fake_pytorch.PyTorchUtilsLogic = FakeTorchLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", fake_pytorch)
    def pip_ensure(reqs, constraints=None, **kw):  # slicer.packaging's, after Slicer 5.10
        pinned = Path(constraints).read_text(encoding="utf-8").split() if constraints else None
        calls["pip"].append(([str(r) for r in reqs], pinned, kw))

    fake_packaging = types.ModuleType("slicer.packaging")
    fake_packaging.pip_ensure = pip_ensure
    monkeypatch.setitem(sys.modules, "slicer.packaging", fake_packaging)

    answer = {"ok": True, "restart": False}

    def confirm(text, windowTitle=None, **kwargs):
        calls["confirm"].append(text)
        return answer["ok"]

    def confirm_restart(text, windowTitle=None, **kwargs):
        calls["restart"].append("asked")
        return answer["restart"]

    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", confirm)
    monkeypatch.setattr(slicer.util, "confirmYesNoDisplay", confirm_restart)
    monkeypatch.setattr(slicer.util, "restart", lambda: calls["restart"].append("restarted"))
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: calls["errors"].append(text))
    monkeypatch.setattr(slicer.util, "WaitCursor", _NullContext, raising=False)

    # LesionSuiteGUI.dependencies holds what is exercised: imported again, on the stand-ins.
    monkeypatch.delitem(sys.modules, "LesionSuiteGUI.dependencies", raising=False)
    spec = importlib.util.spec_from_file_location("LesionSuite", MODULE_DIR / "LesionSuite.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "LesionSuite", module)
    spec.loader.exec_module(module)
    module.fake_settings = settings
    return module, calls, answer


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def _pretend(monkeypatch, module, missing, torch_version):
    logic_cls = module.LesionSuiteLogic
    monkeypatch.setattr(logic_cls, "missing_requirements", lambda self, f=None: list(missing))
    monkeypatch.setattr(logic_cls, "torch_version", staticmethod(lambda: torch_version))
    satisfied = torch_version is not None and requirement_satisfied_by(torch_version)
    monkeypatch.setattr(logic_cls, "torch_satisfied", lambda self: satisfied)


def requirement_satisfied_by(version: str) -> bool:
    from packaging.requirements import Requirement
    return Requirement("torch" + TORCH_REQUIREMENT).specifier.contains(version)


def test_ensure_dependencies_does_nothing_when_all_is_installed(hub_module, monkeypatch):
    module, calls, _answer = hub_module
    _pretend(monkeypatch, module, [], "2.5.0")
    assert module.ensure_dependencies() is True
    assert calls == {"confirm": [], "torch": [], "pip": [], "errors": [], "restart": []}


def test_ensure_dependencies_asks_once_then_installs_torch_and_packages(hub_module, monkeypatch):
    module, calls, _answer = hub_module
    missing = ["monai>=1.4", "tqdm>=4.60"]
    _pretend(monkeypatch, module, missing, None)

    def after_install(*args, **kwargs):  # what the installers leave behind
        _pretend(monkeypatch, module, [], "2.5.0")

    def install_torch(askConfirmation=False, torchVersionRequirement=None):
        calls["torch"].append((askConfirmation, torchVersionRequirement))
        _pretend(monkeypatch, module, missing, "2.5.0+cu121")  # torch in, the rest not yet
        return object()

    monkeypatch.setattr(sys.modules["PyTorchUtils"].PyTorchUtilsLogic, "installTorch",
                        lambda self, **kw: install_torch(**kw))
    original = sys.modules["slicer.packaging"].pip_ensure
    monkeypatch.setattr(sys.modules["slicer.packaging"], "pip_ensure",
                        lambda reqs, **kw: (original(reqs, **kw), after_install()))
    assert module.ensure_dependencies() is True
    assert len(calls["confirm"]) == 1
    assert "monai>=1.4" in calls["confirm"][0] and "torch>=2.2" in calls["confirm"][0]
    assert calls["torch"] == [(False, TORCH_REQUIREMENT)]  # the one dialog was ours
    [(requirements, pinned, kwargs)] = calls["pip"]
    assert requirements == missing
    assert pinned == ["torch==2.5.0+cu121"]  # the build the PyTorch extension installed
    assert kwargs["prompt_install"] is False and kwargs["prompt_restart"] is False
    assert calls["restart"] == ["asked"]  # one restart offer, ours; declined here


def test_ensure_dependencies_installs_nothing_when_the_user_declines(hub_module, monkeypatch):
    module, calls, answer = hub_module
    _pretend(monkeypatch, module, ["tqdm>=4.60"], None)
    answer["ok"] = False
    assert module.ensure_dependencies() is False
    assert len(calls["confirm"]) == 1 and calls["torch"] == [] and calls["pip"] == []
    assert calls["restart"] == []


def test_ensure_dependencies_refuses_to_upgrade_a_loaded_old_torch(hub_module, monkeypatch):
    module, calls, _answer = hub_module
    _pretend(monkeypatch, module, [], "2.0.1")
    assert module.ensure_dependencies() is False
    assert calls["torch"] == [] and "2.0.1" in calls["errors"][0]


def test_ensure_dependencies_falls_back_to_pip_install(hub_module, monkeypatch):
    module, calls, _answer = hub_module
    import slicer

    monkeypatch.delitem(sys.modules, "slicer.packaging")  # Slicer 5.6 to 5.10
    installed = []

    def pip_install(arguments):
        constraints = Path(arguments[1])
        installed.append((arguments[0], constraints.read_text(encoding="utf-8").split(),
                          arguments[2:]))
        _pretend(monkeypatch, module, [], "2.5.0")

    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    _pretend(monkeypatch, module, ["tqdm>=4.60"], "2.5.0")
    assert module.ensure_dependencies(askConfirmation=False) is True
    assert installed == [("-c", ["torch==2.5.0"], ["tqdm>=4.60"])] and calls["confirm"] == []


def test_restart_is_offered_after_an_installation_and_done_when_accepted(hub_module,
                                                                          monkeypatch):
    module, calls, answer = hub_module
    answer["restart"] = True
    _pretend(monkeypatch, module, ["tqdm>=4.60"], "2.5.0")
    monkeypatch.setattr(sys.modules["slicer.packaging"], "pip_ensure",
                        lambda reqs, **kw: _pretend(monkeypatch, module, [], "2.5.0"))
    assert module.ensure_dependencies(askConfirmation=False) is True
    assert calls["restart"] == ["asked", "restarted"]


def test_no_restart_is_offered_when_the_installation_is_incomplete(hub_module, monkeypatch):
    module, calls, _answer = hub_module
    _pretend(monkeypatch, module, ["tqdm>=4.60"], "2.5.0")
    monkeypatch.setattr(sys.modules["slicer.packaging"], "pip_ensure", lambda reqs, **kw: None)
    assert module.ensure_dependencies(askConfirmation=False) is False
    assert calls["restart"] == []


def test_device_comes_from_the_application_settings(hub_module):
    module, _calls, _answer = hub_module
    assert module.deviceSettings() == ("auto", False)  # nothing stored yet
    module.fake_settings.update({DEVICE_SETTING: "cuda", FORCE_CPU_SETTING: "true"})
    assert module.deviceSettings() == ("cuda", True)
    module.fake_settings[DEVICE_SETTING] = "no-such-device"
    assert module.deviceSettings() == ("auto", True)
    pytest.importorskip("torch")
    assert module.selected_device().type == "cpu"  # forced

"""Logic of the LesionSuite hub module: Python dependencies, compute device, installed models.

``LesionSuiteLogic`` lives here rather than in ``LesionSuite.py`` because that file imports
qt and ctk at the top, as Slicer modules do, and the ``slicer-core`` wheel used by the tests
has neither. Inside the Slicer application the class derives from
``ScriptedLoadableModuleLogic``; under the wheel, which lacks that module, from a small
base that offers the same ``getParameterNode``. No qt, ctk or ``slicer.app`` here: anything
that needs the application (dialogs, pip installation, PyTorch installation) is in the
widget layer of ``LesionSuite.py``.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from . import user_folders

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # slicer-core wheel: real MRML, no application
    _LogicBase = None

#: Version range of torch that LesionSuite needs; installed through the PyTorch extension.
TORCH_REQUIREMENT = ">=2.2"

#: Device preferences offered in the GUI (``lesion_core.device.select_device`` accepts them).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

#: Application-settings keys of the device choice. Per user and per machine, so kept in the
#: application settings rather than in the scene, which is closed (and its parameter node
#: wiped) with every case and saved into scenes shared with others. The widget reads and
#: writes them; the Logic takes the values as arguments.
DEVICE_SETTING = "LesionSuite/devicePreference"
FORCE_CPU_SETTING = "LesionSuite/forceCPU"

#: Name of the pip constraints file written for an installation (see :func:`pip_constraints`).
PIP_CONSTRAINTS_FILE = "lesion-suite-constraints.txt"


def module_dir() -> Path:
    """The LesionSuite module folder (holds ``LesionSuite.py``, ``Resources/``, ``LesionSuiteLib/``)."""
    return Path(__file__).resolve().parent.parent


def default_requirements_file() -> Path:
    return module_dir() / "Resources" / "requirements.txt"


def read_requirements(path: str | Path) -> list[str]:
    """Requirement lines of a requirements file: comments, blank lines and pip options dropped."""
    from lesion_core.errors import LesionSuiteError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LesionSuiteError(
            f"cannot read the list of Python dependencies ({exc.strerror or exc})",
            "Reinstall the LesionSuite extension.", source=path) from exc
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def requirement_satisfied(requirement: str) -> bool:
    """Whether one requirement (``name``, ``name>=1.2``, with optional marker) is installed.

    Uses ``packaging`` when available (it ships with Slicer and pip); without it, only the
    presence of the distribution is checked.
    """
    try:
        from packaging.requirements import Requirement
    except ImportError:
        name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
        return _installed_version(name) is not None

    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return True  # not needed on this platform
    installed = _installed_version(req.name)
    if installed is None:
        return False
    return req.specifier.contains(installed, prereleases=True)


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_preference(stored) -> str:
    """The device preference from a stored setting: one of :data:`DEVICE_CHOICES`, else
    ``"auto"`` (nothing stored yet, or a value from another version)."""
    value = str(stored or "").strip().lower()
    return value if value in DEVICE_CHOICES else "auto"


def setting_flag(stored) -> bool:
    """A stored yes/no setting: settings files give back a bool, ``"true"``/``"false"``
    (INI files keep text), a number, or None when nothing is stored (False)."""
    if isinstance(stored, str):
        return stored.strip().lower() in ("true", "1", "yes")
    return bool(stored)


def pip_constraints(torch_version: str) -> list[str]:
    """Lines of the pip constraints file for installing the requirements: the installed
    torch, pinned exactly (local build tag included, e.g. ``torch==2.5.1+cu121``).

    The PyTorch extension installs the torch build that matches the GPU driver; without
    the pin, pip resolving MONAI's ``torch>=...`` could replace it with a generic build
    from PyPI. With it, pip keeps that torch or stops with a conflict.
    """
    return [f"torch=={torch_version}"]


def write_pip_constraints(folder: str | Path, torch_version: str) -> Path:
    """Write :func:`pip_constraints` into ``folder``; returns the file's path."""
    path = Path(folder) / PIP_CONSTRAINTS_FILE
    path.write_text("\n".join(pip_constraints(torch_version)) + "\n", encoding="utf-8")
    return path


def pip_install_arguments(requirements: list[str], constraints_file: str | Path) -> list[str]:
    """``pip install`` arguments (the list form of ``slicer.util.pip_install``):
    ``["-c", FILE, *requirements]``."""
    return ["-c", str(constraints_file), *requirements]


class _HeadlessLogicBase:
    """What the hub logic uses of ``ScriptedLoadableModuleLogic``, for use without the app."""

    def __init__(self, parent=None):
        name = type(self).__name__
        self.moduleName = name[:-len("Logic")] if name.endswith("Logic") else name
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        """The module's singleton ``vtkMRMLScriptedModuleNode`` in ``slicer.mrmlScene``."""
        import slicer

        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            if node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)
            return node
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetName(scene.GenerateUniqueName(self.moduleName))
        node.SetAttribute("ModuleName", self.moduleName)
        return scene.AddNode(node)


class LesionSuiteLogic(_LogicBase or _HeadlessLogicBase):
    """Dependencies, device and models of LesionSuite; used by the hub and the task modules."""

    def __init__(self, parent=None):
        super().__init__(parent)

    # ------------------------------------------------------------ dependencies
    def requirements(self, requirements_file: str | Path | None = None) -> list[str]:
        """The Python requirements that the extension installs (``Resources/requirements.txt``)."""
        return read_requirements(requirements_file or default_requirements_file())

    def missing_requirements(self, requirements_file: str | Path | None = None) -> list[str]:
        """The requirement lines that the running Python does not satisfy (torch not included)."""
        return [r for r in self.requirements(requirements_file) if not requirement_satisfied(r)]

    @staticmethod
    def torch_version() -> str | None:
        """Installed torch version, read from package metadata (torch is not imported)."""
        return _installed_version("torch")

    def torch_satisfied(self) -> bool:
        return requirement_satisfied("torch" + TORCH_REQUIREMENT)

    def write_pip_constraints(self, folder: str | Path) -> Path:
        """The constraints file that keeps the installed torch (see :func:`pip_constraints`).

        Raises LesionSuiteError when torch is not installed: it must come first, from the
        PyTorch extension, or pip would pull a generic torch in with MONAI.
        """
        from lesion_core.errors import LesionSuiteError

        version = self.torch_version()
        if version is None:
            raise LesionSuiteError(
                "PyTorch is not installed, so the other packages cannot be installed safely "
                "(MONAI would bring a generic PyTorch build)",
                "Install PyTorch with the PyTorch extension (PyTorch Utils module) first.")
        return write_pip_constraints(folder, version)

    def missing_dependencies(self, requirements_file: str | Path | None = None) -> list[str]:
        """Everything the hub would install: torch (when not satisfied) and the missing
        requirement lines; empty when LesionSuite can run."""
        torch = [] if self.torch_satisfied() else ["torch" + TORCH_REQUIREMENT]
        return torch + self.missing_requirements(requirements_file)

    def dependency_summary(self, requirements_file: str | Path | None = None) -> str:
        """One human-readable paragraph on what is installed and what is missing."""
        parts = []
        version = self.torch_version()
        if version is None:
            parts.append("PyTorch is not installed.")
        elif not self.torch_satisfied():
            parts.append(f"PyTorch {version} is installed but LesionSuite needs torch"
                         f"{TORCH_REQUIREMENT}.")
        else:
            parts.append(f"PyTorch {version} is installed.")
        missing = self.missing_requirements(requirements_file)
        if missing:
            parts.append("Missing Python packages: " + ", ".join(missing) + ".")
        else:
            parts.append("All other Python packages are installed.")
        return " ".join(parts)

    # ------------------------------------------------------------------ device
    @staticmethod
    def available_devices() -> list[str]:
        from lesion_core.device import available_devices
        return available_devices()

    @staticmethod
    def device(preference: str = "auto", force_cpu: bool = False):
        """The ``torch.device`` to compute on, chosen by ``lesion_core.device.select_device``."""
        from lesion_core.device import select_device
        return select_device(preference, force_cpu=force_cpu)

    def describe_device(self, preference: str = "auto", force_cpu: bool = False) -> str:
        """A line for the GUI saying which device will be used, e.g. ``CPU (8 threads)``."""
        from lesion_core.device import describe_device
        return describe_device(self.device(preference, force_cpu))

    # ------------------------------------------------------------------ models
    @staticmethod
    def models_dirs() -> list[tuple[str, Path]]:
        """``[("built-in", folder), ("user", folder)]``: where model bundles are looked for."""
        from lesion_core.model_folders import default_models_dir
        return [("built-in", Path(default_models_dir())), ("user", user_folders.user_models_dir())]

    @staticmethod
    def user_models_dir() -> Path:
        """The user models folder (torch not needed: the hub opens it before installing)."""
        return user_folders.user_models_dir()

    def installed_models(self, folders: list[str | Path] | None = None,
                         problems: list | None = None) -> list[dict]:
        """One dict per model bundle found: name, task, version, modality, folder, source.

        ``folders`` defaults to the built-in and the user models folders; a folder that does
        not exist contributes nothing. A model folder that cannot be read, or whose task no
        registered task saves, is skipped and its
        :class:`~lesion_core.errors.ModelBundleError` appended to ``problems``.
        """
        from lesion_core.bundle import list_bundles
        from lesion_core.tasks import bundle_kinds

        if folders is None:
            sources = self.models_dirs()
        else:
            sources = [("user", Path(f)) for f in folders]
        rows: list[dict] = []
        seen: set[Path] = set()
        for source, folder in sources:
            folder = Path(folder)
            if not folder.is_dir() or folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            for metadata in list_bundles(folder, problems=problems,
                                         known_tasks=bundle_kinds()):
                rows.append(_model_row(metadata, source))
        return rows


def skip_unless_installed(test_case, torch: bool = True) -> None:
    """For the modules' self-tests: skip ``test_case`` (``unittest`` reports a skip, not a
    pass) when what the hub installs is missing, as in a fresh Slicer. ``torch=False``:
    the test needs only the packages of ``requirements.txt``."""
    logic = LesionSuiteLogic()
    missing = logic.missing_dependencies() if torch else logic.missing_requirements()
    if missing:
        test_case.skipTest("not installed: " + ", ".join(missing)
                           + " (Install dependencies in the LesionSuite module)")


def _model_row(metadata, source: str) -> dict:
    """Table row for a :class:`lesion_core.bundle.BundleMetadata`."""
    return {
        "name": metadata.name,
        "task": metadata.task,
        "version": metadata.version,
        "modality": metadata.input_modality,
        "folder": str(metadata.folder) if metadata.folder is not None else "",
        "source": source,
    }

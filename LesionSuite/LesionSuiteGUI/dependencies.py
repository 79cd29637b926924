"""The Python dependencies and the compute device, for the hub and the task panels.

:func:`ensure_dependencies` installs what the modules need (after the user agrees) and
:func:`selected_device` is the device chosen in the hub's Device section. The task panels
(:class:`~LesionSuiteGUI.task_widget.TaskWidget`) call both before a prediction or a
training, and the hub module ``LesionSuite.py`` offers them in its panel; they live here,
not in the module file, so that the panels import no module file. The logic is
:class:`LesionSuiteLib.hub_logic.LesionSuiteLogic` (no Qt); this module holds the
dialogs and the application settings. The device choice is a per-user application
setting (``qt.QSettings``, keys in :mod:`LesionSuiteLib.hub_logic`), not a scene
parameter: scenes are closed with every case and shared with others.
"""

import importlib
import tempfile

import qt

import slicer
from slicer.i18n import tr as _

from LesionSuiteLib.hub_logic import (DEVICE_SETTING, FORCE_CPU_SETTING, TORCH_REQUIREMENT,
                                      LesionSuiteLogic, device_preference,
                                      pip_install_arguments, setting_flag)

__all__ = ["deviceSettings", "ensure_dependencies", "selected_device"]


def deviceSettings():
    """``(preference, forceCPU)`` from the application settings: the preference is one of
    ``DEVICE_CHOICES`` ("auto" when nothing valid is stored)."""
    settings = qt.QSettings()
    return (device_preference(settings.value(DEVICE_SETTING, "auto")),
            setting_flag(settings.value(FORCE_CPU_SETTING, False)))


def _pipEnsureFunction():
    """``slicer.packaging.pip_ensure`` where this Slicer has it (after 5.10), else None."""
    try:
        module = importlib.import_module("slicer.packaging")
    except ImportError:
        return None
    return getattr(module, "pip_ensure", None)


def _installTorch() -> bool:
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            _("LesionSuite needs the PyTorch extension to install PyTorch. Install 'PyTorch' "
              "from the Extensions Manager, restart Slicer, and try again."))
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
    return torch is not None


def _pipInstall(requirements):
    """Install with pip, the installed torch pinned by a constraints file: torch comes from
    the PyTorch extension (the build matching the GPU driver), and pip must not replace it
    with a generic one while resolving MONAI's dependencies."""
    logic = LesionSuiteLogic()
    with tempfile.TemporaryDirectory(prefix="lesion-suite-pip-") as folder:
        constraints = logic.write_pip_constraints(folder)
        pipEnsure = _pipEnsureFunction()
        if pipEnsure is not None:
            from packaging.requirements import Requirement

            pipEnsure([Requirement(r) for r in requirements], constraints=str(constraints),
                      prompt_install=False, prompt_restart=False, requester="LesionSuite")
        else:
            slicer.util.pip_install(pip_install_arguments(list(requirements), constraints))
    importlib.invalidate_caches()


def _offerRestart() -> None:
    """Ask to restart Slicer now: modules that could not load before the installation, and
    packages already imported in an older version, work only after a restart."""
    if slicer.util.confirmYesNoDisplay(
            _("The Python packages are installed. Restart 3D Slicer now? Until it restarts, "
              "modules that could not load without them, and packages that were already "
              "loaded in another version, may not work."),
            windowTitle=_("LesionSuite dependencies")):
        slicer.util.restart()


def ensure_dependencies(askConfirmation: bool = True) -> bool:
    """Make sure PyTorch and the packages of ``Resources/requirements.txt`` are installed.

    Returns True when everything is installed (at once when nothing was missing). Missing
    packages are installed after the user agrees (one dialog lists them all): PyTorch
    through the PyTorch extension, the others with pip, the installed PyTorch pinned; then
    a restart is offered. Returns False when the user declines or PyTorch cannot be
    installed; raises when pip fails.
    """
    logic = LesionSuiteLogic()
    missing = logic.missing_requirements()
    needTorch = not logic.torch_satisfied()
    if not missing and not needTorch:
        return True
    installedTorch = logic.torch_version()
    if needTorch and installedTorch is not None:
        slicer.util.errorDisplay(
            _("LesionSuite needs PyTorch {requirement} but PyTorch {version} is installed. "
              "Uninstall it in the PyTorch Utils module, restart Slicer, and install "
              "dependencies again.").format(requirement=TORCH_REQUIREMENT,
                                            version=installedTorch))
        return False
    wanted = ([f"torch{TORCH_REQUIREMENT} (through the PyTorch extension)"] if needTorch else [])
    wanted += missing
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("LesionSuite needs these Python packages. They will be downloaded and installed "
              "now, which may take several minutes:") + "\n\n" + "\n".join(wanted),
            windowTitle=_("LesionSuite dependencies")):
        return False
    with slicer.util.WaitCursor():
        if needTorch and not _installTorch():
            return False
        importlib.invalidate_caches()  # the new torch's metadata, for the pin
        if missing:
            _pipInstall(missing)
    complete = not logic.missing_requirements() and logic.torch_satisfied()
    if complete:
        _offerRestart()
    return complete


def selected_device():
    """The ``torch.device`` chosen in the hub's Device section (auto, cpu, cuda, mps)."""
    preference, forceCPU = deviceSettings()
    return LesionSuiteLogic().device(preference, force_cpu=forceCPU)

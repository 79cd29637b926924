"""Load the Slicer modules' source files as a fresh Slicer would, before the hub installed
anything, and report what they tried to import (run by ``test_slicer_module_load.py``).

A fresh Slicer has numpy, vtk and its own ``slicer`` package but not torch, MONAI or
nibabel: the hub installs those on request. So every module file, its ``*Lib`` / ``*GUI``
package and what the widget's ``setup()`` calls of the Logic must load without them, or
the module fails to load (or its panel is half built) in every fresh installation.

This script runs in a fresh interpreter
(``python slicer_load_probe.py [--block NAME,...] [--packages] [EXTRA.py ...]``):

1. an import hook makes the blocked packages unimportable (default: :data:`HEAVY`,
   ``--block all``: :data:`HUB_INSTALLS`) and records every attempt with the line of the
   module folders that made it;
2. what only the Slicer application provides (``qt``, ``ctk``, ``slicer.i18n``,
   ``slicer.parameterNodeWrapper``, ``slicer.ScriptedLoadableModule``) is stood in for
   by permissive stand-ins, since neither the ``slicer-core`` wheel nor PyPI has them;
   everything else is the real thing (the wheel's ``slicer`` with real MRML);
3. the hub and the task modules are imported by name from their folders, as Slicer does,
   (``--packages``: then every submodule of their ``*Lib`` / ``*GUI`` packages), then the
   Logic calls that the panels' ``setup()`` makes; EXTRA files are imported last (the
   test's own check that the hook catches an import).

It prints one JSON object: ``attempts`` (``{"module", "by"}``), ``errors`` (what failed
to load, with the innermost module-folder line of its traceback) and ``loaded`` (the
module-folder files imported, ``lesion_core`` included).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.util
import json
import pkgutil
import sys
import traceback
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The heavy packages the hub installs: nothing of the Slicer side may import them at load.
HEAVY = ("torch", "monai", "nibabel")
#: Import names of everything the hub installs (``Resources/requirements.txt`` and torch),
#: none of which a fresh Slicer has: the module files and the panels' set-up need none.
HUB_INSTALLS = HEAVY + ("nrrd", "safetensors", "skimage", "pylibjpeg", "libjpeg", "openjpeg",
                        "rle", "tqdm", "nilearn", "matplotlib", "mpl_toolkits", "pylab",
                        "highdicom")
#: Slicer module folders in load order: the hub first (the task modules depend on it).
MODULES = ("LesionSuite", "WMHDualTasker", "CMBDetector", "ICHWeakSeg")
#: Packages beside the module files; Slicer puts each module folder on ``sys.path``.
PACKAGES = ("LesionSuiteLib", "LesionSuiteGUI", "WMHDualTaskerLib", "CMBDetectorLib",
            "ICHWeakSegLib")


class BlockImports(importlib.abc.MetaPathFinder):
    """Makes the ``blocked`` top-level packages unimportable and records who asked."""

    def __init__(self, blocked):
        self.blocked = frozenset(blocked)
        self.attempts: list[dict] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.blocked:
            return None
        self.attempts.append({"module": fullname, "by": _importing_line()})
        raise ModuleNotFoundError(f"No module named {fullname!r} (not installed yet in a "
                                  "fresh Slicer)", name=fullname)


def _importing_line() -> str:
    """``path:line`` of the innermost module-folder frame on the stack."""
    for frame in reversed(traceback.extract_stack()):
        if _in_modules(frame.filename):
            return f"{_relative(frame.filename)}:{frame.lineno}"
    return "?"


def _in_modules(filename: str) -> bool:
    """Whether ``filename`` belongs to one of the Slicer module folders (lesion_core too)."""
    path = Path(filename).resolve()
    return any(REPO / module in path.parents for module in MODULES)


def _relative(filename: str) -> str:
    return Path(filename).resolve().relative_to(REPO).as_posix()


class _Anything:
    """Stands in for any application object: every attribute, call and subscript is one."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return _Anything()

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getitem__(self, key):
        return _Anything()


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


def install_application_stand_ins() -> None:
    """``qt``, ``ctk`` and the parts of ``slicer`` that only the application has."""
    import slicer  # the slicer-core wheel: MRML, and slicer.util without the app

    for name in ("qt", "ctk"):
        sys.modules[name] = _StandInModule(name)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = _StandInModule("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for base in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget",
                 "ScriptedLoadableModuleTest"):
        setattr(scripted, base, type(base, (), {}))
    # No ScriptedLoadableModuleLogic: the Logic classes then take their headless base,
    # which is what the Logic tests exercise too.
    for module in (i18n, wrapper, scripted):
        sys.modules[module.__name__] = module
        setattr(slicer, module.__name__.rpartition(".")[2], module)


def _import(name: str, errors: list[dict]) -> None:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every failure, not only the first
        errors.append(_failure(name, exc))


def _failure(what: str, exc: BaseException) -> dict:
    return {"module": what, "error": f"{type(exc).__name__}: {exc}", "at": _error_line(exc)}


def _error_line(exc: BaseException) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if _in_modules(frame.filename):
            return f"{_relative(frame.filename)}:{frame.lineno}"
    return "?"


def _submodules(package: str) -> list[str]:
    module = sys.modules.get(package)
    if module is None or not hasattr(module, "__path__"):
        return []
    return [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]


def setup_calls() -> None:
    """What the panels' ``setup()`` asks of the Logic (the rest of setup is Qt)."""
    from CMBDetectorLib.logic import CMBDetectorLogic
    from CMBDetectorLib.logic import default_feedback_root as cmb_feedback_root
    from ICHWeakSegLib.logic import ICHWeakSegLogic
    from ICHWeakSegLib.logic import default_feedback_root as ich_feedback_root
    from LesionSuiteLib.hub_logic import LesionSuiteLogic
    from WMHDualTaskerLib.logic import WMHDualTaskerLogic
    from WMHDualTaskerLib.logic import default_feedback_root as wmh_feedback_root

    for logic_class in (LesionSuiteLogic, WMHDualTaskerLogic, CMBDetectorLogic,
                        ICHWeakSegLogic):
        logic_class()
    for feedback_root in (wmh_feedback_root, cmb_feedback_root, ich_feedback_root):
        feedback_root()
    hub = LesionSuiteLogic()
    hub.dependency_summary()
    hub.user_models_dir()


def probe(blocked, walk_packages: bool, extra_files) -> dict:
    blocker = BlockImports(blocked)
    sys.meta_path.insert(0, blocker)
    install_application_stand_ins()
    for module in MODULES:
        sys.path.insert(0, str(REPO / module))
    errors: list[dict] = []
    for module in MODULES:
        _import(module, errors)
    for package in PACKAGES if walk_packages else ():
        _import(package, errors)
        for name in _submodules(package):
            _import(name, errors)
    try:
        setup_calls()
    except Exception as exc:
        errors.append(_failure("setup() calls", exc))
    for path in extra_files:
        spec = importlib.util.spec_from_file_location(Path(path).stem, path)
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except Exception as exc:
            errors.append(_failure(path, exc))
    loaded = sorted({_relative(m.__file__) for m in list(sys.modules.values())
                     if getattr(m, "__file__", None) and _in_modules(m.__file__)})
    return {"attempts": blocker.attempts, "errors": errors, "loaded": loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", default=",".join(HEAVY),
                        help="top-level packages to make unimportable, comma-separated, or "
                             "'all' (everything the hub installs)")
    parser.add_argument("--packages", action="store_true",
                        help="also import every submodule of the *Lib / *GUI packages")
    parser.add_argument("extra", nargs="*", help="more .py files to import last")
    args = parser.parse_args()
    blocked = HUB_INSTALLS if args.block == "all" else tuple(args.block.split(","))
    print(json.dumps(probe(blocked, args.packages, args.extra)))


if __name__ == "__main__":
    main()

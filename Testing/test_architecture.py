"""The layers of docs/architecture.md.

Imports are read from the source (AST, nothing is imported): every import counts, also
inside functions and ``TYPE_CHECKING`` blocks, since a lazy import is still a dependency.
Checked: ``lesion_core`` has no import cycle, between modules nor between its packages
(importing ``lesion_core.tasks.registry`` runs ``lesion_core/tasks/__init__.py`` too, so a
bundle layer that asked the registry would import the whole tasks layer); the packages of
the Slicer modules (``*GUI/``, ``*Lib/``) import no module file (``LesionSuite.py``, ...),
which sits above them; the synthetic-cohort generator (``lesion_core.synth``) is used by
the command line's data verbs only, never by a task, the registration, the atlases or a
Slicer logic; the atlases stay below the tasks. And
each vocabulary the tasks share is one object (this one test imports the modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LESION_CORE = REPO / "LesionSuite" / "lesion_core"
#: The Slicer logic packages (no Qt; MRML in and out).
SLICER_LIBS = (REPO / "LesionSuite" / "LesionSuiteLib", REPO / "WMHDualTasker" / "WMHDualTaskerLib",
               REPO / "CMBDetector" / "CMBDetectorLib", REPO / "ICHWeakSeg" / "ICHWeakSegLib")
#: What may import the generator: itself and the command line's data verbs.
MAY_IMPORT_SYNTH = ("lesion_core.synth", "lesion_core.cli.demo", "lesion_core.cli.synth")
#: The module files Slicer loads: the top of the Slicer side, imported by nothing below.
MODULE_FILES = ("LesionSuite", "WMHDualTasker", "CMBDetector", "ICHWeakSeg")
#: The packages of the module files: the shared widgets and the Slicer logic.
SLICER_PACKAGES = (REPO / "LesionSuite" / "LesionSuiteGUI", *SLICER_LIBS)
#: What the atlases may not import: everything that sits above them.
ABOVE_ATLAS = ("lesion_core.synth", "lesion_core.cli", "lesion_core.tasks", "lesion_core.wmh",
               "lesion_core.cmb", "lesion_core.ich")


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a folder)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports (relative imports resolved; ``from a import b``
    gives both ``a`` and ``a.b``, since ``b`` may be a module)."""
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _offenders(modules: dict[str, Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{module} imports {name}" for module, path in modules.items()
            for name in sorted(_imported(module, path)) if _within(name, forbidden)]


def _cycle(graph: dict[str, set[str]]) -> str:
    """The first import cycle of ``graph`` (name -> names it imports), or ``""``."""
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> str:
        if node in path:
            return " -> ".join(path[path.index(node):] + (node,))
        if node not in done:
            for target in sorted(graph[node]):
                found = visit(target, path + (node,))
                if found:
                    return found
            done.add(node)
        return ""

    return next((c for c in (visit(node, ()) for node in sorted(graph)) if c), "")


def _package_of(name: str) -> str:
    """``lesion_core.tasks.registry`` -> ``lesion_core.tasks``: the part of the library a
    name belongs to (a sub-package, or a module directly under ``lesion_core``)."""
    return ".".join(name.split(".")[:2])


def test_lesion_core_has_no_import_cycle():
    modules = _modules(LESION_CORE)
    graph = {m: {n for n in _imported(m, p) if n in modules and n != m} for m, p in modules.items()}
    assert _cycle(graph) == ""


def test_the_packages_of_lesion_core_import_each_other_in_no_cycle():
    """Importing a module imports its package: ``bundle`` asking ``tasks.registry`` runs
    ``tasks/__init__``, which imports ``tasks.models``, which imports ``bundle``."""
    modules = _modules(LESION_CORE)
    parts = {_package_of(m) for m in modules}
    graph: dict[str, set[str]] = {part: set() for part in parts}
    for module, path in modules.items():
        graph[_package_of(module)] |= {_package_of(n) for n in _imported(module, path)
                                       if _package_of(n) in parts} - {_package_of(module)}
    assert {"lesion_core.bundle", "lesion_core.tasks", "lesion_core.wmh"} <= parts
    assert "lesion_core.bundle" in graph["lesion_core.tasks"]  # so the check below can fail
    assert _cycle(graph) == ""


@pytest.mark.parametrize("package", SLICER_PACKAGES, ids=lambda p: p.name)
def test_the_slicer_packages_import_no_module_file(package):
    """A module file (``LesionSuite.py``, ...) imports its packages, never the reverse: what
    the task panels share with the hub lives in ``LesionSuiteGUI`` / ``LesionSuiteLib``."""
    modules = _modules(package)
    assert modules, f"no modules found in {package}"
    assert _offenders(modules, MODULE_FILES) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == "a -> b -> c -> a"
    assert _cycle({"a": {"b"}, "b": set()}) == ""


def test_only_the_command_line_uses_the_generator():
    """Tasks, registration, atlases and the rest of the library run without ``synth``."""
    modules = {m: p for m, p in _modules(LESION_CORE).items() if not _within(m, MAY_IMPORT_SYNTH)}
    assert {"lesion_core.atlas.template", "lesion_core.registration", "lesion_core.wmh.zones",
            "lesion_core.cmb.predict", "lesion_core.ich.config"} <= set(modules)
    assert _offenders(modules, ("lesion_core.synth",)) == []


@pytest.mark.parametrize("lib", SLICER_LIBS, ids=lambda p: p.name)
def test_slicer_logic_does_not_use_the_generator(lib):
    modules = _modules(lib)
    assert modules, f"no modules found in {lib}"
    assert _offenders(modules, ("lesion_core.synth",)) == []


def test_the_atlases_sit_below_the_tasks_and_the_generator():
    modules = {m: p for m, p in _modules(LESION_CORE).items() if _within(m, ("lesion_core.atlas",))}
    assert {"lesion_core.atlas.template", "lesion_core.atlas.arwmc", "lesion_core.atlas.mars",
            "lesion_core.atlas.tissues"} <= set(modules)
    assert _offenders(modules, ABOVE_ATLAS) == []


def test_the_checks_see_lazy_and_relative_imports(tmp_path):
    """A function-level relative import of the generator is found (the checks can fail)."""
    package = tmp_path / "lesion_core"
    (package / "wmh").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "wmh" / "__init__.py").write_text("")
    (package / "wmh" / "late.py").write_text("def f():\n    from ..synth import cohort\n")
    assert _offenders(_modules(package), ("lesion_core.synth",)) == [
        "lesion_core.wmh.late imports lesion_core.synth",
        "lesion_core.wmh.late imports lesion_core.synth.cohort"]


def test_each_task_vocabulary_is_defined_once():
    """The names the tasks, their files and the generator share are one object each."""
    from lesion_core import labels
    from lesion_core.atlas import arwmc, mars
    from lesion_core.ich import config as ich_config
    from lesion_core.ich import outputs_file as ich_files
    from lesion_core.ich import reader_labels
    from lesion_core.synth import cmb as synth_cmb
    from lesion_core.synth import ich as synth_ich
    from lesion_core.synth import wmh as synth_wmh
    from lesion_core.wmh import config as wmh_config
    from WMHDualTaskerLib import outputs as wmh_outputs

    ich = labels.ICH_SUBTYPE_ORDER
    assert ich == ("intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural")
    assert ich_config.SUBTYPES is ich and reader_labels.SUBTYPE_KEYS is ich
    assert ich_files.SUBTYPE_COLUMNS is ich
    assert synth_ich.SUBTYPE_KEYS is labels.ICH_SUBTYPE_KEYS
    assert wmh_config.REGIONS is arwmc.REGIONS and wmh_outputs.REGIONS is arwmc.REGIONS
    assert synth_wmh.REGIONS is arwmc.REGIONS and synth_wmh.LABELS is arwmc.LABELS
    assert synth_cmb.CATEGORIES is mars.CATEGORIES

"""Every file of a Slicer module folder is listed in that module's CMakeLists.txt.

Slicer installs a scripted module's files only when ``slicerMacroBuildScriptedModule`` lists
them (SCRIPTS for ``.py``, RESOURCES for the rest), one by one, as Slicer's convention is.
Each module calls ``lesion_suite_scripted_module(<name> SCRIPTS ... RESOURCES ...)``
(``CMake/LesionSuiteScriptedModule.cmake``), which adds the main script, icon and .ui
every module has and wraps Slicer's macro and test registration.
A file that is forgotten works in the source tree and is missing from the built extension;
these tests catch that, and a listed file that does not exist (which breaks the build).

``python Testing/test_cmake_lists.py`` prints the call each module's CMakeLists.txt needs;
with ``--write`` it rewrites them in place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Files in a module folder that are not installed: the build file itself, documentation,
#: placeholders, and the module's own build-time test folder (it has its own CMakeLists).
_NOT_INSTALLED_NAMES = {"CMakeLists.txt", ".gitkeep", ".gitignore"}
_NOT_INSTALLED_SUFFIXES = {".md", ".pyc"}
_NOT_INSTALLED_DIRS = {"__pycache__", "Testing"}


def _top_level_subdirectories() -> list[str]:
    text = _strip_comments((REPO / "CMakeLists.txt").read_text(encoding="utf-8"))
    return re.findall(r"add_subdirectory\(\s*([^\s)]+)\s*\)", text)


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


#: The CMake function every module's CMakeLists.txt calls, and where it is defined.
_MODULE_FUNCTION = "lesion_suite_scripted_module"
_MODULE_FUNCTION_FILE = REPO / "CMake" / "LesionSuiteScriptedModule.cmake"


def added_by_the_function(module: str) -> tuple[list[str], list[str]]:
    """(SCRIPTS, RESOURCES) that ``lesion_suite_scripted_module`` adds by itself."""
    return [f"{module}.py"], [f"Resources/Icons/{module}.png", f"Resources/UI/{module}.ui"]


def _module_call(text: str) -> tuple[str, dict[str, list[str]]] | None:
    """(name, {"SCRIPTS": [...], "RESOURCES": [...]}) of the module function's call."""
    match = re.search(r"^\s*" + re.escape(_MODULE_FUNCTION) + r"\(\s*([^\s)]+)(.*?)\)",
                      _strip_comments(text), re.DOTALL | re.MULTILINE)
    if match is None:
        return None
    lists: dict[str, list[str]] = {"SCRIPTS": [], "RESOURCES": []}
    current = None
    for item in match.group(2).split():
        if item in lists:
            current = item
        elif current is None:
            raise ValueError(f"{item!r} stands before SCRIPTS or RESOURCES")
        else:
            lists[current].append(item)
    return match.group(1), lists


def _listed(module: str, text: str | None = None) -> tuple[list[str], list[str]]:
    """(SCRIPTS, RESOURCES) the module's CMakeLists.txt installs, the function's own included."""
    if text is None:
        text = (REPO / module / "CMakeLists.txt").read_text(encoding="utf-8")
    call = _module_call(text)
    if call is None:
        return [], []
    scripts, resources = added_by_the_function(module)
    return scripts + call[1]["SCRIPTS"], resources + call[1]["RESOURCES"]


def _files_on_disk(module: str) -> list[str]:
    """Paths (relative to the module folder, '/'-separated) of files that belong to it.

    In a git checkout: tracked and untracked-but-not-ignored files (so build outputs and
    egg-info, which .gitignore names, do not count). Elsewhere: a walk of the folder.
    """
    folder = REPO / module
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", module],
            cwd=REPO, capture_output=True, check=True, timeout=60).stdout.decode("utf-8")
        paths = [p for p in out.split("\0") if p]
        rel = [Path(p).relative_to(module).as_posix() for p in paths if (REPO / p).is_file()]
    except (OSError, subprocess.SubprocessError):
        rel = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d not in _NOT_INSTALLED_DIRS
                       and not d.endswith(".egg-info")]
            rel += [(Path(root) / f).relative_to(folder).as_posix() for f in files]
    kept = []
    for path in sorted(set(rel)):
        parts = path.split("/")
        if parts[-1] in _NOT_INSTALLED_NAMES and len(parts) == 1:
            continue
        if Path(path).suffix in _NOT_INSTALLED_SUFFIXES or parts[-1] in (".gitkeep",):
            continue
        if any(p in _NOT_INSTALLED_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        kept.append(path)
    return kept


def expected_lists(module: str) -> tuple[list[str], list[str]]:
    """(SCRIPTS, RESOURCES) that ``<module>/CMakeLists.txt`` must list."""
    files = _files_on_disk(module)
    scripts = [f for f in files if f.endswith(".py")]
    resources = [f for f in files if not f.endswith(".py")]
    return scripts, resources


MODULES = _top_level_subdirectories()


def test_extension_lists_its_modules():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert MODULES == ["LesionSuite", "WMHDualTasker", "CMBDetector", "ICHWeakSeg"]
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                "EXTENSION_DEPENDS"):
        assert re.search(r"set\(\s*" + key + r"\s", text), key
    assert re.search(r'set\(\s*EXTENSION_DEPENDS\s+"PyTorch"\s*\)', text)
    assert "find_package(Slicer REQUIRED)" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text
    assert (REPO / "Resources" / "LesionSuite.png").is_file()


def test_module_function_wraps_slicers_macro_and_test_registration():
    """The one place the modules' build is written: Slicer's macro, generic tests, ctest."""
    top = _strip_comments((REPO / "CMakeLists.txt").read_text(encoding="utf-8"))
    include = "include(${CMAKE_CURRENT_SOURCE_DIR}/CMake/LesionSuiteScriptedModule.cmake)"
    assert include in top
    assert top.index(include) > top.index("include(${Slicer_USE_FILE})")
    assert top.index(include) < top.index("add_subdirectory(")
    text = _strip_comments(_MODULE_FUNCTION_FILE.read_text(encoding="utf-8"))
    assert f"function({_MODULE_FUNCTION} name)" in text
    assert "slicerMacroBuildScriptedModule(" in text
    assert "NAME ${name}" in text
    assert "SCRIPTS ${name}.py ${ARG_SCRIPTS}" in text
    assert "RESOURCES Resources/Icons/${name}.png Resources/UI/${name}.ui ${ARG_RESOURCES}" in text
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${name}.py)" in text


@pytest.mark.parametrize("module", MODULES)
def test_module_follows_the_scripted_module_layout(module):
    folder = REPO / module
    call = _module_call((folder / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert call is not None, f"{module}/CMakeLists.txt does not call {_MODULE_FUNCTION}"
    assert call[0] == module
    assert (folder / f"{module}.py").is_file()
    assert (folder / "Resources" / "UI" / f"{module}.ui").is_file()
    assert (folder / "Resources" / "Icons" / f"{module}.png").is_file()


def unlisted_files(module: str) -> list[str]:
    """Files of the module folder that its CMakeLists.txt does not install."""
    scripts, resources = _listed(module)
    want_scripts, want_resources = expected_lists(module)
    return sorted(set(want_scripts) - set(scripts)) + sorted(
        set(want_resources) - set(resources))


def listing_errors(module: str) -> list[str]:
    """What is wrong with the lists themselves: missing files, repeats, the wrong list."""
    scripts, resources = _listed(module)
    errors = [f"lists {f}, which does not exist" for f in scripts + resources
              if not (REPO / module / f).is_file()]
    errors += [f"lists {f} twice" for f in sorted(set(f for f in scripts + resources
                                                       if (scripts + resources).count(f) > 1))]
    errors += [f"lists {f} under SCRIPTS" for f in scripts if not f.endswith(".py")]
    errors += [f"lists {f} under RESOURCES" for f in resources if f.endswith(".py")]
    return errors


@pytest.mark.parametrize("module", MODULES)
def test_every_file_of_the_module_is_listed(module):
    unlisted = unlisted_files(module)
    assert not unlisted, (
        f"{module}/CMakeLists.txt does not list {unlisted}; add .py files after SCRIPTS and "
        f"other files after RESOURCES in its {_MODULE_FUNCTION}() call "
        f"(python Testing/test_cmake_lists.py --write rewrites the lists)")


@pytest.mark.parametrize("module", MODULES)
def test_every_listed_file_exists_once_in_the_right_list(module):
    errors = listing_errors(module)
    assert not errors, f"{module}/CMakeLists.txt: {'; '.join(errors)}"


def _toy_module(root: Path, cmake: str) -> None:
    """A module folder ``Mod`` with a main script, icon, .ui, one Lib file and a model."""
    for path in ("Mod.py", "ModLib/logic.py", "Resources/Icons/Mod.png", "Resources/UI/Mod.ui",
                 "Models/m/metadata.json"):
        (root / "Mod" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "Mod" / path).write_text("")
    (root / "Mod" / "CMakeLists.txt").write_text(cmake)


def test_a_forgotten_or_misplaced_file_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    complete = ("lesion_suite_scripted_module(Mod\n  SCRIPTS\n    ModLib/logic.py\n"
                "  RESOURCES\n    Models/m/metadata.json\n  )\n")
    _toy_module(tmp_path, complete)
    assert unlisted_files("Mod") == [] and listing_errors("Mod") == []

    _toy_module(tmp_path, complete.replace("    ModLib/logic.py\n", ""))
    assert unlisted_files("Mod") == ["ModLib/logic.py"]

    _toy_module(tmp_path, complete.replace("Models/m/metadata.json", "Models/m/gone.json"))
    assert unlisted_files("Mod") == ["Models/m/metadata.json"]
    assert listing_errors("Mod") == ["lists Models/m/gone.json, which does not exist"]

    _toy_module(tmp_path, complete.replace("    ModLib/logic.py\n", "    Mod.py\n"))
    assert "lists Mod.py twice" in listing_errors("Mod")

    _toy_module(tmp_path, "slicerMacroBuildScriptedModule(NAME Mod SCRIPTS Mod.py)\n")
    assert unlisted_files("Mod") == ["Mod.py", "ModLib/logic.py", "Models/m/metadata.json",
                                     "Resources/Icons/Mod.png", "Resources/UI/Mod.ui"]


_CMAKE_STUBS = """
cmake_minimum_required(VERSION 3.16.3)
project(ListProbe NONE)
set(BUILD_TESTING ON)
set(PROBE_OUT ${CMAKE_BINARY_DIR}/probe.txt)
file(WRITE ${PROBE_OUT} "")
# Slicer's macro parses its arguments the same way; this stand-in records them.
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME"
                        "SCRIPTS;RESOURCES" ${ARGN})
  file(APPEND ${PROBE_OUT} "module ${MY_SLICER_NAME} ${MY_SLICER_WITH_GENERIC_TESTS} "
       "${CMAKE_CURRENT_SOURCE_DIR}\\n")
  foreach(item IN LISTS MY_SLICER_SCRIPTS)
    file(APPEND ${PROBE_OUT} "script ${item}\\n")
  endforeach()
  foreach(item IN LISTS MY_SLICER_RESOURCES)
    file(APPEND ${PROBE_OUT} "resource ${item}\\n")
  endforeach()
endmacro()
function(slicer_add_python_unittest)
  file(APPEND ${PROBE_OUT} "unittest ${ARGN}\\n")
endfunction()
include(@FUNCTION_FILE@)
"""


# The test extra installs CMake from PyPI beside the interpreter; a system one also serves.
CMAKE = shutil.which("cmake", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                     os.environ.get("PATH", "")]))


@pytest.mark.skipif(CMAKE is None, reason="needs cmake (pip install cmake)")
def test_cmake_itself_reads_the_lists_the_test_reads(tmp_path):
    """Configure every module with Slicer's macros stubbed: what CMake passes is the listing."""
    source = tmp_path / "src"
    source.mkdir()
    text = _CMAKE_STUBS.replace("@FUNCTION_FILE@", _MODULE_FUNCTION_FILE.as_posix())
    text += "".join(f"add_subdirectory({(REPO / m).as_posix()} {m})\n" for m in MODULES)
    (source / "CMakeLists.txt").write_text(text)
    done = subprocess.run([CMAKE, "-S", str(source), "-B", str(tmp_path / "build")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen: dict[str, dict[str, list[str]]] = {}
    for line in (tmp_path / "build" / "probe.txt").read_text().splitlines():
        kind, rest = line.split(" ", 1)
        if kind == "module":
            name, generic_tests, folder = rest.split(" ")
            assert generic_tests == "TRUE" and Path(folder) == REPO / name
            current = seen.setdefault(name, {"script": [], "resource": [], "unittest": []})
        else:
            current[kind].append(rest)
    assert sorted(seen) == sorted(MODULES)
    for module in MODULES:
        scripts, resources = _listed(module)
        assert seen[module] == {"script": scripts, "resource": resources,
                                "unittest": [f"SCRIPT;{module}.py"]}


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_parses_and_has_the_widgets_the_module_uses(module):
    """The .ui is valid XML with a qMRMLWidget root, and every ``self.ui.<name>`` exists."""
    import ast
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot()
    top = root.find("widget")
    assert top is not None and top.get("class") == "qMRMLWidget" and top.get("name") == module
    names = {w.get("name") for w in root.iter("widget")}
    tree = ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)}
    used |= {node.attr for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
             and node.value.attr == "ui" and isinstance(node.value.value, ast.Attribute)}
    assert used <= names, f"{module}.py uses widgets the .ui lacks: {sorted(used - names)}"

    # Widgets bound to the parameter node name fields that the parameter node class has.
    bound = {p.find("string").text for p in root.iter("property")
             if p.get("name") == "SlicerParameterName"}
    fields = {stmt.target.id for cls in tree.body if isinstance(cls, ast.ClassDef)
              and cls.name == f"{module}ParameterNode"
              for stmt in cls.body if isinstance(stmt, ast.AnnAssign)}
    assert bound <= fields, f"unknown SlicerParameterName values {sorted(bound - fields)}"
    assert fields <= bound, f"parameters without a widget: {sorted(fields - bound)}"


@pytest.mark.parametrize("module", MODULES)
def test_module_classes_follow_the_slicer_naming(module):
    import ast

    tree = ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {module, f"{module}Widget", f"{module}Test"} <= classes
    text = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    if module != "LesionSuite":  # loaded after the hub (TaskModule says so)
        module_class = next(node for node in tree.body
                            if isinstance(node, ast.ClassDef) and node.name == module)
        assert [ast.unparse(base) for base in module_class.bases] == ["TaskModule"]
        shared = (REPO / "LesionSuite" / "LesionSuiteGUI" / "task_widget.py").read_text("utf-8")
        assert 'self.parent.dependencies = ["LesionSuite"]' in shared
        if not (REPO / module / f"{module}Lib").is_dir():
            assert "not available yet" in text  # honest about a missing pipeline


def test_model_files_count_as_resources(tmp_path, monkeypatch):
    """A model folder under Models/ is found by the listing (so a new model must be listed)."""
    module = tmp_path / "Mod"
    (module / "Models" / "wmh-small").mkdir(parents=True)
    (module / "Models" / "wmh-small" / "metadata.json").write_text("{}")
    (module / "Models" / "wmh-small" / "model.safetensors").write_bytes(b"\0")
    (module / "sub").mkdir()
    (module / "sub" / "x.py").write_text("")
    (module / "__pycache__").mkdir()
    (module / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (module / "CMakeLists.txt").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    scripts, resources = expected_lists("Mod")
    assert scripts == ["sub/x.py"]
    assert resources == ["Models/wmh-small/metadata.json", "Models/wmh-small/model.safetensors"]


def _cmake_call(module: str) -> str:
    """The module function's call, as ``<module>/CMakeLists.txt`` must hold it."""
    scripts, resources = expected_lists(module)
    own_scripts, own_resources = added_by_the_function(module)
    lines = [f"{_MODULE_FUNCTION}({module}"]
    for keyword, items, implied in (("SCRIPTS", scripts, own_scripts),
                                    ("RESOURCES", resources, own_resources)):
        items = [item for item in items if item not in implied]
        if items:
            lines += [f"  {keyword}"] + [f"    {item}" for item in items]
    return "\n".join(lines + ["  )"])


def _print_or_write_lists(write: bool) -> None:
    for module in MODULES:
        path = REPO / module / "CMakeLists.txt"
        text = path.read_text(encoding="utf-8")
        call = _cmake_call(module)
        if write:
            text = re.sub(r"^" + re.escape(_MODULE_FUNCTION) + r"\(.*?\)", lambda _: call,
                          text, count=1, flags=re.DOTALL | re.MULTILINE)
            path.write_text(text, encoding="utf-8")
        else:
            print(f"# {module}/CMakeLists.txt\n{call}\n")


if __name__ == "__main__":
    # python Testing/test_cmake_lists.py          prints the lists
    # python Testing/test_cmake_lists.py --write  rewrites them in every module's CMakeLists
    _print_or_write_lists(write="--write" in sys.argv)

"""Every file of a Slicer module folder is listed in that module's CMakeLists.txt.

Slicer installs a scripted module's files only when ``slicerMacroBuildScriptedModule`` lists
them (SCRIPTS for ``.py``, RESOURCES for the rest), one by one, as Slicer's convention is.
A file that is forgotten works in the source tree and is missing from the built extension;
these tests catch that, and a listed file that does not exist (which breaks the build).

``python Testing/test_cmake_lists.py`` prints the lists each module's CMakeLists.txt needs;
with ``--write`` it rewrites them in place.
"""

from __future__ import annotations

import os
import re
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


def _cmake_list(text: str, variable: str, module_name: str) -> list[str]:
    """Items of ``set(<variable> ...)`` with ``${MODULE_NAME}`` substituted."""
    match = re.search(r"set\(\s*" + re.escape(variable) + r"\b(.*?)\)", _strip_comments(text),
                      re.DOTALL)
    if match is None:
        return []
    return [item.replace("${MODULE_NAME}", module_name) for item in match.group(1).split()]


def _listed(module: str) -> tuple[list[str], list[str]]:
    text = (REPO / module / "CMakeLists.txt").read_text(encoding="utf-8")
    return (_cmake_list(text, "MODULE_PYTHON_SCRIPTS", module),
            _cmake_list(text, "MODULE_PYTHON_RESOURCES", module))


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


@pytest.mark.parametrize("module", MODULES)
def test_module_follows_the_scripted_module_layout(module):
    folder = REPO / module
    text = (folder / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"set\(\s*MODULE_NAME\s+" + module + r"\s*\)", text)
    assert "slicerMacroBuildScriptedModule(" in text
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert (folder / f"{module}.py").is_file()
    assert (folder / "Resources" / "UI" / f"{module}.ui").is_file()
    assert (folder / "Resources" / "Icons" / f"{module}.png").is_file()


@pytest.mark.parametrize("module", MODULES)
def test_every_file_of_the_module_is_listed(module):
    scripts, resources = _listed(module)
    want_scripts, want_resources = expected_lists(module)
    unlisted = sorted(set(want_scripts) - set(scripts)) + sorted(
        set(want_resources) - set(resources))
    assert not unlisted, (
        f"{module}/CMakeLists.txt does not list {unlisted}; add .py files to "
        f"MODULE_PYTHON_SCRIPTS and other files to MODULE_PYTHON_RESOURCES "
        f"(python Testing/test_cmake_lists.py prints the full lists)")


@pytest.mark.parametrize("module", MODULES)
def test_every_listed_file_exists_once_in_the_right_list(module):
    scripts, resources = _listed(module)
    missing = [f for f in scripts + resources if not (REPO / module / f).is_file()]
    assert not missing, f"{module}/CMakeLists.txt lists files that do not exist: {missing}"
    assert len(set(scripts)) == len(scripts) and len(set(resources)) == len(resources)
    assert all(f.endswith(".py") for f in scripts)
    assert not [f for f in resources if f.endswith(".py")]


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
    if module != "LesionSuite":  # loaded after the hub (describeTaskModule says so)
        assert "describeTaskModule(self.parent" in text
        shared = (REPO / "LesionSuite" / "LesionSuiteGUI" / "task_widget.py").read_text("utf-8")
        assert 'parent.dependencies = ["LesionSuite"]' in shared
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


def _cmake_blocks(module: str) -> dict[str, str]:
    """``set(...)`` text of both lists, as the module's CMakeLists.txt must hold them."""
    blocks = {}
    for variable, items in zip(("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"),
                               expected_lists(module)):
        lines = ["  " + item.replace(f"{module}.", "${MODULE_NAME}.") for item in items]
        blocks[variable] = f"set({variable}\n" + "\n".join(lines) + "\n  )"
    return blocks


def _print_or_write_lists(write: bool) -> None:
    for module in MODULES:
        path = REPO / module / "CMakeLists.txt"
        text = path.read_text(encoding="utf-8")
        for variable, block in _cmake_blocks(module).items():
            if write:
                text = re.sub(r"set\(\s*" + variable + r"\b.*?\)", lambda _: block, text,
                              count=1, flags=re.DOTALL)
            else:
                print(f"# {module}/CMakeLists.txt\n{block}\n")
        if write:
            path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    # python Testing/test_cmake_lists.py          prints the lists
    # python Testing/test_cmake_lists.py --write  rewrites them in every module's CMakeLists
    _print_or_write_lists(write="--write" in sys.argv)

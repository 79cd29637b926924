"""Everything the Slicer side runs is Python 3.9 code.

Slicer 5.6 and 5.8 run Python 3.9 (5.10: 3.12), and the README supports 5.6 and later. In
Slicer, the module files, their ``*Lib`` / ``*GUI`` packages and ``lesion_core`` all run on
that Python: the panels in the application, and ``lesion_core``'s command line in the
child processes (``PythonSlicer -m lesion_core``). So every ``.py`` file of the four module
folders is checked: by vermin (syntax and library use newer than 3.9) and by
:mod:`py39_check` (``X | Y`` unions that 3.9 would evaluate).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from py39_check import runtime_unions, runtime_unions_in_files

REPO = Path(__file__).resolve().parent.parent
MODULE_FOLDERS = ("LesionSuite", "WMHDualTasker", "CMBDetector", "ICHWeakSeg")
TARGET = "3.9"


def slicer_side_files() -> list[Path]:
    return sorted(path for folder in MODULE_FOLDERS for path in (REPO / folder).rglob("*.py")
                  if "__pycache__" not in path.parts)


def _vermin(paths) -> subprocess.CompletedProcess:
    pytest.importorskip("vermin")
    code = "import sys; from vermin import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, f"-t={TARGET}-", "--violations", "--no-tips", "-q",
         "--processes=1", *[str(p) for p in paths]],
        capture_output=True, text=True, timeout=300)


def test_the_slicer_side_is_found():
    names = {p.relative_to(REPO).as_posix() for p in slicer_side_files()}
    assert {"LesionSuite/LesionSuite.py", "WMHDualTasker/WMHDualTasker.py",
            "CMBDetector/CMBDetectorLib/logic.py", "LesionSuite/LesionSuiteGUI/task_widget.py",
            "LesionSuite/lesion_core/cli/__init__.py"} <= names


def test_vermin_finds_nothing_newer_than_python_39():
    result = _vermin(slicer_side_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_check_fails_on_python_310_code(tmp_path):
    source = tmp_path / "new.py"
    source.write_text("match 1:\n    case 1:\n        pass\nzip([1], [2], strict=True)\n",
                      encoding="utf-8")
    result = _vermin([source])
    assert result.returncode != 0
    assert "pattern matching" in result.stdout and "zip(strict)" in result.stdout


def test_no_type_union_is_evaluated_at_run_time():
    assert runtime_unions_in_files(slicer_side_files()) == []


@pytest.mark.parametrize("source", [
    "ImageLike = np.ndarray | Volume\n",
    "class A:\n    Alias = Path | None\n",
    "def f(x: int | None): ...\n",
    "def f() -> list[int] | None: ...\n",
    "x: int | None = None\n",
    "class A:\n    x: float | None = None\n",
    "def f(x):\n    return isinstance(x, Path | str)\n",
    "def f(x):\n    return cast(dict[str, int] | None, x)\n",
    "from typing import Optional\ny = None\nLabels = Optional[int] | str\n",
], ids=["alias", "class alias", "argument", "return", "module annotation",
        "class annotation", "isinstance", "subscript", "typing subscript"])
def test_unions_that_python_39_evaluates_are_found(source):
    assert runtime_unions(source), source


@pytest.mark.parametrize("source", [
    "from __future__ import annotations\ndef f(x: int | None) -> list[int] | None: ...\n",
    "from __future__ import annotations\nclass A:\n    x: float | None = None\n",
    "def f(a, b):\n    return a | b\n",
    "def f(a, b):\n    mask: int | None = a | b\n",
    "FLAGS = READ | WRITE | 4\n",
    "x = {1} | {2}\n",
], ids=["postponed signature", "postponed field", "array or", "local annotation",
        "flags", "sets"])
def test_harmless_unions_and_bitwise_ors_are_not_found(source):
    assert runtime_unions(source) == []

"""The Slicer modules load, and their panels set up, in a Slicer that has none of what the
hub installs (see ``slicer_load_probe.py``, which runs in a fresh interpreter each time)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import slicer_load_probe as probe

pytest.importorskip("slicer")

PROBE = Path(probe.__file__)


def run_probe(*args: str) -> dict:
    result = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True,
                            text=True, timeout=300, cwd=probe.REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_modules_and_their_packages_load_without_torch_monai_or_nibabel():
    report = run_probe("--block", ",".join(probe.HEAVY), "--packages")
    assert report["attempts"] == []
    assert report["errors"] == []
    loaded = set(report["loaded"])
    assert {f"{module}/{module}.py" for module in probe.MODULES} <= loaded
    assert {"LesionSuite/LesionSuiteGUI/task_widget.py", "LesionSuite/LesionSuiteGUI/errors.py",
            "WMHDualTasker/WMHDualTaskerLib/review.py", "CMBDetector/CMBDetectorLib/review.py",
            "ICHWeakSeg/ICHWeakSegLib/review.py",
            "LesionSuite/LesionSuiteLib/review_cases.py"} <= loaded


def test_modules_load_and_panels_set_up_without_anything_the_hub_installs():
    report = run_probe("--block", "all")
    assert report["attempts"] == []
    assert report["errors"] == []


def test_blocked_names_cover_every_package_the_hub_installs():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from LesionSuiteLib.hub_logic import default_requirements_file, read_requirements

    import_names: dict[str, set[str]] = {}
    for name, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            import_names.setdefault(canonicalize_name(distribution), set()).add(name)
    wanted = [Requirement(r).name for r in read_requirements(default_requirements_file())]
    for distribution in wanted + ["torch"]:
        provided = import_names.get(canonicalize_name(distribution))
        if provided is None:
            pytest.skip(f"{distribution} is not installed here")
        assert provided & set(probe.HUB_INSTALLS), distribution


def test_the_probe_reports_an_import_of_a_blocked_package(tmp_path):
    module = tmp_path / "loads_nibabel.py"
    module.write_text("import nibabel\n", encoding="utf-8")
    report = run_probe("--block", "nibabel", str(module))
    assert [a["module"] for a in report["attempts"]] == ["nibabel"]
    assert [e["module"] for e in report["errors"]] == [str(module)]

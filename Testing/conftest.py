"""Shared pytest fixtures.

``mrml_scene`` is a real MRML scene from the ``slicer-core`` wheel with the application
logic and module logics registered (see ``LesionSuiteLib.scene``); tests that use it are
skipped where the wheel is not installed. ``real_t1_path`` is the real T1 example image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "Data"
REPO = Path(__file__).resolve().parent.parent

# Task modules' Lib packages (e.g. WMHDualTaskerLib) are imported from their module folder,
# which Slicer puts on sys.path; LesionSuite's own folder is on it through the install.
for _module in ("WMHDualTasker", "CMBDetector", "ICHWeakSeg"):
    if str(REPO / _module) not in sys.path:
        sys.path.append(str(REPO / _module))


@pytest.fixture
def mrml_scene():
    """A fresh ``vtkMRMLScene`` set up as the Slicer application would set it up."""
    pytest.importorskip("slicer")
    from LesionSuiteLib.scene import create_scene, release_scene

    scene = create_scene()
    yield scene
    release_scene(scene)


@pytest.fixture
def real_t1_path() -> Path:
    """The real 3D T1 example (LAS, 1.75 mm isotropic, float64) shipped for tests."""
    path = DATA_DIR / "real" / "t1_deep-T1-WMH_example.nii.gz"
    if not path.exists():
        pytest.skip(f"real test image missing: {path.name}")
    return path

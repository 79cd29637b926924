"""Fixtures shared by the ICH Logic and review tests (slicer-core): a CT node, its
hand-made prediction outputs (``ich_outputs``), a feedback store and the loaded result.
Each test module defines its own ``image`` fixture (the CT volume)."""

from __future__ import annotations

import pytest

import ich_outputs as io_
from ICHWeakSegLib.logic import ICHWeakSegLogic
from LesionSuiteLib import mrml_bridge as mb


@pytest.fixture
def logic():
    return ICHWeakSegLogic()


@pytest.fixture
def ct_node(mrml_scene, image):
    return mb.volume_to_node(mrml_scene, image, "CT")


@pytest.fixture
def store(tmp_path):
    return tmp_path / "feedback"


@pytest.fixture
def out_dir(tmp_path, image):
    io_.write_outputs(tmp_path / "run1", image)
    return tmp_path / "run1"


@pytest.fixture
def result(logic, ct_node, out_dir, store):
    return logic.load_results(ct_node, out_dir, feedback_root=store)

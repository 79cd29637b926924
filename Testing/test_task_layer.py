"""The shared Slicer task layer (``LesionSuiteLib.task_logic``, ``.retraining``,
``.case_review``) under the slicer-core wheel, and what the three task modules built on it
show the user: node names, node attributes and saved file names, as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("slicer")

import saved_work as sw  # noqa: E402

#: Per task: the result nodes' names and the files ``save_results`` writes, for an input
#: volume named as in ``saved_work`` (what the modules made before the shared layer).
NAMES = {
    "wmh": ({"segmentation": "FLAIR WMH", "activation": "FLAIR WMH activation",
             "table": "FLAIR ARWMC", "regions": "FLAIR ARWMC regions"},
            {"segmentation": "FLAIR_wmh.seg.nrrd", "activation": "FLAIR_wmh_activation.nrrd",
             "table": "FLAIR_arwmc.tsv", "regions": "FLAIR_arwmc_regions.seg.nrrd"}),
    "cmb": ({"markups": "SWI CMB candidates", "table": "SWI CMB table",
             "segmentation": "SWI CMB"},
            {"markups": "SWI_cmb_candidates.mrk.json", "table": "SWI_cmb_candidates.tsv",
             "segmentation": "SWI_cmb.seg.nrrd"}),
    "ich": ({"segmentation": "CT ICH", "cam": "CT ICH CAM", "table": "CT ICH slices"},
            {"segmentation": "CT_ich.seg.nrrd", "cam": "CT_ich_cam.nrrd",
             "table": "CT_ich_slices.tsv"}),
}
MODELS = {"wmh": "wmh_flair_dualtasker 1.0", "cmb": "cmb_shiva_distilled 1.0",
          "ich": "ich_weakseg_cam 1.0"}


@pytest.mark.parametrize("task", sw.TASKS)
def test_result_nodes_and_saved_files_keep_their_names(task, mrml_scene, tmp_path):
    case = sw.make_case(task, mrml_scene, tmp_path / "work")
    nodes, files = NAMES[task]
    result = case.result
    assert {key: getattr(result, key).GetName() for key in nodes} == nodes
    assert len(result.nodes) == len(nodes)
    prefix = f"LesionSuite.{task.upper()}."
    for node in result.nodes:
        assert node.GetAttribute(prefix + "Result") == MODELS[task]
        assert node.GetAttribute(prefix + "InputNodeID") == result.input.GetID()
    paths = case.logic.save_results(result, tmp_path / "saved")
    assert {key: path.name for key, path in paths.items()} == files
    assert all(path.parent == tmp_path / "saved" and path.is_file() for path in paths.values())
    # The file stem: the node name made safe for file names, or the one given.
    stem = result.input.GetName()
    suffixes = {key: name[len(stem):] for key, name in files.items()}
    result.input.SetName("../My scan: 2/3")
    assert {key: path.name for key, path in case.logic.save_results(
        result, tmp_path / "odd").items()} == {k: "My_scan__2_3" + s for k, s in suffixes.items()}
    assert {key: path.name for key, path in case.logic.save_results(
        result, tmp_path / "given", "s1").items()} == {k: "s1" + s for k, s in suffixes.items()}
    case.logic.remove_result_nodes(result)
    assert all(node.GetScene() is None for node in result.nodes)
    assert result.input.GetScene() is mrml_scene

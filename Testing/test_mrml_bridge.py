"""The MRML bridge round trips exactly, under the slicer-core wheel (real MRML).

Grids are small (20-28 voxels a side), seeded, and deliberately awkward: oblique (rotated
about all three axes), anisotropic (0.7 x 1.1 x 3.0 mm) and LPS-stored (first two axes
flipped), because that is where conversions between [i, j, k] / [k, j, i] and affine /
IJKToRAS go wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("slicer")

from lesion_core.errors import InvalidImageError  # noqa: E402
from lesion_core.labels import LABELS_BY_TASK, labels_for  # noqa: E402
from lesion_core.volume import Volume  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from LesionSuiteLib.scene import get_module_logic, segmentations_logic  # noqa: E402

SHAPE = (20, 24, 28)
SPACING = (0.7, 1.1, 3.0)
LPS = np.diag([-1.0, -1.0, 1.0])


def _rotation(ax: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    r = np.eye(3)
    i, j = [a for a in range(3) if a != ax]
    r[i, i], r[j, j], r[i, j], r[j, i] = c, c, -s, s
    return r


def oblique_lps_affine() -> np.ndarray:
    """Oblique, anisotropic voxel->RAS affine of an image stored in LPS order."""
    affine = np.eye(4)
    rotation = _rotation(0, 0.3) @ _rotation(1, -0.2) @ _rotation(2, 0.5)
    affine[:3, :3] = LPS @ rotation @ np.diag(SPACING)
    affine[:3, 3] = [12.5, -30.25, 7.125]
    return affine


def axis_lps_affine() -> np.ndarray:
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = [40.0, 55.5, -20.0]
    return affine


def ich_label_map(rng: np.random.Generator) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[3:8, 4:9, 5:10] = 1
    lab[10:15, 10:14, 12:20] = 3
    lab[0, 0, 0] = 2                      # corner voxels catch off-by-one extents
    lab[19, 23, 27] = 5
    lab[1, 1, 1] = 6
    lab[(rng.random(SHAPE) < 0.02) & (lab == 0)] = 4
    return lab


# ------------------------------------------------------------------ volumes


@pytest.mark.parametrize("affine_fn", [oblique_lps_affine, axis_lps_affine])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8, np.float64])
def test_volume_round_trip_is_exact(mrml_scene, affine_fn, dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=SHAPE) * 300).astype(dtype)
    volume = Volume(array, affine_fn())
    node = mb.volume_to_node(mrml_scene, volume, "vol")
    back = mb.node_to_volume(node)
    assert back.array.dtype == array.dtype
    assert back.array.shape == SHAPE
    assert np.array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, volume.affine, rtol=0, atol=1e-9)


def test_node_holds_voxels_where_the_affine_says(mrml_scene):
    """Not only symmetric: voxel (i, j, k) of the node is array[i, j, k], at affine @ ijk."""
    rng = np.random.default_rng(1)
    array = rng.integers(-1000, 1000, size=SHAPE).astype(np.int16)
    volume = Volume(array, oblique_lps_affine())
    node = mb.volume_to_node(mrml_scene, volume, "vol")
    image = node.GetImageData()
    assert image.GetDimensions() == SHAPE
    ras_to_ijk = slicer_matrix(node, "GetRASToIJKMatrix")
    for ijk in [(0, 0, 0), (19, 0, 0), (0, 23, 0), (0, 0, 27), (7, 11, 13), (19, 23, 27)]:
        assert image.GetScalarComponentAsDouble(*ijk, 0) == array[ijk]
        ras = volume.voxel_to_ras(ijk)
        np.testing.assert_allclose((ras_to_ijk @ [*ras, 1.0])[:3], ijk, atol=1e-9)
    np.testing.assert_allclose(node.GetSpacing(), SPACING, atol=1e-12)


def slicer_matrix(node, getter: str) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    getattr(node, getter)(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_bool_becomes_uint8(mrml_scene):
    mask = np.zeros(SHAPE, bool)
    mask[2:5, 3:9, 4:6] = True
    back = mb.node_to_volume(mb.volume_to_node(mrml_scene, Volume(mask, axis_lps_affine()), "m"))
    assert back.array.dtype == np.uint8
    assert np.array_equal(back.array, mask.astype(np.uint8))


def test_real_t1_round_trips_unchanged(mrml_scene, real_t1_path):
    nib = pytest.importorskip("nibabel")
    img = nib.load(str(real_t1_path))
    volume = Volume(np.asanyarray(img.dataobj), img.affine)
    assert volume.orientation == "LAS"
    back = mb.node_to_volume(mb.volume_to_node(mrml_scene, volume, "t1"))
    assert back.array.dtype == volume.array.dtype
    assert np.array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, rtol=0, atol=1e-9)


def test_parent_transform_is_applied_in_world_mode(mrml_scene):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    volume = Volume(np.zeros(SHAPE, np.int16), axis_lps_affine())
    node = mb.volume_to_node(mrml_scene, volume, "v")
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    expected = volume.affine.copy()
    expected[0, 3] += 10.0
    np.testing.assert_allclose(mb.node_to_volume(node).affine, expected, atol=1e-12)
    np.testing.assert_allclose(mb.node_to_volume(node, world=False).affine, volume.affine)


def test_probability_overlay_has_colour_map_and_window(mrml_scene):
    rng = np.random.default_rng(2)
    prob = Volume(rng.random(SHAPE), oblique_lps_affine())
    node = mb.probability_to_node(mrml_scene, prob, "p")
    display = node.GetDisplayNode()
    assert node.GetImageData().GetScalarTypeAsString() == "float"
    assert display.GetColorNode() is not None
    assert display.GetColorNode().GetNumberOfColors() >= 2
    assert display.GetWindow() == pytest.approx(1.0)
    assert display.GetLevel() == pytest.approx(0.5)
    assert display.GetApplyThreshold()
    np.testing.assert_array_equal(mb.node_to_volume(node).array, prob.array.astype(np.float32))
    # a second map reuses the colour node instead of adding another
    n_colors = mrml_scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")
    mb.probability_to_node(mrml_scene, prob, "p2")
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == n_colors


# ------------------------------------------------------------------ segmentations


@pytest.mark.parametrize("affine_fn", [oblique_lps_affine, axis_lps_affine])
def test_labelmap_segmentation_round_trip(mrml_scene, affine_fn):
    lab = ich_label_map(np.random.default_rng(3))
    volume = Volume(lab, affine_fn())
    seg = mb.labelmap_to_segmentation(mrml_scene, volume, labels_for("ich"), "ich")
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 6
    back = mb.segmentation_to_labelmap(seg, volume)
    assert back.array.shape == SHAPE
    assert np.array_equal(back.array, lab)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-12)

    by_name = {segmentation.GetSegment(s).GetName(): segmentation.GetSegment(s)
               for s in segmentation.GetSegmentIDs()}
    for label in labels_for("ich"):
        segment = by_name[label.name]
        assert segment.GetColor() == pytest.approx(label.color)
        terminology = mb.segment_terminology(segment)
        assert f"SCT^{label.type.value}^" in terminology
        assert "SCT^49755003^" in terminology          # morphologically altered structure
        assert "SCT^12738006^" in terminology          # brain


def test_terminology_is_in_the_tag_that_every_slicer_reads(mrml_scene):
    """``vtkSegment.SetTerminology`` exists only from Slicer 5.10; the bridge writes the
    terminology tag, which is what that method sets and what Slicer 5.6 and 5.8 read."""
    import slicer
    from vtkmodules.vtkCommonCore import reference

    lab = np.zeros(SHAPE, np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    label = labels_for("wmh")[0]
    seg = mb.labelmap_to_segmentation(mrml_scene, Volume(lab, np.eye(4)), [label], "wmh")
    segment = seg.GetSegmentation().GetNthSegment(0)
    tag = reference("")
    assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag)
    assert str(tag) == mb.terminology_string(label) == mb.segment_terminology(segment)


def test_slicer_side_calls_no_segment_terminology_method_newer_than_5_6():
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    newer = {"SetTerminology", "GetTerminology", "HasTerminology"}  # vtkSegment, 5.10+
    found = []
    for folder in ("LesionSuite", "WMHDualTasker", "CMBDetector", "ICHWeakSeg"):
        for path in (repo / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(repo)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr in newer]
    assert found == []


def test_segmentation_export_onto_reference_node(mrml_scene):
    lab = ich_label_map(np.random.default_rng(4))
    affine = oblique_lps_affine()
    image = mb.volume_to_node(mrml_scene, Volume(lab.astype(np.float32), affine), "img")
    seg = mb.labelmap_to_segmentation(mrml_scene, Volume(lab, affine), labels_for("ich"),
                                      "ich", reference_node=image)
    back = mb.segmentation_to_labelmap(seg, image)
    assert np.array_equal(back.array, lab)


def test_empty_segments_and_segments_drawn_in_slicer(mrml_scene):
    lab = np.zeros(SHAPE, np.uint8)
    lab[2:4, 2:4, 2:4] = 1
    volume = Volume(lab, axis_lps_affine())
    seg = mb.labelmap_to_segmentation(mrml_scene, volume, labels_for("ich"), "ich",
                                      include_empty=True)
    assert seg.GetSegmentation().GetNumberOfSegments() == len(labels_for("ich"))
    # a reader adds a segment by hand in Slicer: no value tag; found by name
    segmentation = seg.GetSegmentation()
    segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName("Subdural haemorrhage"))
    new_id = segmentation.AddEmptySegment("", "Subdural haemorrhage")
    values = mb.segment_label_values(seg, labels_for("ich"))
    assert values[new_id] == 4
    back = mb.segmentation_to_labelmap(seg, volume, labels_for("ich"))
    assert np.array_equal(back.array, lab)


def test_unknown_values_get_generic_segments(mrml_scene):
    lab = np.zeros(SHAPE, np.int16)
    lab[5:7, 5:7, 5:7] = 1
    lab[9:11, 9:11, 9:11] = 42
    volume = Volume(lab, axis_lps_affine())
    seg = mb.labelmap_to_segmentation(mrml_scene, volume, labels_for("wmh"), "wmh")
    names = sorted(seg.GetSegmentation().GetSegment(s).GetName()
                   for s in seg.GetSegmentation().GetSegmentIDs())
    assert names == ["Label 42", "White matter hyperintensity"]
    assert np.array_equal(mb.segmentation_to_labelmap(seg, volume).array, lab)


def test_non_integer_label_map_is_refused(mrml_scene):
    bad = Volume(np.full(SHAPE, 0.5, np.float32), axis_lps_affine())
    with pytest.raises(InvalidImageError):
        mb.labelmap_to_segmentation(mrml_scene, bad, labels_for("wmh"))


def test_segmentations_logic_is_registered(mrml_scene):
    logic = segmentations_logic(mrml_scene)
    assert logic is not None and logic.IsA("vtkSlicerSegmentationsModuleLogic")
    assert logic.GetMRMLScene() is mrml_scene
    for name in ("Volumes", "Terminologies", "SubjectHierarchy", "Data"):
        assert get_module_logic(mrml_scene, name) is not None
    # without the Segmentations logic this returns "" (no labelmap converter)
    seg = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert seg.GetSegmentation().AddEmptySegment("x") == "x"


# ------------------------------------------------------------------ markups and tables


def test_points_round_trip(mrml_scene):
    rng = np.random.default_rng(5)
    points = rng.normal(size=(7, 3)) * 50 + 0.123456789
    labels = [f"CMB {i}" for i in range(7)]
    descriptions = [f"p={p:.2f}" for p in rng.random(7)]
    selected = [bool(b) for b in rng.integers(0, 2, 7)]
    node = mb.points_to_markups(mrml_scene, points, labels, descriptions, selected, "cmb")
    got, got_labels, got_descriptions, got_selected = mb.markups_to_points(node)
    assert np.array_equal(got, points)
    assert (got_labels, got_descriptions, got_selected) == (labels, descriptions, selected)
    # re-filling the same node replaces its points
    mb.points_to_markups(mrml_scene, points[:2], node=node)
    assert node.GetNumberOfControlPoints() == 2


def test_table_round_trip(mrml_scene):
    rows = [
        {"case": "sub-01", "volume_ml": 12.75, "count": 3, "accepted": True},
        {"case": "sub-02", "volume_ml": 0.0, "count": 0, "accepted": False},
        {"case": "sub-03", "volume_ml": None, "count": 12, "accepted": True},
    ]
    node = mb.rows_to_table(mrml_scene, rows, "measurements")
    back = mb.table_to_rows(node)
    assert [type(v) for v in back[0].values()] == [str, float, int, bool]
    assert np.isnan(back[2]["volume_ml"])
    back[2]["volume_ml"] = None
    assert back == rows
    mb.rows_to_table(mrml_scene, rows[:1], table_node=node)
    assert mb.table_to_rows(node) == rows[:1]


# ------------------------------------------------------------------ files


def test_segmentation_writes_readable_seg_nrrd(mrml_scene, tmp_path):
    nrrd = pytest.importorskip("nrrd")
    lab = ich_label_map(np.random.default_rng(6))
    volume = Volume(lab, oblique_lps_affine())
    seg = mb.labelmap_to_segmentation(mrml_scene, volume, labels_for("ich"), "ich")
    path = mb.write_node(seg, tmp_path / "ich.seg.nrrd")
    data, header = nrrd.read(str(path))            # index order [i, j, k]
    assert header["space"] == "left-posterior-superior"
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.asarray(header["space directions"], float).T
    affine_lps[:3, 3] = header["space origin"]
    offset = [int(v) for v in header["Segmentation_ReferenceImageExtentOffset"].split()]
    affine_lps[:3, 3] += affine_lps[:3, :3] @ offset
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    np.testing.assert_allclose(ras, volume.affine, atol=1e-9)
    assert data.shape == SHAPE                     # all six labels share one layer
    assert np.array_equal(data, lab)
    names = {v for k, v in header.items() if k.endswith("_Name") and k.startswith("Segment")}
    assert "Subdural haemorrhage" in names
    assert "SCT^35486000^" in "".join(v for k, v in header.items() if k.endswith("_Tags"))


def test_markups_write_readable_mrk_json(mrml_scene, tmp_path):
    points = np.array([[1.5, -2.25, 3.125], [-40.0, 12.5, 60.75]])
    node = mb.points_to_markups(mrml_scene, points, ["a", "b"], ["x", "y"], [True, False])
    path = mb.write_node(node, tmp_path / "cmb.mrk.json")
    doc = json.loads(path.read_text())
    markup = doc["markups"][0]
    flip = np.array([-1.0, -1.0, 1.0]) if markup.get("coordinateSystem") == "LPS" else 1.0
    got = np.array([cp["position"] for cp in markup["controlPoints"]]) * flip
    np.testing.assert_allclose(got, points, atol=1e-9)
    assert [cp["selected"] for cp in markup["controlPoints"]] == [True, False]


# ------------------------------------------------------------------ catalogue


def test_label_catalogue_is_consistent():
    for task, labels in LABELS_BY_TASK.items():
        values = [label.value for label in labels]
        assert len(set(values)) == len(values), task
        for label in labels:
            assert label.type.scheme == "SCT" and label.type.value.isdigit()
            assert label.category.value == "49755003"
    assert {lab.type.value for lab in labels_for("ich")} >= {
        "274100004", "21454007", "35486000", "68752002"}


def test_labels_module_imports_no_slicer_or_vtk():
    code = ("import sys, lesion_core.labels; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('slicer', 'vtk', 'vtkmodules', 'qt', 'ctk')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

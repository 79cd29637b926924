"""DICOM SEG and SR from the task Logics' nodes (``export_dicom``), under slicer-core.

Each task's input is a DICOM series written here (``lesion_core.io.dicom_write``), read
back (``read_volume``) into a volume node carrying the ``DICOM.instanceUIDs`` attribute
Slicer's DICOM module sets (in reversed order: the export puts the files in slice order
itself); its source files are found through a lookup standing in for Slicer's DICOM
database. The result nodes come from the hand-made outputs the logic tests use
(``wmh_outputs``, ``cmb_outputs``, ``ich_outputs``), written on that grid. Checked: the
SEG and SR pass dciodvfy, highdicom reads the SEG back to the segmentation's voxels, the
SR's volumes are the result's summary's, an edit of the segmentation node (as the Segment
Editor makes it) is what the SEG holds, the reader's decisions in the store reach the SR,
and the refusals are one clear error each.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pydicom
import pytest

slicer = pytest.importorskip("slicer")

import cmb_outputs as co  # noqa: E402
import ich_outputs as io_  # noqa: E402
import wmh_outputs as wo  # noqa: E402
from dciodvfy_check import assert_valid  # noqa: E402

from lesion_core.atlas.arwmc import REGIONS  # noqa: E402
from lesion_core.dicom_export.export import read_source_datasets  # noqa: E402
from lesion_core.dicom_export.seg import read_seg_labels  # noqa: E402
from lesion_core.dicom_export.sr import sr_measurements  # noqa: E402
from lesion_core.errors import (InvalidImageError, LesionSuiteError,  # noqa: E402
                                UnreadableFileError)
from lesion_core.io import read_volume  # noqa: E402
from lesion_core.io.dicom_write import (SeriesIdentity, deterministic_uid,  # noqa: E402
                                        write_dicom_series)
from lesion_core.labels import ICH_SUBTYPES  # noqa: E402
from lesion_core.volume import Volume  # noqa: E402
from CMBDetectorLib.logic import CMBDetectorLogic, microbleed_ids  # noqa: E402
from ICHWeakSegLib.logic import ICHWeakSegLogic  # noqa: E402
from LesionSuiteLib import dicom_results  # noqa: E402
from LesionSuiteLib import mrml_bridge as mb  # noqa: E402
from LesionSuiteLib.segmentations import oriented_image  # noqa: E402
from WMHDualTaskerLib.logic import WMHDualTaskerLogic  # noqa: E402

#: The dciodvfy warnings we cannot remove (docs/dicom.md): our private coding scheme.
KNOWN_WARNINGS = ("Unrecognized defined term <99LSUITE>",)


class DicomInput:
    """A series on disk and its volume node, as Slicer's DICOM module loads it."""

    def __init__(self, scene, folder, image: Volume, modality: str, sequence, name: str):
        identity = SeriesIdentity(name, "Test^Case", deterministic_uid("st", name),
                                  deterministic_uid("se", name), deterministic_uid("for", name),
                                  series_number=3)
        write_dicom_series(image, folder, modality, identity, sequence)
        self.volume = read_volume(folder)
        self.files = list(self.volume.meta["dicom_files"])
        self.datasets = read_source_datasets(self.files)  # slice order
        self.node = mb.volume_to_node(scene, self.volume, name)
        uids = [str(ds.SOPInstanceUID) for ds in self.datasets]
        self.node.SetAttribute(dicom_results.INSTANCE_UIDS_ATTRIBUTE, " ".join(uids[::-1]))
        self.lookup = dict(zip(uids, self.files)).get


def _valid(paths) -> None:
    for path in paths.values():
        warnings = assert_valid(path)
        assert all(any(k in w for k in KNOWN_WARNINGS) for w in warnings), warnings


def _seg_labels(paths, source: DicomInput) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.segread(paths["dicom_seg"])
    assert seg.SegmentationType == "BINARY"
    return read_seg_labels(seg, source.datasets)


def _segment_names(paths) -> list[str]:
    return [s.SegmentLabel for s in pydicom.dcmread(paths["dicom_seg"]).SegmentSequence]


def _paint(segmentation_node, segment_name: str, mask: np.ndarray, grid: Volume) -> None:
    """Replace a segment's voxels with ``mask`` the way the Segment Editor's effects do
    (``SetBinaryLabelmapToSegment``); a segment of that name is added when missing."""
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        segment_id = segmentation.AddEmptySegment("", segment_name)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.SetBinaryLabelmapToSegment(
        oriented_image(grid.with_array(mask.astype(np.uint8))), segmentation_node,
        segment_id, logic.MODE_REPLACE)


def _walk(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _walk(item)


# ------------------------------------------------------------------------------ WMH


@pytest.fixture
def wmh(mrml_scene, tmp_path):
    source = DicomInput(mrml_scene, tmp_path / "flair", wo.flair_volume(seed=1), "MR",
                        "FLAIR", "FLAIR")
    summary = wo.write_outputs(tmp_path / "run", source.volume)
    logic = WMHDualTaskerLogic()
    return source, logic, logic.load_results(source.node, tmp_path / "run"), summary


def test_wmh_export_from_the_nodes(wmh, tmp_path):
    source, logic, result, summary = wmh
    assert logic.has_dicom_source(source.node)
    paths = logic.export_dicom(result, tmp_path / "out", lookup=source.lookup)
    assert paths == {"dicom_seg": tmp_path / "out" / "FLAIR_wmh_seg.dcm",
                     "dicom_sr": tmp_path / "out" / "FLAIR_wmh_sr.dcm"}
    _valid(paths)
    np.testing.assert_array_equal(_seg_labels(paths, source), wo.mask())
    assert _segment_names(paths) == ["White matter hyperintensity"]
    volumes = sr_measurements(paths["dicom_sr"])
    assert volumes["WMH"] == [pytest.approx(summary["lesion_ml"], rel=1e-9)]
    for name in REGIONS:
        region, side = name.rsplit("_", 1)
        assert volumes[f"WMH {region.replace('_', '-')} {side}"] == [
            pytest.approx(summary["region_ml"][name], rel=1e-9, abs=1e-12)]
    assert sr_measurements(paths["dicom_sr"], "ARWMC-TOTAL") == {
        "WMH": [float(summary["arwmc_total"])]}
    sr = pydicom.dcmread(paths["dicom_sr"])
    assert not [i for i in _walk(sr) if i.get("ValueType") == "PNAME"]  # no store: no reader


def test_wmh_export_holds_the_readers_edit_and_ratings(wmh, tmp_path, mrml_scene):
    from LesionSuiteLib.review_cases import open_volume_case
    from lesion_core.wmh.reader_ratings import record_rating

    source, logic, result, summary = wmh
    edited = wo.mask().copy()
    edited[5, 6, 7] = 1                    # a voxel painted far from the lesions
    edited[tuple(wo.BALLS[0].voxel)] = 0   # one erased in a lesion
    _paint(result.segmentation, "White matter hyperintensity", edited, source.volume)
    store = tmp_path / "store"
    record_rating(open_volume_case(store, source.node).case, "frontal_left", 3,
                  reader="dr_w")
    # The files given (any order), no lookup needed.
    paths = logic.export_dicom(result, tmp_path / "out", source_files=source.files[::-1],
                               feedback_root=store, stem="edited")
    assert paths["dicom_seg"].name == "edited_seg.dcm"
    _valid(paths)
    np.testing.assert_array_equal(_seg_labels(paths, source), edited)
    # The SR's figures stay the model's summary's; the reader's rating is beside them.
    assert sr_measurements(paths["dicom_sr"])["WMH"] == [
        pytest.approx(summary["lesion_ml"], rel=1e-9)]
    ratings = sr_measurements(paths["dicom_sr"], "ARWMC-RATING")["WMH frontal left"]
    assert ratings == [float(summary["levels"]["frontal_left"]), 3.0]
    people = [i for i in _walk(pydicom.dcmread(paths["dicom_sr"]))
              if i.get("ValueType") == "PNAME"]
    assert [p.PersonName.family_name for p in people] == ["dr_w"]


def test_a_segment_the_export_does_not_know_is_refused_by_name(wmh, tmp_path):
    source, logic, result, _ = wmh
    other = np.zeros(wo.SHAPE, bool)
    _paint(result.segmentation, "Segment_2", other, source.volume)  # empty: ignored
    logic.export_dicom(result, tmp_path / "ok", lookup=source.lookup)
    other[3:5, 3:5, 3:5] = True
    _paint(result.segmentation, "Segment_2", other, source.volume)
    with pytest.raises(InvalidImageError, match="'Segment_2' of 'FLAIR WMH' are not WMH "
                                                "segments.*'White matter hyperintensity'"):
        logic.export_dicom(result, tmp_path / "refused", lookup=source.lookup)
    assert not (tmp_path / "refused").exists()


# ------------------------------------------------------------------------------ CMB


def test_cmb_export_one_segment_per_microbleed_with_edits_and_decisions(mrml_scene,
                                                                          tmp_path):
    from lesion_core.cmb.reader_decisions import record_decision
    from LesionSuiteLib.review_cases import open_volume_case

    source = DicomInput(mrml_scene, tmp_path / "swi", co.swi_volume(seed=2), "MR", "SWI",
                        "SWI")
    data = co.write_outputs(tmp_path / "run", source.volume)
    logic = CMBDetectorLogic()
    result = logic.load_results(source.node, tmp_path / "run")
    kept = [c for c in data["candidates"] if c["kept"]]
    assert [c["id"] for c in kept] == [1, 2, 5]

    paths = logic.export_dicom(result, tmp_path / "out", lookup=source.lookup)
    _valid(paths)
    assert _segment_names(paths) == [f"Cerebral microbleed {c['id']}" for c in kept]
    back = _seg_labels(paths, source)
    every = np.zeros(co.SHAPE, np.int32)
    for spec, candidate in zip(co.SPECS, data["candidates"]):
        if candidate["kept"]:
            every[co._ball(spec)] = candidate["id"]
    for number, candidate in enumerate(kept, start=1):
        np.testing.assert_array_equal(back == number, every == candidate["id"])
    assert sr_measurements(paths["dicom_sr"]) == {
        f"CMB {c['id']}": [c["volume_mm3"]] for c in kept}
    assert sr_measurements(paths["dicom_sr"], "246206008")["CMB count"][0] == data["count"]

    # The reader erases microbleed 2, draws one the detector missed, rejects microbleed 1.
    painted = every > 0
    painted[every == 2] = False
    painted[40:43, 5:8, 5:7] = True
    _paint(result.segmentation, "Cerebral microbleed", painted, source.volume)
    store = tmp_path / "store"
    record_decision(open_volume_case(store, source.node).case, "reject",
                    kept[0]["centre_ras"], kept[0], reader="dr_c")
    paths = logic.export_dicom(result, tmp_path / "edited", lookup=source.lookup,
                               feedback_root=store)
    _valid(paths)
    assert _segment_names(paths) == ["Cerebral microbleed 1", "Cerebral microbleed 2",
                                     "Cerebral microbleed 5", "Cerebral microbleed 6"]
    back = _seg_labels(paths, source)
    np.testing.assert_array_equal(back == 1, every == 1)
    assert not (back == 2).any()                        # erased: an empty segment
    np.testing.assert_array_equal(back == 4, np.pad(np.ones((3, 3, 2), bool), (
        (40, co.SHAPE[0] - 43), (5, co.SHAPE[1] - 8), (5, co.SHAPE[2] - 7))))
    decisions = [i for i in _walk(pydicom.dcmread(paths["dicom_sr"]))
                 if i.get("ValueType") == "CODE"
                 and i.ConceptNameCodeSequence[0].CodeValue == "READER-DECISION"]
    assert [d.ConceptCodeSequence[0].CodeValue for d in decisions] == ["DEC-REJ"]


def test_microbleed_ids_follow_the_candidates_and_number_the_readers_own():
    grid = Volume(np.zeros((12, 10, 8), np.uint8), np.diag([0.5, 0.5, 2.0, 1.0]))
    candidates = [{"id": 3, "kept": True, "centre_ras": grid.voxel_to_ras((2, 2, 2)).tolist()},
                  {"id": 4, "kept": True, "centre_ras": grid.voxel_to_ras((8, 2, 2)).tolist()},
                  {"id": 9, "kept": False, "centre_ras": grid.voxel_to_ras((2, 7, 6)).tolist()}]
    labels = np.zeros(grid.shape, np.int32)
    labels[1:4, 1:4, 2] = 3
    labels[7:10, 1:4, 2] = 4
    labels[2, 7, 6] = 9
    painted = labels > 0
    painted[4:7, 2, 2] = True     # a bridge joining 3 and 4: split at the nearer one
    painted[2, 7, 6] = True       # a dropped candidate the reader painted: a new id
    painted[10, 8, 0] = True      # drawn by the reader
    for candidate_labels in (grid.with_array(labels), None):  # None: by the centres
        ids = microbleed_ids(painted, candidates, candidate_labels, grid)
        assert ids[4, 2, 2] == 3 and ids[6, 2, 2] == 4 and ids[2, 2, 2] == 3
        assert set(np.unique(ids[painted])) == {3, 4, 10, 11}
        assert ids[2, 7, 6] != ids[10, 8, 0] and not ids[~painted].any()


# ------------------------------------------------------------------------------ ICH


@pytest.fixture
def ich(mrml_scene, tmp_path):
    source = DicomInput(mrml_scene, tmp_path / "ct", io_.ct_volume(seed=3), "CT", None, "CT")
    summary = io_.write_outputs(tmp_path / "run", source.volume)
    logic = ICHWeakSegLogic()
    result = logic.load_results(source.node, tmp_path / "run",
                                feedback_root=tmp_path / "no-store")
    return source, logic, result, summary


def test_ich_export_one_segment_per_subtype_with_an_added_one(ich, tmp_path):
    source, logic, result, summary = ich
    paths = logic.export_dicom(result, tmp_path / "out", lookup=source.lookup)
    _valid(paths)
    assert _segment_names(paths) == ["Intraparenchymal haemorrhage", "Subdural haemorrhage"]
    back, labels = _seg_labels(paths, source), io_.label_map()
    np.testing.assert_array_equal(back == 1, labels == 1)
    np.testing.assert_array_equal(back == 2, labels == 4)
    volumes = sr_measurements(paths["dicom_sr"])
    assert volumes["ICH scan"] == [summary["volume_ml"]]
    for key, ml in summary["volume_ml_by_subtype"].items():
        assert volumes[f"ICH {key}"] == [ml]

    # The reader draws an epidural haemorrhage in a segment named after it.
    epidural = np.zeros(io_.SHAPE, bool)
    epidural[30:34, 8:12, 9] = True
    _paint(result.segmentation, ICH_SUBTYPES[4].name, epidural, source.volume)
    paths = logic.export_dicom(result, tmp_path / "edited", lookup=source.lookup)
    _valid(paths)
    assert _segment_names(paths)[-1] == "Epidural haemorrhage"
    np.testing.assert_array_equal(_seg_labels(paths, source) == 3, epidural)


def test_the_source_files_and_their_refusals(ich, tmp_path, monkeypatch, mrml_scene):
    source, logic, result, _ = ich
    assert logic.dicom_source_files(source.node, source.lookup) == [
        Path(f) for f in source.files[::-1]]

    # The default lookup is Slicer's DICOM database, asked only when no lookup is given.
    monkeypatch.delattr(slicer, "dicomDatabase", raising=False)
    with pytest.raises(InvalidImageError, match="DICOM database is not open"):
        logic.export_dicom(result, tmp_path / "a")
    monkeypatch.setattr(slicer, "dicomDatabase",
                        types.SimpleNamespace(fileForInstance=source.lookup), raising=False)
    assert set(logic.export_dicom(result, tmp_path / "db")) == {"dicom_seg", "dicom_sr"}

    with pytest.raises(UnreadableFileError, match="12 of the 12 source images of volume 'CT' "
                                                  "are not in the DICOM database"):
        logic.dicom_source_files(source.node, lambda uid: "")
    node = mb.volume_to_node(mrml_scene, source.volume, "NIfTI CT")
    assert not logic.has_dicom_source(node)
    with pytest.raises(InvalidImageError, match="'NIfTI CT' was not loaded from DICOM"):
        logic.dicom_source_files(node, source.lookup)
    with pytest.raises(InvalidImageError, match="12 slices but its DICOM source 11 images"):
        logic.export_dicom(result, tmp_path / "b", source_files=source.files[:11])

    moved = source.volume.with_array(source.volume.array)
    moved.affine[:3, 3] += 2.0
    other = DicomInput(mrml_scene, tmp_path / "moved", moved, "CT", None, "CT moved")
    with pytest.raises(InvalidImageError, match="cannot be written on its DICOM source"):
        logic.export_dicom(result, tmp_path / "c", source_files=other.files)

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(LesionSuiteError, match="cannot write the DICOM SEG and SR"):
        logic.export_dicom(result, tmp_path / "file", lookup=source.lookup)
    assert not any((tmp_path / p).exists() for p in ("a", "b", "c"))

"""DICOM SEG and SR export (lesion_core.dicom_export) on hand-made results, no model.

Each task's result (a label map on a DICOM source grid and its JSON summary) is exported;
every SEG and SR passes dciodvfy, highdicom reads the SEG back to the segment map (the
label map's voxels), the SR's volumes are the summary's, and empty results are valid
objects with an empty segment.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from dciodvfy_check import assert_valid
from geometry import oblique_lps_affine
from lesion_core.atlas.arwmc import REGIONS
from lesion_core.dicom_export import codes
from lesion_core.dicom_export.export import (DicomResult, export_result, read_source_datasets,
                                             source_files)
from lesion_core.dicom_export.seg import read_seg_labels
from lesion_core.dicom_export.segments import segment_plan
from lesion_core.dicom_export.sr import sr_measurements
from lesion_core.errors import CommandError
from lesion_core.io import read_volume
from lesion_core.io.dicom_write import SeriesIdentity, deterministic_uid, write_dicom_series
from lesion_core.labels import ICH_SUBTYPE_ORDER
from lesion_core.volume import Volume

SHAPE = (24, 20, 10)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: The dciodvfy warnings we cannot remove (docs/dicom.md): our private coding scheme.
KNOWN_WARNINGS = ("Unrecognized defined term <99LSUITE>",)


def _source(tmp_path, modality: str) -> tuple[Volume, list]:
    """A small oblique series written as DICOM and read back: (volume, datasets)."""
    rng = np.random.default_rng(0)
    values = (rng.normal(40, 10, SHAPE) if modality == "CT" else rng.uniform(0, 900, SHAPE))
    affine = LPS_TO_RAS @ oblique_lps_affine((0.9, 1.1, 3.0))
    identity = SeriesIdentity("case1", "Test^Case", deterministic_uid("st"),
                              deterministic_uid("se", modality), deterministic_uid("for"),
                              series_number=4)
    folder = tmp_path / f"src_{modality}"
    write_dicom_series(Volume(values.astype(np.float32), affine), folder, modality, identity,
                       None if modality == "CT" else "FLAIR")
    volume = read_volume(folder)
    return volume, read_source_datasets(source_files(volume))


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def _saved(result: DicomResult, folder, stem: str):
    folder.mkdir(parents=True, exist_ok=True)
    paths = result.write(folder, stem)
    for path in paths.values():
        warnings = assert_valid(path)
        assert all(any(known in w for known in KNOWN_WARNINGS) for w in warnings), warnings
    return paths


def _read_back(paths, datasets) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.segread(paths["dicom_seg"])
    assert seg.SegmentationType == "BINARY"
    return read_seg_labels(seg, datasets)


def _check_sr_references(paths, plan) -> None:
    """Every Referenced Segment of the SR names the SEG and one of its segments, and the
    evidence lists the SEG (highdicom reads it as a Comprehensive 3D SR)."""
    import highdicom as hd

    seg = pydicom.dcmread(paths["dicom_seg"])
    sr = hd.sr.srread(paths["dicom_sr"])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    evidence = {str(item.ReferencedSOPInstanceUID) for study in
                sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence
    numbers = set()
    for item in _walk(pydicom.dcmread(paths["dicom_sr"])):
        for ref in item.get("ReferencedSOPSequence", []):
            if "ReferencedSegmentNumber" in ref:
                assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
                numbers |= {int(n) for n in np.atleast_1d(ref.ReferencedSegmentNumber)}
    assert numbers <= {s.number for s in plan.segments}
    assert numbers  # at least one measurement is made on a segment


def _walk(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _walk(item)


# ------------------------------------------------------------------------------ WMH
def _wmh_summary(labels: np.ndarray, voxel_ml: float) -> dict:
    region_ml = {name: 0.0 for name in REGIONS}
    region_ml["frontal_left"] = float(labels.sum()) * voxel_ml
    zones = {f"{k}_{lobe}_{side}": 0.0 for k in ("periventricular", "deep", "juxtacortical")
             for lobe in ("frontal", "posterior") for side in ("left", "right")}
    zones["deep_frontal_left"] = region_ml["frontal_left"]
    levels = {name: 0 for name in REGIONS}
    levels["frontal_left"] = 2
    return {"model": "wmh_toy", "model_version": "1.0", "modality": "FLAIR",
            "arwmc_total": 2, "ratings": {k: float(v) for k, v in levels.items()},
            "levels": levels, "lesion_ml": region_ml["frontal_left"], "brain_ml": 1200.0,
            "region_ml": region_ml, "zone_ml": zones}


@pytest.mark.parametrize("empty", [False, True], ids=["lesion", "empty"])
def test_wmh_seg_and_sr(tmp_path, empty):
    image, datasets = _source(tmp_path, "MR")
    mask = np.zeros(SHAPE, np.uint8) if empty else _ball(SHAPE, (8, 9, 4), 3).astype(np.uint8)
    labels = image.with_array(mask)
    summary = _wmh_summary(mask, image.voxel_volume_ml)
    result = export_result("wmh", labels, summary, datasets)
    paths = _saved(result, tmp_path, "wmh")
    assert np.array_equal(_read_back(paths, datasets), mask)
    segment = pydicom.dcmread(paths["dicom_seg"]).SegmentSequence[0]
    assert segment.SegmentLabel == "White matter hyperintensity"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "22811006"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == \
        "Morphologically Abnormal Structure"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "LesionSuite WMH" and "wmh_toy" in str(
        algorithm.AlgorithmParameters)
    volumes = sr_measurements(paths["dicom_sr"])
    assert volumes["WMH"] == [pytest.approx(summary["lesion_ml"], rel=1e-9, abs=1e-12)]
    for name in REGIONS:
        region, side = name.rsplit("_", 1)
        assert volumes[f"WMH {region.replace('_', '-')} {side}"] == [
            pytest.approx(summary["region_ml"][name], rel=1e-9, abs=1e-12)]
    assert volumes["WMH deep frontal left"] == [pytest.approx(summary["zone_ml"][
        "deep_frontal_left"], rel=1e-9, abs=1e-12)]
    ratings = sr_measurements(paths["dicom_sr"], "ARWMC-RATING")
    assert ratings["WMH frontal left"] == [2.0] and ratings["WMH temporal right"] == [0.0]
    assert sr_measurements(paths["dicom_sr"], "ARWMC-TOTAL") == {"WMH": [2.0]}
    _check_sr_references(paths, result.plan)


# ------------------------------------------------------------------------------ CMB
def _cmb_result(image: Volume) -> tuple[np.ndarray, dict]:
    labels = np.zeros(SHAPE, np.int32)
    candidates = []
    for ident, voxel, kept, location, region in ((3, (5, 5, 2), True, "lobar", "frontal"),
                                                 (7, (15, 12, 6), True, "deep", "thalamus"),
                                                 (9, (18, 4, 8), False, "lobar", "parietal")):
        if kept:
            labels[_ball(SHAPE, voxel, 1.2)] = ident
        candidates.append({"id": ident, "centre_ras": image.voxel_to_ras(voxel).tolist(),
                           "volume_mm3": 20.0 + ident, "diameter_mm": 3.5, "kept": kept,
                           "dropped_by": None if kept else "stage2", "location": location,
                           "region": region})
    return labels, {"model": {"name": "cmb_toy", "version": "2.0"}, "count": 2,
                    "candidates": candidates}


def test_cmb_one_segment_per_microbleed_with_its_centre(tmp_path):
    image, datasets = _source(tmp_path, "MR")
    labels, summary = _cmb_result(image)
    result = export_result("cmb", image.with_array(labels), summary, datasets)
    paths = _saved(result, tmp_path, "cmb")
    back = _read_back(paths, datasets)
    assert [s.name for s in result.plan.segments] == ["Cerebral microbleed 3",
                                                      "Cerebral microbleed 7"]
    assert np.array_equal(back == 1, labels == 3) and np.array_equal(back == 2, labels == 7)
    volumes = sr_measurements(paths["dicom_sr"])
    assert volumes == {"CMB 3": [23.0], "CMB 7": [27.0]}  # mm3, the kept ones only
    counts = sr_measurements(paths["dicom_sr"], "246206008")
    assert counts["CMB count"] == [2.0, 1.0, 1.0, 0.0]  # all, lobar, deep, infratentorial
    # The centre of CMB 7: a POINT on its slice (pixel column 15, row 12, centre at +0.5).
    sr = pydicom.dcmread(paths["dicom_sr"])
    points = [item for item in _walk(sr) if item.get("ValueType") == "SCOORD"]
    assert len(points) == 2 and all(p.GraphicType == "POINT" for p in points)
    assert [float(v) for v in points[1].GraphicData] == pytest.approx([15.5, 12.5])
    slice_uid = points[1].ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert slice_uid == datasets[6].SOPInstanceUID
    _check_sr_references(paths, result.plan)


def test_cmb_without_microbleeds_is_one_empty_segment(tmp_path):
    image, datasets = _source(tmp_path, "MR")
    summary = {"model": {"name": "cmb_toy", "version": "2.0"}, "count": 0, "candidates": []}
    result = export_result("cmb", image.with_array(np.zeros(SHAPE, np.int32)), summary,
                           datasets)
    paths = _saved(result, tmp_path, "cmb")
    seg = pydicom.dcmread(paths["dicom_seg"])
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Cerebral microbleed"]
    assert int(seg.NumberOfFrames) == SHAPE[2]  # every source frame, all empty
    assert not _read_back(paths, datasets).any()
    assert sr_measurements(paths["dicom_sr"], "246206008")["CMB count"][0] == 0.0


# ------------------------------------------------------------------------------ ICH
def _ich_result(image: Volume) -> tuple[np.ndarray, dict]:
    labels = np.zeros(SHAPE, np.uint8)
    labels[_ball(SHAPE, (5, 5, 3), 2)] = 3            # subarachnoid
    labels[_ball(SHAPE, (17, 14, 4), 2)] = 4          # subdural
    labels[_ball(SHAPE, (6, 15, 7), 1.5)] = 1         # a component of unknown subtype
    ids, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))
    voxel_ml = image.voxel_volume_ml
    components = []
    for index in range(1, n + 1):
        value = int(labels[ids == index][0])
        components.append({"value": value, "subtype": "unknown" if value == 1 else
                           ICH_SUBTYPE_ORDER[value - 1],
                           "volume_ml": round(float((ids == index).sum()) * voxel_ml, 3),
                           "first_slice": 0, "last_slice": 0})
    by_subtype = {key: 0.0 for key in ICH_SUBTYPE_ORDER}
    for c in components:
        by_subtype[c["subtype"]] = round(by_subtype.get(c["subtype"], 0.0) + c["volume_ml"], 3)
    return labels, {"model": {"name": "ich_toy", "version": "1.0"}, "slice_axis": 2,
                    "scan_probability": 0.93, "present": True,
                    "subtypes": ["subarachnoid", "subdural"],
                    "volume_ml": round(float((labels > 0).sum()) * voxel_ml, 3),
                    "volume_ml_by_subtype": by_subtype, "components": components}


def test_ich_one_segment_per_subtype_and_unknown(tmp_path):
    image, datasets = _source(tmp_path, "CT")
    labels, summary = _ich_result(image)
    result = export_result("ich", image.with_array(labels), summary, datasets)
    paths = _saved(result, tmp_path, "ich")
    seg = pydicom.dcmread(paths["dicom_seg"])
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [
        "Subarachnoid haemorrhage", "Subdural haemorrhage",
        "Intracranial haemorrhage, subtype unknown"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence] == \
        ["21454007", "35486000", "1386000"]
    back = _read_back(paths, datasets)
    assert np.array_equal(back == 1, labels == 3) and np.array_equal(back == 2, labels == 4)
    assert np.array_equal(back == 3, labels == 1)
    volumes = sr_measurements(paths["dicom_sr"])
    for key, ml in summary["volume_ml_by_subtype"].items():
        assert volumes[f"ICH {'unknown subtype' if key == 'unknown' else key}"] == [ml]
    assert volumes["ICH scan"] == [summary["volume_ml"]]
    assert sr_measurements(paths["dicom_sr"], "122157") == {"ICH scan": [0.93]}
    _check_sr_references(paths, result.plan)


def test_ich_empty_result_and_edited_label_map(tmp_path):
    image, datasets = _source(tmp_path, "CT")
    summary = {"model": {"name": "ich_toy", "version": "1.0"}, "scan_probability": 0.1,
               "present": False, "subtypes": [], "volume_ml": 0.0,
               "volume_ml_by_subtype": {k: 0.0 for k in ICH_SUBTYPE_ORDER}, "components": []}
    result = export_result("ich", image.with_array(np.zeros(SHAPE, np.uint8)), summary,
                           datasets)
    paths = _saved(result, tmp_path, "ich")
    assert [s.SegmentLabel for s in pydicom.dcmread(paths["dicom_seg"]).SegmentSequence] == \
        ["Intracranial haemorrhage"]
    assert set(sr_measurements(paths["dicom_sr"])) == {"ICH scan"} | {
        f"ICH {k}" for k in ICH_SUBTYPE_ORDER}
    # A label map whose components no longer match the summary (a reader edited it):
    # segments follow the label values, nothing is split off as "unknown".
    labels, summary = _ich_result(image)
    labels[0:3, 0:3, 0] = 5
    plan = segment_plan("ich", image.with_array(labels), summary)
    assert [s.key for s in plan.segments] == ["intraparenchymal", "subarachnoid", "subdural",
                                              "epidural"]


# ---------------------------------------------------------------------- refusals
def test_label_map_off_the_source_grid_is_refused(tmp_path):
    image, datasets = _source(tmp_path, "CT")
    labels, summary = _ich_result(image)
    moved = Volume(labels, image.affine.copy(), image.source)
    moved.affine[0, 3] += 0.5
    with pytest.raises(ValueError, match="not on the source series' grid"):
        export_result("ich", moved, summary, datasets)
    with pytest.raises(ValueError, match="shape"):
        export_result("ich", image.with_array(labels).crop((0, 0, 0), (24, 20, 9)), summary,
                      datasets)


def test_non_dicom_sources_are_refused_clearly(tmp_path):
    volume = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4), "x.nii.gz",
                    {"source_format": "nifti"})
    with pytest.raises(CommandError, match="--dicom needs an image read from a DICOM series"):
        source_files(volume)
    multi = Volume(volume.array, np.eye(4), "f.dcm", {"source_format": "dicom",
                                                       "dicom_files": ["f.dcm"] * 4})
    with pytest.raises(CommandError, match="multi-frame"):
        source_files(multi)


def test_private_codes_fit_their_value_representations():
    for code in codes.all_private_codes():
        assert code.scheme_designator == codes.SCHEME
        assert len(code.value) <= 16 and len(code.meaning) <= 64, code
    assert len({c.value for c in codes.all_private_codes()}) == len(codes.all_private_codes())


# ------------------------------------------------------------------ reader review
def test_reader_decisions_go_into_the_sr(tmp_path):
    """Decisions written by the task modules' review helpers reach the SR: the reader as
    person observer, each CMB decision on its microbleed's group, the reader's ARWMC
    ratings beside the model's, the counts of ICH slice labels; who and when per group."""
    from lesion_core.cmb.reader_decisions import record_decision
    from lesion_core.dicom_export.review import review_from_store
    from lesion_core.feedback import FeedbackStore
    from lesion_core.ich.reader_labels import record_slice_label
    from lesion_core.wmh.reader_ratings import record_rating

    store = FeedbackStore(tmp_path / "store")
    image, datasets = _source(tmp_path, "MR")
    labels, summary = _cmb_result(image)
    case = store.case("case1")
    centre = np.asarray(summary["candidates"][1]["centre_ras"]) + 1.0  # CMB 7, moved 1.7 mm
    record_decision(case, "reject", centre.tolist(), summary["candidates"][1], reader="dr_a")
    record_decision(case, "add", image.voxel_to_ras((20, 18, 1)).tolist(), reader="dr_a")
    record_rating(case, "frontal_left", 3, reader="dr_b")
    record_slice_label(case, 4, True, ["subdural"], reader="dr_c")
    record_slice_label(case, 5, False, reader="dr_c")
    assert review_from_store(tmp_path / "store", "case2", "cmb") is None

    review = review_from_store(tmp_path / "store", "case1", "cmb")
    result = export_result("cmb", image.with_array(labels), summary, datasets, review=review)
    paths = _saved(result, tmp_path / "cmb", "cmb")
    sr = pydicom.dcmread(paths["dicom_sr"])
    people = [i for i in _walk(sr) if i.get("ValueType") == "PNAME"]
    assert [p.PersonName.family_name for p in people] == ["dr_a"]
    groups = {}  # tracking identifier -> its first group (a CMB's volumetric one)
    for group in _walk(sr):
        if group.get("ValueType") == "CONTAINER" and _tracking(group):
            groups.setdefault(_tracking(group), group)
    rejected = [i for i in groups["CMB 7"].ContentSequence if i.get("ValueType") == "CODE"
                and i.ConceptNameCodeSequence[0].CodeValue == "READER-DECISION"]
    assert rejected[0].ConceptCodeSequence[0].CodeValue == "DEC-REJ"
    assert not any(i.ConceptNameCodeSequence[0].CodeValue == "READER-DECISION"
                   for i in groups["CMB 3"].ContentSequence)
    assert sr_measurements(paths["dicom_sr"], "246206008")["CMB count"][-3:] == [0.0, 1.0, 1.0]
    assert any("dr_a" in str(i.get("TextValue", "")) for i in groups["CMB 7"].ContentSequence)

    (tmp_path / "w").mkdir()
    wmh_image, wmh_sources = _source(tmp_path / "w", "MR")
    mask = _ball(SHAPE, (8, 9, 4), 3).astype(np.uint8)
    result = export_result("wmh", wmh_image.with_array(mask),
                           _wmh_summary(mask, wmh_image.voxel_volume_ml), wmh_sources,
                           review=review_from_store(tmp_path / "store", "case1", "wmh"))
    paths = _saved(result, tmp_path / "wmh", "wmh")
    assert sr_measurements(paths["dicom_sr"], "ARWMC-RATING")["WMH frontal left"] == [2.0, 3.0]

    ct, ct_sources = _source(tmp_path, "CT")
    ich_labels, ich_summary = _ich_result(ct)
    result = export_result("ich", ct.with_array(ich_labels), ich_summary, ct_sources,
                           review=review_from_store(tmp_path / "store", "case1", "ich"))
    paths = _saved(result, tmp_path / "ich", "ich")
    assert sr_measurements(paths["dicom_sr"], "RDR-SLICES-POS") == {"ICH scan": [1.0]}
    assert sr_measurements(paths["dicom_sr"], "RDR-SLICES-NEG") == {"ICH scan": [1.0]}


def _tracking(group) -> str | None:
    return next((c.TextValue for c in group.get("ContentSequence", [])
                 if c.get("ValueType") == "TEXT"
                 and c.ConceptNameCodeSequence[0].CodeValue == "112039"), None)


def test_probability_map_as_a_fractional_seg(tmp_path):
    """The WMH activation (or the ICH CAM) as a fractional SEG: 8-bit probabilities."""
    import highdicom as hd

    from lesion_core.dicom_export.export import algorithm_info
    from lesion_core.dicom_export.seg import build_fractional_seg
    from lesion_core.dicom_export.specs import SegmentSpec
    from lesion_core.labels import WMH

    image, datasets = _source(tmp_path, "MR")
    probability = np.clip(np.random.default_rng(3).normal(0.3, 0.3, SHAPE), 0, 1)
    seg = build_fractional_seg(datasets, image.with_array(probability.astype(np.float32)),
                               SegmentSpec(1, WMH, "WMH activation"),
                               algorithm_info("wmh", {"model": "toy", "model_version": "1"}),
                               "ACTIVATION", "WMH activation")
    path = tmp_path / "activation_seg.dcm"
    seg.save_as(path)
    assert_valid(path)
    read = hd.seg.segread(path)
    assert read.SegmentationType == "FRACTIONAL"
    pixels = read.get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in datasets], combine_segments=False,
        rescale_fractional=True, assert_missing_frames_are_empty=True)
    back = np.transpose(np.asarray(pixels)[..., 0], (2, 1, 0))
    assert np.abs(back - probability).max() <= 0.5 / 255 + 1e-6

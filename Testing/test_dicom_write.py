"""The DICOM series writer (lesion_core.io.dicom_write) and ``lesion-suite synth --dicom``.

Written series read back with the project's reader to the same voxels (within the stored
integer precision) and the same affine: oblique, sheared (gantry tilt), left-handed
(slices reversed) grids; CT in HU with rescale intercept, MR with and without rescale;
and the synthetic subjects' DICOM sources, with their shared study and frame of reference.
"""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest

from dciodvfy_check import assert_valid
from geometry import oblique_lps_affine
from lesion_core.io import read_volume
from lesion_core.io.dicom_write import (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SeriesIdentity,
                                        deterministic_uid, write_dicom_series)
from lesion_core.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
IDENTITY = SeriesIdentity("p1", "Test^Patient", deterministic_uid("study"),
                          deterministic_uid("series"), deterministic_uid("frame"))


def _write_and_read(volume: Volume, tmp_path, modality="MR", sequence="FLAIR"):
    paths = write_dicom_series(volume, tmp_path / "series", modality, IDENTITY, sequence)
    return paths, read_volume(tmp_path / "series")


def test_ct_round_trip_in_hounsfield_units(tmp_path):
    rng = np.random.default_rng(1)
    hu = rng.normal(30.0, 400.0, (20, 18, 7)).clip(-1100, 2500).astype(np.float32)
    affine = LPS_TO_RAS @ oblique_lps_affine((0.45, 0.5, 5.0))
    paths, back = _write_and_read(Volume(hu, affine), tmp_path, "CT", None)
    assert back.array.dtype == np.int16  # slope 1, whole-number intercept
    assert np.abs(back.array - hu).max() <= 0.5
    assert np.allclose(back.affine, affine, atol=1e-4)
    ds = pydicom.dcmread(paths[0])
    assert (ds.SOPClassUID, ds.Modality, ds.RescaleType) == (CT_IMAGE_STORAGE, "CT", "HU")
    assert float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) <= -1100
    assert back.meta["frame_of_reference_uid"] == IDENTITY.frame_of_reference_uid
    assert_valid(paths[3])


def test_mr_float_values_use_a_rescale_and_whole_numbers_none(tmp_path):
    rng = np.random.default_rng(2)
    values = rng.uniform(0.05, 2.7, (16, 14, 6)).astype(np.float32)
    affine = LPS_TO_RAS @ oblique_lps_affine((1.0, 1.2, 2.0))
    paths, back = _write_and_read(Volume(values, affine), tmp_path)
    step = float(pydicom.dcmread(paths[0]).RescaleSlope)
    assert step == pytest.approx((values.max() - values.min()) / 65535, rel=1e-6)
    assert np.abs(back.array - values).max() <= step
    assert np.allclose(back.affine, affine, atol=1e-4)
    ds = pydicom.dcmread(paths[0])
    assert ds.SOPClassUID == MR_IMAGE_STORAGE and list(ds.ScanningSequence) == ["SE", "IR"]
    assert float(ds.InversionTime) == 2500.0
    whole = np.round(values * 100).astype(np.float32)
    paths, back = _write_and_read(Volume(whole, affine), tmp_path / "whole")
    assert "RescaleSlope" not in pydicom.dcmread(paths[0])
    assert np.array_equal(back.array, whole)


def test_tilted_and_left_handed_grids(tmp_path):
    values = np.arange(12 * 10 * 5, dtype=np.float32).reshape(12, 10, 5) % 700
    tilted = LPS_TO_RAS @ np.array([[0.5, 0, 0, -30], [0, 0.5, 0.6, 20], [0, 0, 3.0, 5],
                                    [0, 0, 0, 1]])  # each slice 0.6 mm further along j
    _, back = _write_and_read(Volume(values, tilted), tmp_path / "tilt")
    assert np.allclose(back.affine, tilted, atol=1e-4) and np.array_equal(back.array, values)
    assert back.meta["gantry_tilt_deg"] == pytest.approx(np.degrees(np.arctan2(0.6, 3.0)))
    las = np.diag([-1.0, 1.0, 1.0, 1.0]) @ np.diag([1.1, 1.1, 2.5, 1.0])
    _, back = _write_and_read(Volume(values, las), tmp_path / "las")
    # Stored along row x column: the same image with its slices in reverse order.
    assert np.array_equal(back.array, values[:, :, ::-1])
    assert np.allclose(back.voxel_to_ras([0, 0, 0]), Volume(values, las).voxel_to_ras([0, 0, 4]))


def test_grids_dicom_cannot_hold_are_refused(tmp_path):
    sheared = np.eye(4)
    sheared[0, 1] = 0.3  # i and j not perpendicular
    with pytest.raises(ValueError, match="not perpendicular"):
        write_dicom_series(Volume(np.zeros((4, 4, 4)), sheared), tmp_path, "MR", IDENTITY)
    with pytest.raises(ValueError, match="modality"):
        write_dicom_series(Volume(np.zeros((4, 4, 4)), np.eye(4)), tmp_path, "PT", IDENTITY)


def test_synth_dicom_sources_read_back_as_their_nifti(tmp_path):
    """``lesion-suite synth wmh --size small --dicom``: each image's DICOM series reads
    back to the NIfTI image, and the subject's series share patient, study and frame of
    reference; the UIDs depend only on the subject."""
    from lesion_core.cli import main

    for out in ("a", "b"):
        assert main(["synth", "wmh", "--n", "1", "--seed", "7", "--size", "small",
                     "--dicom", "--out", str(tmp_path / out)]) == 0
    with (tmp_path / "a" / "wmh_labels.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    uids = {}
    for name in ("flair", "t1"):
        nifti, dicom = read_volume(row[name]), read_volume(row[f"{name}_dicom"])
        assert dicom.array.shape == nifti.array.shape
        step = float(pydicom.dcmread(dicom.meta["dicom_files"][0]).get("RescaleSlope", 1))
        assert np.abs(dicom.array - nifti.array).max() <= step
        assert np.allclose(dicom.affine, nifti.affine, atol=1e-4)
        uids[name] = (dicom.meta["study_uid"], dicom.meta["frame_of_reference_uid"],
                      dicom.meta["series_uid"])
        again = read_volume(row[f"{name}_dicom"].replace(str(tmp_path / "a"),
                                                         str(tmp_path / "b")))
        assert again.meta["series_uid"] == dicom.meta["series_uid"]
    assert uids["flair"][:2] == uids["t1"][:2] and uids["flair"][2] != uids["t1"][2]
    first = pydicom.dcmread(read_volume(row["flair_dicom"]).meta["dicom_files"][0])
    assert (first.PatientID, first.Modality) == ("wmh_00007", "MR")
    assert_valid(read_volume(row["t1_dicom"]).meta["dicom_files"][0])

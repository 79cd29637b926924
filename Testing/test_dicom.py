"""DICOM series reader: geometry (oblique, anisotropic, tilted), rescale, vendor files, errors.

Series are written here with pydicom from a known voxel grid, so the expected affine and
values are exact; pydicom's bundled vendor files cover compression and damaged files.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy.spatial.transform import Rotation

from lesion_core.errors import UnreadableFileError
from lesion_core.io.dicom import is_dicom_file, list_series, read_dicom
from lesion_core.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
IMAGE_SOP = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _ds_list(values) -> list[str]:
    return [f"{float(v):.8g}" for v in values]


def _base(modality: str, series_uid: str, sop_class: str, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.Modality, ds.Manufacturer, ds.SeriesNumber = modality, "LesionSuiteTest", 3
    ds.SeriesInstanceUID, ds.SeriesDescription = series_uid, description
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def write_series(folder: Path, stored: np.ndarray, lps: np.ndarray, *, slope=1.0,
                 intercept=0.0, modality="CT", series_uid=None, description="test series",
                 step=None, seed=0) -> list[Path]:
    """Write ``stored[i, j, k]`` (cols, rows, slices) as one file per slice, shuffled.

    ``lps`` is the voxel-to-LPS affine of the grid; ``step`` (LPS mm) overrides the
    slice-to-slice displacement (to write a gantry tilt).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    dc, dr = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    row, col = lps[:3, 0] / dc, lps[:3, 1] / dr
    step = lps[:3, 2] if step is None else np.asarray(step, float)
    order = np.random.default_rng(seed).permutation(stored.shape[2])
    paths = []
    for n, k in enumerate(order):
        ds = _base(modality, series_uid, IMAGE_SOP[modality], description)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = int(k) + 1
        ds.ImageOrientationPatient = _ds_list(np.r_[row, col])
        ds.ImagePositionPatient = _ds_list(lps[:3, 3] + k * step)
        ds.PixelSpacing = _ds_list([dr, dc])
        ds.SliceThickness = f"{np.linalg.norm(step):.6g}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.WindowCenter, ds.WindowWidth = "40", "80"
        ds.Columns, ds.Rows = stored.shape[0], stored.shape[1]
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype("<i2")).tobytes()
        path = folder / f"img_{n:03d}{'.dcm' if n % 2 else ''}"  # with and without suffix
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def oblique_ras_affine(spacing=(0.7, 0.9, 2.5)) -> np.ndarray:
    """RAS affine whose LPS frame is rotated 20 deg about an oblique axis."""
    lps = np.eye(4)
    axis = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    lps[:3, :3] = Rotation.from_rotvec(np.radians(20.0) * axis).as_matrix() @ np.diag(spacing)
    lps[:3, 3] = [-80.25, -95.5, 12.75]
    return LPS_TO_RAS @ lps


@pytest.fixture
def ct_truth() -> tuple[Volume, np.ndarray]:
    """Known CT volume in HU (int16) on an oblique anisotropic grid, and its stored values."""
    rng = np.random.default_rng(7)
    stored = rng.integers(0, 2000, size=(12, 10, 8)).astype(np.int16)
    hu = (stored.astype(np.int32) * 2 - 1024).astype(np.int16)
    return Volume(hu, oblique_ras_affine()), stored


def test_oblique_anisotropic_round_trip(tmp_path, ct_truth):
    truth, stored = ct_truth
    write_series(tmp_path, stored, LPS_TO_RAS @ truth.affine, slope=2, intercept=-1024)
    vol = read_dicom(tmp_path)
    assert vol.shape == (12, 10, 8)
    np.testing.assert_allclose(vol.affine, truth.affine, atol=1e-4)
    np.testing.assert_array_equal(vol.array, truth.array)
    assert np.issubdtype(vol.array.dtype, np.integer)
    np.testing.assert_allclose(vol.spacing, [0.7, 0.9, 2.5], atol=1e-5)
    assert vol.meta["source_format"] == "dicom" and vol.meta["modality"] == "CT"
    assert vol.meta["rescale_type"] == "HU" and vol.meta["window_center"] == 40.0
    assert "gantry_tilt_deg" not in vol.meta and len(vol.meta["dicom_files"]) == 8


def test_voxel_origin_is_first_image_position(tmp_path, ct_truth):
    """nibabel's convention: voxel (0,0,0) is the first sorted slice's IPP (LPS -> RAS)."""
    truth, stored = ct_truth
    write_series(tmp_path, stored, LPS_TO_RAS @ truth.affine, slope=2, intercept=-1024)
    vol = read_dicom(tmp_path)
    first = pydicom.dcmread(vol.meta["dicom_files"][0])
    ipp = np.array([float(v) for v in first.ImagePositionPatient])
    np.testing.assert_allclose(vol.voxel_to_ras([0, 0, 0]), ipp * [-1, -1, 1], atol=1e-4)
    # Pixel (row r, column c) of each file lies at IPP + c*dc*row_cos + r*dr*col_cos.
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    dr, dc = (float(v) for v in first.PixelSpacing)
    for k, name in enumerate(vol.meta["dicom_files"]):
        ds = pydicom.dcmread(name)
        pos = np.array([float(v) for v in ds.ImagePositionPatient])
        r, c = 7, 3
        lps_point = pos + c * dc * iop[:3] + r * dr * iop[3:]
        np.testing.assert_allclose(vol.voxel_to_ras([c, r, k]), lps_point * [-1, -1, 1], atol=1e-4)
        assert vol.array[c, r, k] == ds.pixel_array[r, c] * 2 - 1024


def test_affine_agrees_with_nibabel_wrapper(tmp_path, ct_truth):
    truth, stored = ct_truth
    write_series(tmp_path, stored, LPS_TO_RAS @ truth.affine, slope=2, intercept=-1024)
    vol = read_dicom(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel calls its DICOM wrappers experimental
        from nibabel.nicom import dicomwrappers
        first = pydicom.dcmread(vol.meta["dicom_files"][0])
        nib_lps = dicomwrappers.wrapper_from_data(first).affine
    ours = LPS_TO_RAS @ vol.affine
    # nibabel indexes (row, column, slice); we index (column, row, slice).
    np.testing.assert_allclose(ours[:3, 0], nib_lps[:3, 1], atol=1e-5)
    np.testing.assert_allclose(ours[:3, 1], nib_lps[:3, 0], atol=1e-5)
    np.testing.assert_allclose(ours[:3, 3], nib_lps[:3, 3], atol=1e-5)
    # nibabel's third axis is the slice normal with the sign of its (row, column) order;
    # ours points the way the slices are sorted. Same line either way.
    normal = nib_lps[:3, 2] / np.linalg.norm(nib_lps[:3, 2])
    assert abs(ours[:3, 2] @ normal) / vol.spacing[2] == pytest.approx(1.0, abs=1e-6)


def test_lps_axis_aligned_and_reversed_slice_order(tmp_path):
    rng = np.random.default_rng(1)
    stored = rng.integers(-500, 500, size=(6, 5, 4)).astype(np.int16)
    lps = np.diag([0.5, 0.8, 3.0, 1.0])
    lps[:3, 3] = [-20.0, -30.0, 40.0]
    write_series(tmp_path / "a", stored, lps, modality="MR")
    vol = read_dicom(tmp_path / "a")
    np.testing.assert_allclose(vol.affine, LPS_TO_RAS @ lps, atol=1e-6)
    assert vol.orientation == "LPS" and vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, stored)
    # Slices written head-to-foot: k is re-sorted along the normal, the voxels stay put.
    flipped = lps.copy()
    flipped[:3, 2] *= -1
    write_series(tmp_path / "b", stored, flipped, modality="MR")
    vol_b = read_dicom(tmp_path / "b")
    np.testing.assert_array_equal(vol_b.array, stored[:, :, ::-1])
    for ijk in ([0, 0, 0], [5, 4, 3], [2, 3, 1]):
        ref = LPS_TO_RAS @ flipped @ np.r_[ijk[:2], 3 - ijk[2], 1]
        np.testing.assert_allclose(vol_b.voxel_to_ras(ijk), ref[:3], atol=1e-6)


def test_float_rescale_and_per_slice_intercept(tmp_path):
    stored = np.arange(4 * 3 * 3, dtype=np.int16).reshape(4, 3, 3)
    lps = np.diag([1.0, 1.0, 2.0, 1.0])
    paths = write_series(tmp_path, stored, lps, slope=0.5, intercept=0.25, modality="MR")
    ds = pydicom.dcmread(paths[0])
    ds.RescaleIntercept = "10.25"
    ds.save_as(paths[0])
    k_changed = int(ds.InstanceNumber) - 1
    vol = read_dicom(tmp_path)
    expected = stored * 0.5 + 0.25
    expected[:, :, k_changed] += 10.0
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, expected)


def test_gantry_tilt_gives_sheared_affine(tmp_path):
    stored = np.random.default_rng(2).integers(0, 100, size=(8, 8, 6)).astype(np.int16)
    lps = np.diag([0.5, 0.5, 2.0, 1.0])
    step = np.array([0.0, 0.35, 2.0])  # each slice shifted 0.35 mm posterior: ~9.9 deg tilt
    write_series(tmp_path, stored, lps, step=step)
    vol = read_dicom(tmp_path)
    np.testing.assert_allclose(vol.affine[:3, 2], step * [-1, -1, 1], atol=1e-5)
    assert vol.meta["gantry_tilt_deg"] == pytest.approx(np.degrees(np.arctan2(0.35, 2.0)), 1e-4)
    np.testing.assert_array_equal(vol.array, stored)
    for k, name in enumerate(vol.meta["dicom_files"]):
        ipp = np.array([float(v) for v in pydicom.dcmread(name).ImagePositionPatient])
        np.testing.assert_allclose(vol.voxel_to_ras([0, 0, k]), ipp * [-1, -1, 1], atol=1e-5)


def test_enhanced_multiframe_matches_single_frame_series(tmp_path, ct_truth):
    truth, stored = ct_truth
    lps = LPS_TO_RAS @ truth.affine
    write_series(tmp_path / "single", stored, lps, slope=2, intercept=-1024)
    ds = _base("MR", generate_uid(), ENHANCED_MR, "enhanced")
    ds.SOPInstanceUID = generate_uid()
    ds.Columns, ds.Rows = stored.shape[0], stored.shape[1]
    order = np.random.default_rng(3).permutation(stored.shape[2])  # frames out of order
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing = _ds_list([0.9, 0.7])
    measures.SliceThickness = "2.5"
    plane.ImageOrientationPatient = _ds_list(np.r_[lps[:3, 0] / 0.7, lps[:3, 1] / 0.9])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        item, pos, trans = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = _ds_list(lps[:3, 3] + k * lps[:3, 2])
        trans.RescaleSlope, trans.RescaleIntercept = "2", "-1024"
        item.PlanePositionSequence = Sequence([pos])
        item.PixelValueTransformationSequence = Sequence([trans])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack([stored[:, :, k].T for k in order]).astype("<i2").tobytes()
    (tmp_path / "multi").mkdir()
    ds.save_as(tmp_path / "multi" / "e.dcm", enforce_file_format=True)
    single, multi = read_dicom(tmp_path / "single"), read_dicom(tmp_path / "multi" / "e.dcm")
    np.testing.assert_array_equal(multi.array, single.array)
    np.testing.assert_allclose(multi.affine, single.affine, atol=1e-5)
    np.testing.assert_array_equal(read_dicom(tmp_path / "multi").array, truth.array)


MR_VARIANTS = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
               "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
               "MR_small_padded.dcm"]


def test_ct_small_in_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = read_dicom(path)
    assert vol.shape == (128, 128, 1) and vol.meta["single_slice"]
    np.testing.assert_array_equal(vol.array[:, :, 0], ds.pixel_array.T.astype(np.int32) - 1024)
    assert vol.meta["modality"] == "CT" and vol.meta["manufacturer"] == str(ds.Manufacturer)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)
    np.testing.assert_allclose(vol.origin, ipp * [-1, -1, 1])
    np.testing.assert_allclose(vol.affine[:3, :3], np.diag([-dc, -dr, float(ds.SliceThickness)]))


@pytest.mark.parametrize("name", MR_VARIANTS)
def test_compressed_and_encoded_variants_match_mr_small(name):
    ref = read_dicom(get_testdata_file("MR_small.dcm"))
    vol = read_dicom(get_testdata_file(name))
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine)


def test_lossy_jpeg2000_ct_decodes():
    vol = read_dicom(get_testdata_file("693_J2KI.dcm"))
    assert vol.shape == (512, 512, 1) and vol.meta["modality"] == "CT"
    assert -1100 < float(np.median(vol.array)) < 2000


def test_real_series_folder_with_descending_files():
    folder = Path(get_testdata_file("DICOMDIR")).parent / "98892001" / "CT5N"
    vol = read_dicom(folder)
    assert vol.shape == (16, 16, 5)
    np.testing.assert_allclose(vol.spacing, [0.488281, 0.488281, 2.5], atol=1e-5)
    np.testing.assert_allclose(vol.origin, [72.199997, 143.0, -1.2375], atol=1e-5)


@pytest.mark.parametrize("name, words", [
    ("MR_truncated.dcm", "truncated or corrupt"),
    ("JPEG2000.dcm", "ImagePositionPatient"),
    ("JPEG-lossy.dcm", "ImagePositionPatient"),
    ("SC_rgb_jpeg.dcm", "PixelSpacing"),
    ("examples_ybr_color.dcm", "without per-frame positions"),
    ("rtdose.dcm", "RT dose"),
    ("liver_1frame.dcm", "segmentation"),
    ("rtplan.dcm", "holds no image"),
    ("ExplVR_LitEndNoMeta.dcm", "holds no image"),
    ("no_meta.dcm", "not a DICOM file"),  # shipped with a stray leading byte
])
def test_unusable_vendor_files_are_refused_clearly(name, words):
    path = get_testdata_file(name)
    with pytest.raises(UnreadableFileError, match=words) as err:
        read_dicom(path)
    assert Path(path).name in str(err.value)


def test_file_without_preamble_and_meta_header(tmp_path):
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    body = raw[raw.find(b"\x08\x00\x05\x00"):]  # data set from (0008,0005) on
    (tmp_path / "ct_nometa").write_bytes(body)
    assert is_dicom_file(tmp_path / "ct_nometa")
    ref = read_dicom(get_testdata_file("CT_small.dcm"))
    vol = read_dicom(tmp_path / "ct_nometa")
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine)


def test_text_file_and_missing_path(tmp_path):
    (tmp_path / "notes.dcm").write_text("this is not an image\n" * 20)
    with pytest.raises(UnreadableFileError, match="not a DICOM file"):
        read_dicom(tmp_path / "notes.dcm")
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_dicom(tmp_path / "nowhere")
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[:700])  # ends inside the header
    with pytest.raises(UnreadableFileError, match="truncated or corrupt"):
        read_dicom(tmp_path / "cut.dcm")
    with pytest.raises(UnreadableFileError, match="1 DICOM files unreadable"):
        read_dicom(tmp_path)  # the folder: notes.dcm is skipped, cut.dcm cannot be read


def test_two_series_listed_and_selected(tmp_path, ct_truth):
    truth, stored = ct_truth
    lps = LPS_TO_RAS @ truth.affine
    write_series(tmp_path / "s1", stored, lps, series_uid="1.2.3.4.1", description="brain CT")
    write_series(tmp_path / "s2", stored[:, :, :5], lps, series_uid="1.2.3.4.2",
                 description="bone window", modality="MR")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")  # an index: skipped
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(UnreadableFileError) as err:
        read_dicom(tmp_path)
    for needle in ("1.2.3.4.1", "1.2.3.4.2", "brain CT", "bone window", "8 slices", "5 slices",
                   "--series"):
        assert needle in str(err.value)
    infos = list_series(tmp_path)
    assert [(s.uid, s.n_slices, s.modality) for s in infos] == [
        ("1.2.3.4.1", 8, "CT"), ("1.2.3.4.2", 5, "MR")]
    assert read_dicom(tmp_path, series_uid="1.2.3.4.2").shape == (12, 10, 5)
    with pytest.raises(UnreadableFileError, match="not in the folder"):
        read_dicom(tmp_path, series_uid="9.9.9")


def test_missing_slice_is_refused(tmp_path, ct_truth):
    truth, stored = ct_truth
    paths = write_series(tmp_path, stored, LPS_TO_RAS @ truth.affine)
    next(p for p in paths if pydicom.dcmread(p).InstanceNumber == 4).unlink()
    with pytest.raises(UnreadableFileError, match=r"missing or unevenly spaced slices "
                                                  r"\(spacing 2.50 mm to 5.00 mm\)"):
        read_dicom(tmp_path)


def test_real_series_with_gap_and_mixed_stacks_are_refused():
    root = Path(get_testdata_file("DICOMDIR")).parent
    with pytest.raises(UnreadableFileError, match="missing or unevenly spaced"):
        read_dicom(root / "77654033" / "CT2")
    with pytest.raises(UnreadableFileError, match="different orientation"):
        read_dicom(root / "98892003" / "MR700")


def test_duplicate_positions_are_refused(tmp_path, ct_truth):
    truth, stored = ct_truth
    paths = write_series(tmp_path, stored, LPS_TO_RAS @ truth.affine)
    ds = pydicom.dcmread(paths[0])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "echo2.dcm")
    with pytest.raises(UnreadableFileError, match="same position"):
        read_dicom(tmp_path)


def test_missing_geometry_is_refused(tmp_path, ct_truth):
    truth, stored = ct_truth
    paths = write_series(tmp_path, stored[:, :, :2], LPS_TO_RAS @ truth.affine)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.ImageOrientationPatient
        ds.save_as(p)
    with pytest.raises(UnreadableFileError, match="ImageOrientationPatient"):
        read_dicom(tmp_path)


def test_missing_decoder_names_the_plugins(monkeypatch):
    def no_plugin(self):
        raise RuntimeError("Unable to decompress 'RLE Lossless' pixel data because all "
                           "plugins are missing dependencies")
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(no_plugin))
    with pytest.raises(UnreadableFileError, match="pip install pylibjpeg") as err:
        read_dicom(get_testdata_file("MR_small_RLE.dcm"))
    assert "RLE Lossless" in str(err.value) and "MR_small_RLE.dcm" in str(err.value)


def test_single_file_of_a_series_reads_one_slice(tmp_path, ct_truth):
    truth, stored = ct_truth
    paths = write_series(tmp_path, stored, LPS_TO_RAS @ truth.affine, slope=2, intercept=-1024)
    vol = read_dicom(paths[0])
    assert vol.shape == (12, 10, 1) and vol.meta["single_slice"]
    assert vol.spacing[2] == pytest.approx(2.5)
    assert is_dicom_file(paths[0]) and not is_dicom_file(__file__)

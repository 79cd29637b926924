"""Damaged headers and odd paths reach the user as one clear error, never a traceback.

Each case is a probe that once ended in a traceback or a silent guess: malformed DICOM tag
values (when the series is read and when a folder is searched), gzip NRRD over garbage, a
NIfTI datatype code nibabel does not know, a zero voxel size, intensities beyond float32,
an empty path and a search of a whole system folder for DICOM files.
"""

from __future__ import annotations

import gzip
import struct
import sys
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from geometry import random_volume
from lesion_core.cli import main
from lesion_core.errors import InvalidImageError, UnreadableFileError
from lesion_core.io import dicom_series as dicom_io
from lesion_core.io import read_volume, write_volume
from lesion_core.io.dicom import list_series, read_dicom
from lesion_core.validation import validate_image
from lesion_core.volume import Volume
from test_cli import run_cli
from test_dicom import write_series

LPS = np.diag([0.9, 0.9, 2.0, 1.0])


def small_series(folder: Path) -> list[Path]:
    """An 8 x 8 pixel, 3-slice CT series (one file per slice), written with pydicom."""
    stored = np.arange(8 * 8 * 3, dtype=np.int16).reshape(8, 8, 3) * 10 - 900
    return write_series(folder, stored, LPS)


def malform(path: Path, keyword: str, raw: bytes) -> None:
    """Store ``raw`` as the value of ``keyword`` exactly as given (pydicom would refuse to
    write an invalid value through the keyword)."""
    ds = pydicom.dcmread(path)
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    vr = pydicom.datadict.dictionary_VR(tag)
    ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    ds.save_as(path)


def one_error_line(capsys, code: int) -> str:
    """The CLI's one stderr line for exit code 2 (asserted)."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lesion-suite: error:"), err
    return lines[0]


# ------------------------------------------------------------------- DICOM tag values
@pytest.mark.parametrize("keyword, raw, words", [
    ("NumberOfFrames", b"1A", "NumberOfFrames (0028,0008) is malformed"),
    ("RescaleSlope", b"zz", "RescaleSlope (0028,1053) is malformed"),
    ("RescaleIntercept", b"-1O24 ", "RescaleIntercept (0028,1052) is malformed"),
    ("RescaleSlope", b"1\\2 ", "RescaleSlope (0028,1053) is malformed"),
    ("RescaleSlope", b"1e300 ", "beyond any real intensity"),
    ("ImagePositionPatient", b"0\\zz\\0 ", "ImagePositionPatient (0020,0032) is malformed"),
    ("PixelSpacing", b"12", "PixelSpacing (0028,0030) is malformed"),
])
def test_malformed_dicom_tag_names_the_file_and_the_tag(tmp_path, keyword, raw, words):
    paths = small_series(tmp_path / "series")
    malform(paths[1], keyword, raw)
    for where in (tmp_path / "series", paths[1]):  # the series folder, and the file alone
        with pytest.raises(UnreadableFileError, match=words.replace("(", r"\(")
                           .replace(")", r"\)")) as err:
            read_dicom(where)
        assert paths[1].name in str(err.value) and "export" in str(err.value).lower()


def test_malformed_optional_dicom_tags_are_ignored(tmp_path):
    """SliceThickness, SeriesNumber and the window describe; positions give the spacing."""
    paths = small_series(tmp_path / "series")
    for path in paths:
        malform(path, "SliceThickness", b"x5")
        malform(path, "SeriesNumber", b"3B")
        malform(path, "WindowCenter", b"4O")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's warnings about the values stay quiet
        volume = read_dicom(tmp_path / "series")
        alone = read_dicom(paths[0])
    assert volume.shape == (8, 8, 3) and volume.meta["slice_thickness_mm"] is None
    np.testing.assert_allclose(volume.spacing, [0.9, 0.9, 2.0])
    assert "window_center" not in volume.meta and volume.meta["window_width"] == 80
    assert alone.meta["slice_spacing_source"] == "assumed 1.0 mm"  # a lone slice says so
    [info] = list_series(tmp_path)
    assert info.number is None and info.n_slices == 3


def test_folder_listing_survives_a_malformed_frame_count(tmp_path):
    paths = small_series(tmp_path / "a")
    small_series(tmp_path / "b")
    malform(paths[0], "NumberOfFrames", b"1A")
    assert sorted(i.n_slices for i in list_series(tmp_path)) == [3, 3]
    with pytest.raises(UnreadableFileError, match="holds 2 series"):
        read_dicom(tmp_path)  # listing the series does not trip over the damaged file


@pytest.mark.parametrize("keyword", ["Rows", "PixelRepresentation"])
def test_damaged_element_bytes_name_the_file_not_drop_the_slice(tmp_path, keyword):
    """A 3-byte US value cannot be converted; the file stays in its series (a skipped end
    slice would go unnoticed) and the read names it."""
    paths = small_series(tmp_path / "series")
    malform(paths[2], keyword, b"\x01\x02\x03")
    assert [i.n_slices for i in list_series(tmp_path)] == [3]
    with pytest.raises(UnreadableFileError, match=f"element {keyword} is damaged") as err:
        read_dicom(tmp_path / "series")
    assert paths[2].name in str(err.value)


@pytest.mark.parametrize("keyword, raw", [
    ("NumberOfFrames", b"1A"), ("RescaleSlope", b"zz"), ("SliceThickness", b"x5")])
def test_cli_on_malformed_dicom_prints_one_line(tmp_path, keyword, raw):
    """The probes of the issue, run as a user runs them (a new process: every warning a
    library prints would show on stderr)."""
    paths = small_series(tmp_path / "series")
    malform(paths[0], keyword, raw)
    for args in (("validate", tmp_path / "series"), ("info", paths[0])):
        code, out, err = run_cli(*args)
        if keyword == "SliceThickness":  # optional: ignored, the series is fine
            assert code == 0 and err == "", err
            continue
        assert code == 2 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert paths[0].name in err and keyword in err, err


# ------------------------------------------------------------------------- NRRD, NIfTI
def _nrrd_header(encoding: str) -> bytes:
    return (f"NRRD0004\ntype: short\nendian: little\ndimension: 3\nsizes: 4 4 4\n"
            f"space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
            f"encoding: {encoding}\n\n").encode()


@pytest.mark.parametrize("encoding", ["gzip", "bzip2"])
def test_compressed_nrrd_over_garbage_is_unreadable(tmp_path, capsys, encoding):
    path = tmp_path / "garbage.nrrd"
    path.write_bytes(_nrrd_header(encoding) + b"not compressed at all" * 5)
    with pytest.raises(UnreadableFileError, match="truncated or corrupt"):
        read_volume(path)
    line = one_error_line(capsys, main(["validate", str(path)]))
    assert str(path) in line and "Re-copy or re-export" in line


def test_nifti_with_unknown_datatype_is_unreadable(tmp_path, capsys):
    path = write_volume(random_volume(shape=(6, 6, 6)), tmp_path / "image.nii")
    raw = bytearray(path.read_bytes())
    raw[70:72] = struct.pack("<h", 999)  # datatype code: none that NIfTI defines
    path.write_bytes(bytes(raw))
    with pytest.raises(UnreadableFileError, match="data code 999"):
        read_volume(path)
    line = one_error_line(capsys, main(["info", str(path)]))
    assert str(path) in line and "not a readable NIfTI image" in line


def _nifti_with_pixdim(path: Path, pixdim, with_sform: bool) -> Path:
    """A small NIfTI whose header holds ``pixdim[1:4]`` as given (patched after saving:
    nibabel would rewrite it from the affine)."""
    image = nib.Nifti1Image(np.random.default_rng(0).uniform(0, 100, (6, 6, 6))
                            .astype(np.float32), np.eye(4))
    if not with_sform:  # nibabel then builds the affine from pixdim alone
        image.header.set_sform(None, code=0)
        image.header.set_qform(None, code=0)
    raw = bytearray(image.header.binaryblock + b"\0" * 4 + image.dataobj.tobytes("F"))
    raw[80:92] = struct.pack("<3f", *pixdim)  # pixdim[1:4]
    if path.name.endswith(".gz"):
        raw = bytearray(gzip.compress(bytes(raw)))
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("pixdim", [(0, 0, 0), (1, 0, 1), (1, 1, -2), (1, np.nan, 1)])
@pytest.mark.parametrize("with_sform", [False, True])
def test_nifti_voxel_size_that_is_not_positive_is_refused(tmp_path, pixdim, with_sform):
    path = _nifti_with_pixdim(tmp_path / "image.nii.gz", pixdim, with_sform)
    with pytest.raises(InvalidImageError, match="voxel size") as err:
        read_volume(path)
    assert str(path) in str(err.value) and "converter" in str(err.value)


def test_zero_voxel_size_is_one_line_with_no_nibabel_log(tmp_path):
    """nibabel logs 'setting 0 dims to 1' on stderr while loading; that line must not
    join ours (and 1 mm must not be assumed: validate said OK before)."""
    path = _nifti_with_pixdim(tmp_path / "zero.nii", (0, 0, 0), with_sform=False)
    code, out, err = run_cli("validate", path)
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1 and "voxel size 0 x 0 x 0 mm" in err, err


def test_nrrd_zero_space_direction_is_refused(tmp_path):
    path = tmp_path / "flat.nrrd"
    path.write_bytes(_nrrd_header("raw").replace(b"(0,1,0)", b"(0,0,0)") + b"\0" * 128)
    with pytest.raises(InvalidImageError, match="voxel size 1 x 0 x 1 mm"):
        read_volume(path)


# ------------------------------------------------------------------------- intensities
@pytest.mark.parametrize("extreme", [1e308, -1e308, 3e38, 1e31])
def test_intensities_beyond_float32_processing_are_refused(tmp_path, capsys, extreme):
    array = np.random.default_rng(1).uniform(0, 100, (8, 8, 8))
    array[2, 3, 4] = extreme
    path = write_volume(Volume(array, np.eye(4)), tmp_path / "huge_values.nii.gz")
    with pytest.raises(InvalidImageError, match="float32"):
        validate_image(read_volume(path))
    line = one_error_line(capsys, main(["validate", str(path)]))
    assert str(path) in line and f"{extreme:g}" in line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # info still describes it, without overflow warnings
        assert main(["info", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_large_but_processable_intensities_pass():
    array = np.random.default_rng(2).uniform(0, 1e29, (8, 8, 8))
    validate_image(Volume(array, np.eye(4)))


# ------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("verb", ["validate", "info"])
def test_empty_path_is_refused(capsys, verb):
    line = one_error_line(capsys, main([verb, ""]))
    assert "path is empty" in line
    with pytest.raises(UnreadableFileError, match="empty"):
        read_volume("")
    with pytest.raises(UnreadableFileError, match="empty"):
        read_dicom("")


def test_folder_without_dicom_files_is_refused_early(tmp_path):
    for n in range(dicom_io.MAX_FILES_WITHOUT_DICOM + 50):
        folder = tmp_path / f"dir{n // 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"notes{n:04d}.txt").write_text("not an image")
    small_series(tmp_path / "zz_late")  # far down the search: never reached
    with pytest.raises(UnreadableFileError, match="none of the first 1,000 files"):
        read_dicom(tmp_path)


def test_folder_search_is_bounded_in_files_and_depth(tmp_path, monkeypatch):
    small_series(tmp_path / "series")
    for n in range(30):
        (tmp_path / "series" / f"notes{n:02d}.txt").write_text("not an image")
    monkeypatch.setattr(dicom_io, "MAX_SCAN_FILES", 20)
    with pytest.raises(UnreadableFileError, match="more than 20 files or folders"):
        read_dicom(tmp_path)
    monkeypatch.undo()
    deep = tmp_path / "deep" / Path(*[f"level{n}" for n in range(dicom_io.MAX_SCAN_DEPTH + 1)])
    small_series(deep)
    with pytest.raises(UnreadableFileError, match="levels down were not searched"):
        read_dicom(tmp_path / "deep")
    assert read_dicom(deep.parent).shape == (8, 8, 3)  # one level up: within reach


def test_info_on_a_system_folder_answers_at_once(capsys):
    """``info /usr`` searched the whole tree for DICOM files (16 s)."""
    folder = Path("/usr") if Path("/usr/bin").is_dir() else Path(sys.prefix)
    start = time.perf_counter()
    code = main(["info", str(folder)])
    elapsed = time.perf_counter() - start
    line = one_error_line(capsys, code)
    assert str(folder) in line and "select the folder" in line.lower()
    assert elapsed < 5.0, elapsed  # about 0.1 s; generous for a loaded test machine

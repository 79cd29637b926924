import gzip

import nibabel as nib
import numpy as np
import pytest

from geometry import random_volume
from lesion_core.errors import InvalidImageError, UnreadableFileError
from lesion_core.io import (SegmentInfo, image_format, read_segmentation, read_volume,
                            write_segmentation, write_volume)
from lesion_core.volume import Volume

DTYPES = [np.int16, np.uint8, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_nrrd_round_trip_keeps_float64_affine_and_values_exactly(tmp_path, dtype):
    volume = random_volume(dtype=dtype)
    back = read_volume(write_volume(volume, tmp_path / "v.nrrd"))
    assert np.array_equal(back.affine, volume.affine)
    assert back.array.dtype == volume.array.dtype
    assert np.array_equal(back.array, volume.array)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nifti_round_trip_keeps_values_and_float32_affine(tmp_path, dtype):
    volume = random_volume(dtype=dtype)
    back = read_volume(write_volume(volume, tmp_path / "v.nii.gz"))
    # NIfTI stores the sform as float32: the affine survives to float32 precision.
    assert np.array_equal(back.affine, volume.affine.astype(np.float32).astype(np.float64))
    assert back.array.dtype == volume.array.dtype
    assert np.array_equal(back.array, volume.array)


def test_real_t1_round_trips_through_nifti_and_nrrd(tmp_path, real_t1_path):
    original = read_volume(real_t1_path)
    assert original.orientation == "LAS" and original.shape == (137, 137, 93)
    assert np.allclose(original.spacing, 1.75) and original.array.dtype == np.float64
    for name in ("t1.nii.gz", "t1.nrrd"):
        back = read_volume(write_volume(original, tmp_path / name))
        assert np.array_equal(back.affine, original.affine)
        assert np.array_equal(back.array, original.array)


def test_seg_nrrd_round_trip_keeps_labels_and_segment_metadata(tmp_path):
    grid = random_volume(dtype=np.uint8)
    labels = np.zeros(grid.shape, np.uint8)
    labels[2:6, 3:8, 1:4] = 1
    labels[10:14, 10:12, 8:12] = 4
    segments = [SegmentInfo("wmh", "White matter hyperintensity", 1, (1.0, 0.8, 0.2), "SCT^1^x"),
                SegmentInfo("cmb", "Cerebral microbleed", 4, (0.2, 0.2, 1.0))]
    path = tmp_path / "labels.seg.nrrd"
    write_segmentation(grid.with_array(labels), segments, path)
    assert image_format(path) == "seg.nrrd"
    back, infos = read_segmentation(path)
    assert np.array_equal(back.array, labels) and np.array_equal(back.affine, grid.affine)
    assert [(s.name, s.label_value) for s in infos] == [(s.name, s.label_value) for s in segments]
    assert infos[0].terminology == "SCT^1^x" and infos[1].color == (0.2, 0.2, 1.0)


def test_truncated_gzip_nifti_is_refused_clearly(tmp_path, real_t1_path):
    data = real_t1_path.read_bytes()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(UnreadableFileError) as info:
        read_volume(broken)
    message = str(info.value)
    assert str(broken) in message and "truncated or corrupt" in message and "Re-copy" in message


def test_text_file_named_nii_is_not_an_image(tmp_path):
    fake = tmp_path / "notes.nii"
    fake.write_text("this is not an image")
    with pytest.raises(UnreadableFileError, match="not a readable NIfTI"):
        read_volume(fake)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UnreadableFileError, match="not a supported image file"):
        read_volume(other)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_volume(tmp_path / "missing.nii.gz")


def test_header_claiming_huge_image_is_refused_before_reading(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    image.header.set_data_shape((2048, 2048, 1024))
    path = tmp_path / "huge.nii"
    header_only = image.header.binaryblock + b"\x00" * 4  # no voxel data at all
    path.write_bytes(header_only)
    with pytest.raises(InvalidImageError, match="crop it to the head|Crop it to the head"):
        read_volume(path)


def test_nrrd_without_space_is_refused(tmp_path):
    import nrrd
    path = tmp_path / "nospace.nrrd"
    nrrd.write(str(path), np.zeros((3, 4, 5), np.int16))
    with pytest.raises(UnreadableFileError, match="world space"):
        read_volume(path)


def test_writing_an_unknown_extension_is_refused(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"\.nii\.gz or \.nrrd"):
        write_volume(random_volume(), tmp_path / "v.png")

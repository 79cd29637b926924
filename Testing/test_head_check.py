"""Is this a head scan? The checks say no to noise, masks, tiny, mislabelled and non-head
volumes, before a model is loaded; ``--force`` gets a result marked out of distribution."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from lesion_core import head_check
from lesion_core.cli import main
from lesion_core.io import write_volume
from lesion_core.volume import Volume
from wmh_toys import save_tiny_models


def head_phantom(spacing=(4.0, 4.0, 4.0), modality="MR", seed=0) -> Volume:
    """A smooth ellipsoidal head of 170 x 200 x 160 mm in a 240 mm field of view: scalp,
    skull (bright on CT), brain with a little texture; ``[i, j, k]`` along R, A, S."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(round(240 / s)) for s in spacing)
    grid = np.stack(np.meshgrid(*[(np.arange(n) - n / 2 + 0.5) * s for n, s in zip(shape, spacing)],
                                indexing="ij"))
    r = np.sqrt((grid[0] / 85) ** 2 + (grid[1] / 100) ** 2 + (grid[2] / 80) ** 2)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    if modality == "CT":
        image = np.where(r < 0.88, 32 + 4 * texture, np.where(r < 0.95, 900.0, np.where(
            r < 1.0, 20.0, -1000.0)))
    else:
        image = np.where(r < 0.88, 400 + 40 * texture, np.where(r < 1.0, 150.0, 0.0))
    image = image + rng.normal(0, 5, shape)
    return Volume(image.astype(np.float32), np.diag([*spacing, 1.0]))


def test_a_head_passes_and_every_probe_is_refused():
    rng = np.random.default_rng(1)
    head = head_phantom()
    assert head_check.image_findings(head, "MR") == []
    assert head_check.image_findings(head_phantom(modality="CT"), "CT") == []
    probes = {
        "noise": (Volume(rng.uniform(0, 1000, (60, 60, 60)).astype(np.float32),
                         np.diag([4.0, 4, 4, 1])), "MR", "noise"),
        "noise in HU": (Volume(rng.uniform(-1000, 2000, (60, 60, 40)).astype(np.float32),
                               np.diag([4.0, 4, 5, 1])), "CT", "noise"),
        "binary mask": (head.with_array((head.array > 200).astype(np.uint8)), "MR",
                        "distinct values"),
        "5x5x5 image": (Volume(ndimage.gaussian_filter(rng.normal(size=(5, 5, 5)), 1),
                               np.eye(4)), "MR", "outside the 40-450 mm"),
        "mislabelled spacing": (Volume(head.array, np.diag([0.5, 0.5, 10.0, 1])), "MR",
                                "wrong voxel size"),
        "a slab": (Volume(head.array[:, :, 28:32], head.affine), "MR", "outside the"),
        "smooth CT of no head": (Volume(np.full((60, 60, 40), 500.0, np.float32)
                                        + ndimage.gaussian_filter(rng.normal(0, 300, (60, 60, 40)), 2),
                                        np.diag([4.0, 4, 5, 1])), "CT", "soft tissue"),
    }
    for name, (volume, modality, fragment) in probes.items():
        findings = head_check.image_findings(volume, modality)
        assert any(fragment in f for f in findings), (name, findings)


def test_brain_volume_outside_an_adult_range_is_a_finding():
    assert head_check.brain_findings(1300.0) == []
    assert head_check.brain_findings(None) == []
    assert "125 mL" in head_check.brain_findings(125.0)[0]
    assert "intracranial" in head_check.brain_findings(9000.0, "intracranial")[0]


def test_refused_unless_forced_names_the_file_and_force():
    with pytest.raises(head_check.NotAHeadScanError) as caught:
        head_check.refuse_unless_forced(["it is noise"], "x.nii.gz", False, "give a FLAIR")
    message = str(caught.value)
    assert message.startswith("x.nii.gz: it is noise.") and "--force" in message
    assert head_check.refuse_unless_forced(["it is noise"], "x.nii.gz", True, "f") == ("it is noise",)


@pytest.mark.parametrize("task", ["wmh", "cmb", "ich"])
def test_predict_refuses_noise_in_one_line_before_loading_a_model(tmp_path, capsys, task):
    rng = np.random.default_rng(2)
    low, high = (-1000, 2000) if task == "ich" else (0, 1000)
    path = write_volume(Volume(rng.uniform(low, high, (50, 50, 40)).astype(np.float32),
                               np.diag([4.0, 4.0, 4.0, 1.0])), tmp_path / "noise.nii.gz")
    # A model folder that does not exist: the refusal must come before it is looked at.
    code = main([task, "predict", str(path), "--model", str(tmp_path / "absent"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "noise" in err[0] and "--force" in err[0] and str(path) in err[0]
    assert not (tmp_path / "out").exists()


def test_forced_result_is_marked_out_of_distribution(tmp_path, capsys):
    save_tiny_models(tmp_path / "models")
    rng = np.random.default_rng(3)
    path = write_volume(Volume(rng.uniform(0, 1000, (48, 56, 48)).astype(np.float32),
                               np.diag([4.0, 4.0, 4.0, 1.0])), tmp_path / "noise.nii.gz")
    code = main(["wmh", "predict", str(path), "--model", str(tmp_path / "models" / "flair"),
                 "--out", str(tmp_path / "out"), "--force"])
    out = capsys.readouterr().out
    assert code == 0 and "OUT OF DISTRIBUTION (--force)" in out
    summary = json.loads((tmp_path / "out" / "wmh_summary.json").read_text())
    assert any("noise" in f for f in summary["out_of_distribution"])

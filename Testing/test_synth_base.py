"""The synthetic cohort's anatomy, acquisition and seed splits (lesions: test_synth_*.py)."""

import numpy as np
import pytest

from lesion_core.atlas.template import load_template
from lesion_core.synth.acquisition import AcquisitionConfig, acquire
from lesion_core.synth.anatomy import AnatomyConfig, make_anatomy
from lesion_core.synth.splits import (BENCHMARK_SEEDS, SHIFTED_BENCHMARK_SEEDS, TRAIN_SEEDS,
                                     VALIDATION_SEEDS, seeds, split_of)

COARSE = AnatomyConfig(spacing_mm=3.0)


@pytest.fixture(scope="module")
def anatomy():
    return make_anatomy(7, COARSE)


def test_template_maps_are_plausible():
    template = load_template()
    ml = {name: float(m.sum()) / 1000 for name, m in template.maps.items()}  # 1 mm voxels
    assert 1300 < template.brain.sum() / 1000 < 2000          # brain volume in mL
    assert 500 < ml["gm"] < 1100 and 350 < ml["wm"] < 800
    assert 8 < ml["ventricles"] < 60 and ml["skull"] > 300 and ml["air"] > 0.5


def test_anatomy_is_reproducible_and_seed_dependent(anatomy):
    again = make_anatomy(7, COARSE)
    other = make_anatomy(8, COARSE)
    assert np.array_equal(again.tissues["wm"], anatomy.tissues["wm"])
    assert anatomy.grid.shape != other.grid.shape or not np.array_equal(
        anatomy.tissues["wm"], other.tissues["wm"])


def test_subject_tissues_are_the_template_carried_by_the_known_map(anatomy):
    template = load_template()
    carried = anatomy.sample_mni_map(template.maps["wm"], template.affine, order=1)
    assert np.allclose(carried, anatomy.tissues["wm"], atol=1e-4)
    # to_mni agrees with the dense map at voxel centres.
    ijk = np.array([[5, 6, 7], [10, 12, 9]])
    assert np.allclose(anatomy.to_mni(ijk), anatomy.mni_coordinates[tuple(ijk.T)], atol=1e-4)


def test_older_subjects_have_larger_ventricles():
    young = make_anatomy(3, AnatomyConfig(spacing_mm=3.0, age_years=52))
    old = make_anatomy(3, AnatomyConfig(spacing_mm=3.0, age_years=89))
    assert old.atrophy > young.atrophy
    assert old.tissues["ventricles"].sum() > 1.1 * young.tissues["ventricles"].sum()


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS", "oblique"])
def test_acquisition_grid_orientation_and_thick_slices(anatomy, orientation):
    rng = np.random.default_rng(0)
    image = anatomy.grid.with_array(anatomy.tissues["wm"] * 100)
    labels = {"wm": anatomy.grid.with_array((anatomy.tissues["wm"] > 0.5).astype(np.uint8) * 3)}
    config = AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=6.0, orientation=orientation)
    acquired, acquired_labels, facts = acquire(image, labels, "FLAIR", config, rng)
    assert np.allclose(acquired.spacing, [3.0, 3.0, 6.0])
    if orientation == "oblique":
        assert acquired.is_oblique
    else:
        assert acquired.orientation == orientation
    assert acquired.array.min() >= 0  # Rician magnitude
    assert set(np.unique(acquired_labels["wm"].array)) == {0, 3}
    assert acquired_labels["wm"].shape == acquired.shape
    assert facts["slice_thickness_mm"] == 6.0


def test_ct_acquisition_is_int16_hounsfield(anatomy):
    rng = np.random.default_rng(1)
    from lesion_core.synth.contrast import render
    ct = anatomy.grid.with_array(render(anatomy, "CT", [], rng))
    acquired, _, _ = acquire(ct, {}, "CT", AcquisitionConfig(in_plane_mm=3.0, slice_thickness_mm=5.0,
                                                              orientation="RAS"), rng)
    assert acquired.array.dtype == np.int16 and acquired.meta["modality"] == "CT"
    assert acquired.array.min() < -900 and acquired.array.max() > 500


def test_seed_splits_are_disjoint():
    assert not set(TRAIN_SEEDS) & set(VALIDATION_SEEDS)
    assert max(VALIDATION_SEEDS) < min(BENCHMARK_SEEDS)
    assert max(BENCHMARK_SEEDS) < min(SHIFTED_BENCHMARK_SEEDS)
    assert split_of(5) == "train" and split_of(900_001) == "benchmark"
    assert split_of(950_001) == "shifted_benchmark"
    assert split_of(500_000) == "unassigned"
    assert seeds("benchmark", 3) == [900_000, 900_001, 900_002]
    assert seeds("shifted_benchmark", 2) == [950_000, 950_001]


@pytest.mark.parametrize("kind, weak", [("wmh", "arwmc_frontal_left"), ("cmb", "cmb_count"),
                                        ("ich", "ich_subdural")])
def test_synth_cli_writes_images_truth_and_weak_labels(tmp_path, kind, weak):
    import csv
    import json

    from lesion_core.cli import main
    from lesion_core.io import read_volume

    assert main(["synth", kind, "--n", "1", "--seed", "11", "--size", "small", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / f"{kind}_labels.csv").open()))
    assert len(rows) == 1 and rows[0]["seed"] == "11" and weak in rows[0]
    truth_columns = [c for c in rows[0] if c.endswith("_truth")]
    assert truth_columns  # ground truth is there, and named as such
    image_column = {"wmh": "flair", "cmb": None, "ich": "ct"}[kind] or \
        next(c for c in ("swi", "t2star") if c in rows[0])
    image = read_volume(rows[0][image_column])
    assert max(image.shape) <= 96  # "small": about 64 voxels a side (oblique grids are larger)
    targets = json.loads(open(rows[0]["targets"]).read())["targets"]
    if kind == "ich":
        assert "slices" in targets and len(targets["slices"]) == image.shape[2]


def test_region_names_and_the_command_line_load_without_torch():
    """The Slicer modules list the ARWMC regions before torch is installed, and the command
    line checks its input before importing torch: neither import may pull it in, while the
    cohort builders stay importable from the package."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from lesion_core.atlas.arwmc import REGIONS\n"
            "from lesion_core.synth import KINDS\n"
            "import lesion_core.cli\n"
            "assert REGIONS and KINDS == ('wmh', 'cmb', 'ich')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "from lesion_core.synth import SubjectConfig, make_subject\n"
            "assert callable(make_subject) and 'torch' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr

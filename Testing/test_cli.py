"""The command line: exit codes, one-line errors, no tracebacks for user mistakes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from geometry import random_volume
from lesion_core import __version__
from lesion_core.cli import main
from lesion_core.io import write_volume


def run_cli(*args):
    """Run the CLI as a user would (a new process), returning (code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "lesion_core", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_version():
    code, out, _ = run_cli("--version")
    assert code == 0 and __version__ in out


def test_info_on_real_t1_reports_its_geometry(real_t1_path, capsys):
    assert main(["info", str(real_t1_path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape"] == [137, 137, 93]
    assert facts["spacing_mm"] == [1.75, 1.75, 1.75]
    assert facts["orientation"] == "LAS" and facts["dtype"] == "float64"
    assert facts["modality_guess"] == "MR" and facts["intensity"]["max"] == 255.0
    assert main(["info", str(real_t1_path)]) == 0
    text = capsys.readouterr().out
    assert "1.75 x 1.75 x 1.75 mm" in text and "LAS" in text


def test_info_on_nrrd_and_oblique_volume(tmp_path, capsys):
    path = write_volume(random_volume(), tmp_path / "oblique.nrrd")
    assert main(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["oblique"] is True and facts["format"] == "nrrd"
    assert np.allclose(facts["spacing_mm"], [0.7, 1.1, 3.0])


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    (b"plain text", "not a supported image file"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, content, fragment):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli("info", path)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(path) in err and fragment in err


def test_corrupt_nifti_from_cli(tmp_path, real_t1_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(real_t1_path.read_bytes()[:5000])
    code, _, err = run_cli("info", broken)
    assert code == 2 and "Traceback" not in err and "truncated or corrupt" in err


def test_demo_runs_on_bundled_t1(tmp_path):
    code, out, err = run_cli("demo", "--out", tmp_path / "demo")
    assert code == 0, err
    assert (tmp_path / "demo" / "t1_ras_1mm.nii.gz").exists()
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["resampled"]["orientation"] == "RAS"
    assert report["resampled"]["spacing_mm"] == [1.0, 1.0, 1.0]


def test_progress_lines_mode_prints_parseable_progress(tmp_path):
    from lesion_core.progress import parse_progress_line
    code, out, _ = run_cli("--progress-lines", "demo", "--out", tmp_path / "demo")
    assert code == 0
    events = [parse_progress_line(line) for line in out.splitlines()]
    fractions = [e[0] for e in events if e is not None]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)

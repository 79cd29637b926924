"""Multi-process training with ``torchrun`` (DistributedDataParallel on gloo, 2 CPU
processes): both ranks end with the same weights, each rank draws its own batches (rank 0
those of a single process), rank 0 alone writes the bundle and the checkpoint, an
interrupted run resumes to the same weights, and a training verb runs unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lesion_core.bundle import load_bundle
from lesion_core.training.distributed import Ranks, ranks_from_environment

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "ddp_toy_training.py"


def _environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a launcher around the test suite must not leak in
    return env


def torchrun(*args, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=processes ARGS`` (a free port each time)."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={processes}", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=_environment())


def _weights(folder: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(folder / f"rank{rank}.pt", weights_only=True)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """An uninterrupted 2-process run of 6 steps with checkpoints."""
    out = tmp_path_factory.mktemp("ddp_straight")
    done = torchrun(SCRIPT, "--out", out, "--checkpoint", out / "checkpoint")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_ranks_come_from_the_torchrun_environment():
    assert ranks_from_environment({}) == Ranks(0, 1, 0) and Ranks().main
    ranks = ranks_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert ranks == Ranks(3, 4, 1) and ranks.distributed and not ranks.main
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"WORLD_SIZE": "two"}):
        with pytest.raises(ValueError):
            ranks_from_environment(bad)


def test_two_processes_end_with_the_same_weights_and_one_bundle(straight, tmp_path):
    first, second = _weights(straight, 0), _weights(straight, 1)
    assert _equal(first, second)
    assert any("running_mean" in k for k in first)  # buffers are compared too
    bundle = load_bundle(straight / "bundle")
    assert bundle.metadata.training["steps"] == 6
    assert _equal(bundle.networks["net"].state_dict(), first)
    assert sorted(p.name for p in (straight / "checkpoint").iterdir()) == ["checkpoint.pt"]
    saved = torch.load(straight / "checkpoint" / "checkpoint.pt", weights_only=True)
    assert len(saved["ranks"]) == 2 and saved["step"] == 6
    # Each rank draws its own batches; rank 0 draws what one process alone draws.
    drawn = [json.loads((straight / f"drawn{r}.json").read_text()) for r in (0, 1)]
    assert drawn[0] != drawn[1]
    single = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, env=_environment())
    assert single.returncode == 0, single.stderr[-3000:]
    assert json.loads((tmp_path / "drawn0.json").read_text()) == drawn[0]
    assert not _equal(_weights(tmp_path, 0), first)  # two ranks average two batches


def test_an_interrupted_run_resumes_to_the_same_weights(straight, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    stopped = torchrun(SCRIPT, "--out", tmp_path, "--checkpoint", checkpoint, "--fail-at", "5")
    assert stopped.returncode != 0 and not (tmp_path / "rank0.pt").exists()
    assert torch.load(checkpoint / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = torchrun(SCRIPT, "--out", tmp_path, "--checkpoint", checkpoint)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(json.loads((tmp_path / "drawn0.json").read_text())) == 2  # steps 4 and 5
    for rank in (0, 1):
        assert _equal(_weights(tmp_path, rank), _weights(straight, 0))


def test_another_number_of_processes_refuses_the_checkpoint(straight, tmp_path):
    """One process reaches other weights than two, so it does not resume a 2-process run."""
    import shutil

    shutil.copytree(straight / "checkpoint", tmp_path / "checkpoint")
    alone = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path),
                            "--checkpoint", str(tmp_path / "checkpoint")],
                           capture_output=True, text=True, timeout=300, env=_environment())
    assert alone.returncode != 0 and "other settings" in alone.stderr


def test_a_training_verb_runs_unchanged_under_torchrun(tmp_path):
    """``lesion-suite wmh train`` with 2 processes: rank 0 saves one model that loads, and
    prints the one line; the checkpoint is rank 0's."""
    from lesion_core.cli.synth import small_config
    from lesion_core.synth import make_cohort
    from lesion_core.wmh.model import load_wmh_model

    make_cohort("wmh", [41, 42], tmp_path / "cohort", small_config("wmh"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"spacing_mm": 6.0, "shape": [32, 40, 32],
                                  "features": [4, 8, 16]}))
    done = torchrun("-m", "lesion_core", "wmh", "train", "--synthetic", tmp_path / "cohort",
                    "--known-transform", "--config", config, "--steps", "2", "--device",
                    "cpu", "--checkpoint", tmp_path / "checkpoint", "--out", tmp_path / "model")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model saved in") == 1
    model = load_wmh_model(tmp_path / "model")
    assert model.metadata.training["steps"] == 2
    saved = torch.load(tmp_path / "checkpoint" / "checkpoint.pt", weights_only=True)
    assert len(saved["ranks"]) == 2

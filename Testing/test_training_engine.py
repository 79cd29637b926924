"""The one training engine: kill-and-resume equals a straight run, prefetch changes
nothing, schedules, precision choice, cancel keeps the work, checkpoints without pickle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lesion_core.errors import OperationCancelled
from lesion_core.progress import Progress
from lesion_core.training import (CheckpointError, EpochOrder, OptimConfig, load_checkpoint,
                                  resolve_precision, run_training)
from lesion_core.training.engine import _lr_factor


Cursor = EpochOrder  # a sampler position of its own that checkpoints must carry


def _problem(cursor: EpochOrder):
    data = torch.randn(40, 6, generator=torch.Generator().manual_seed(5))
    target = data @ torch.arange(6.0) + 1.0

    def sample(ctx):
        picked = cursor.take(ctx.batch_size, 40, ctx.generator)
        noise = float(ctx.rng.normal(0, 0.01))
        return data[picked] + noise, target[picked]

    def loss(net, batch, ctx):
        x, y = batch
        prediction = net(x).squeeze(1)
        return {"loss": ((prediction - y) ** 2).mean(), "extra": None}

    def build():
        return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.2),
                                   torch.nn.Linear(8, 1))
    return build, sample, loss


CONFIG = OptimConfig(steps=12, lr=0.01, schedule="warmup_cosine", warmup_steps=3,
                     batch_size=4, seed=3, device="cpu", precision="fp32",
                     checkpoint_every_s=1e9, checkpoint_every_steps=4, log_every=1)


def _run(config=CONFIG, **kwargs):
    cursor = Cursor()
    build, sample, loss = _problem(cursor)
    return run_training(build, sample, loss, config, state=cursor, **kwargs)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class Crash(RuntimeError):
    pass


def test_kill_and_resume_reaches_the_same_weights(tmp_path):
    straight, straight_result = _run()
    cursor = Cursor()
    build, sample, loss = _problem(cursor)

    def crashing_loss(net, batch, ctx):
        if ctx.step == 7:  # killed during step 7: the checkpoint of step 4 survives
            raise Crash()
        return loss(net, batch, ctx)

    with pytest.raises(Crash):
        run_training(build, sample, crashing_loss, CONFIG, state=cursor, checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path)["step"] == 4
    resumed, result = _run(checkpoint_dir=tmp_path)
    assert result.resumed_from == 4 and result.steps == 12
    assert _same_weights(straight, resumed)
    assert result.history["loss"] == straight_result.history["loss"]
    assert math.isnan(result.history["extra"][0])
    # Rerunning a finished run returns its weights without training.
    again, again_result = _run(checkpoint_dir=tmp_path)
    assert _same_weights(straight, again) and again_result.resumed_from == 12


def test_prefetch_changes_nothing():
    a, _ = _run(prefetch=True)
    b, _ = _run(prefetch=False)
    assert _same_weights(a, b)


def test_cancel_saves_a_checkpoint_and_resumes(tmp_path):
    straight, _ = _run()
    progress = Progress()
    seen = []

    def callback(fraction, message):
        seen.append(message)
        if len(seen) == 6:
            progress.cancel()
    progress = Progress(callback)
    with pytest.raises(OperationCancelled):
        _run(checkpoint_dir=tmp_path, progress=progress)
    assert load_checkpoint(tmp_path)["step"] == 6
    resumed, _ = _run(checkpoint_dir=tmp_path)
    assert _same_weights(straight, resumed)


def test_other_settings_refuse_the_checkpoint(tmp_path):
    _run(checkpoint_dir=tmp_path)
    other = OptimConfig(**{**CONFIG.__dict__, "lr": 0.02})
    with pytest.raises(CheckpointError, match="other settings"):
        _run(config=other, checkpoint_dir=tmp_path)
    # Settings that do not change the result may differ.
    _run(config=OptimConfig(**{**CONFIG.__dict__, "log_every": 5}), checkpoint_dir=tmp_path)
    # The task's own settings are part of the run too.
    with pytest.raises(CheckpointError, match="other settings"):
        _run(checkpoint_dir=tmp_path, fingerprint={"augment": "strong"})


def test_wall_time_is_counted_once(tmp_path):
    _, result = _run(checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path)["wall_s"] == pytest.approx(result.wall_s, abs=0.05)
    _, again = _run(checkpoint_dir=tmp_path)
    assert again.wall_s == pytest.approx(result.wall_s, abs=0.05)


def test_corrupt_checkpoint_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="checkpoint.pt.*Delete that file"):
        _run(checkpoint_dir=tmp_path)


def test_training_learns_and_reports():
    net, result = _run(OptimConfig(**{**CONFIG.__dict__, "steps": 150, "schedule": "constant"}))
    assert np.mean(result.history["loss"][-10:]) < 0.1 * np.mean(result.history["loss"][:10])
    assert not net.training and next(net.parameters()).device.type == "cpu"
    assert result.summary()["steps"] == 150


def test_frozen_parameters_stay():
    cursor = Cursor()
    build, sample, loss = _problem(cursor)
    torch.manual_seed(0)
    net = build()
    first = net[0].weight.detach().clone()
    trained, _ = run_training(net, sample, loss, CONFIG, state=cursor,
                              parameters=lambda n: n[2].parameters())
    assert torch.equal(trained[0].weight, first)


def test_schedules():
    cosine = _lr_factor(OptimConfig(steps=100, schedule="cosine", min_lr_fraction=0.1))
    assert cosine(0) == pytest.approx(1.0) and cosine(100) == pytest.approx(0.1)
    assert cosine(50) == pytest.approx(0.55)
    warm = _lr_factor(OptimConfig(steps=100, schedule="warmup_cosine", warmup_steps=10))
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(10) == pytest.approx(1.0) and warm(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        OptimConfig(schedule="step")


def test_precision_choice(monkeypatch):
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr("lesion_core.training.precision.cpu_has_bf16_units", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr("lesion_core.training.precision.cpu_has_bf16_units", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_bf16_training_runs_on_cpu():
    net, result = _run(OptimConfig(**{**CONFIG.__dict__, "precision": "bf16"}))
    assert result.precision == "bf16"
    assert next(net.parameters()).dtype == torch.float32  # weights stay fp32
    assert all(math.isfinite(v) for v in result.history["loss"])

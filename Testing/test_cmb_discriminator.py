"""CMB stage 2 discriminator: networks, flip test-time augmentation, teacher and student."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesion_core.cmb import discriminator as disc
from lesion_core.cmb.discriminator import (Stage2TrainConfig, build_network, distil_student,
                                           parameter_count, predict_with_flips,
                                           student_args, teacher_args, train_teacher)
from lesion_core.cmb.distillation import DistillationConfig, distillation_loss
from lesion_core.networks import get_network_class
from lesion_core.training import OptimConfig
from lesion_core.training.augment import AcquisitionAugment

SIZE = disc.PATCH_SIZE


def _config(steps: int, batch_size: int, lr: float = 1e-3, seed: int = 0, **kwargs
            ) -> Stage2TrainConfig:
    optim = OptimConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed, device="cpu",
                        precision="fp32")
    return Stage2TrainConfig(optim=optim, **kwargs)


def _toy_patches(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` patches ``[n, 1, 24, 24, 24]``: half a dark sphere (label 1, microbleed), half a
    dark tube along a random axis (label 0, vessel mimic), off-centre by up to 2 voxels, on
    a bright noisy background."""
    rng = np.random.default_rng(seed)
    grid = np.indices((SIZE,) * 3).astype(np.float32)
    patches = np.empty((n, 1, SIZE, SIZE, SIZE), np.float32)
    labels = np.arange(n) % 2
    for index, label in enumerate(labels):
        centre = (SIZE - 1) / 2 + rng.uniform(-2, 2, 3)
        offset = grid - centre[:, None, None, None]
        if label == 1:
            dark = np.linalg.norm(offset, axis=0) <= rng.uniform(2.5, 3.5)
        else:  # a tube: distance to the line along one axis
            axis = rng.integers(3)
            across = np.delete(offset, axis, axis=0)
            dark = np.linalg.norm(across, axis=0) <= rng.uniform(1.5, 2.5)
        patches[index, 0] = np.where(dark, 0.2, 1.0) + rng.normal(0, 0.1, dark.shape)
    return torch.from_numpy(patches), torch.from_numpy(labels).long()


@pytest.fixture(scope="module")
def trained():
    """A teacher and a student distilled from it on 32 toy patches, plus 16 held-out ones."""
    train_x, train_y = _toy_patches(32, seed=1)
    test_x, test_y = _toy_patches(16, seed=2)
    teacher, teacher_run = train_teacher(train_x, train_y, _config(30, 8, lr=2e-3))
    config = _config(40, 8, lr=3e-3, distillation=DistillationConfig(temperature=2.0, alpha=0.7))
    student, student_run = distil_student(train_x, train_y, teacher, config)
    return dict(train=(train_x, train_y), test=(test_x, test_y), teacher=teacher,
                student=student, teacher_history=teacher_run.history["loss"],
                student_history=student_run.history["loss"], config=config)


@pytest.mark.parametrize("kind, name, args", [
    ("teacher", disc.TEACHER_NAME, teacher_args),
    ("student", disc.STUDENT_NAME, student_args),
])
def test_networks_build_from_allow_listed_json_args(kind, name, args):
    import json

    kwargs = json.loads(json.dumps(args()))  # must survive a metadata.json round trip
    torch.manual_seed(0)
    net = get_network_class(name)(**kwargs).eval()
    assert type(net) is type(build_network(kind))
    with torch.no_grad():
        logits = net(torch.randn(3, 1, SIZE, SIZE, SIZE))
    assert logits.shape == (3, 2)


def test_student_is_at_least_five_times_smaller():
    teacher = parameter_count(build_network("teacher"))
    student = parameter_count(build_network("student"))
    assert student * 5 <= teacher
    # The counts stated in the module docstring.
    assert (teacher, student) == (897_842, 14_307)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        build_network("referee")  # type: ignore[arg-type]


def test_flip_prediction_is_invariant_to_flipping_and_a_probability():
    torch.manual_seed(0)
    net = build_network("student")
    patches = torch.randn(4, 1, SIZE, SIZE, SIZE)
    # Break any symmetry of the input so that a single view would differ from its flips.
    patches[:, :, :6, :3, :2] += 3.0
    reference = predict_with_flips(net, patches)
    assert reference.shape == (4,)
    assert torch.all((reference >= 0) & (reference <= 1))
    single = torch.softmax(net.eval()(torch.flip(patches, (2,))), 1)[:, 1].detach()
    plain = torch.softmax(net(patches), 1)[:, 1].detach()
    assert not torch.allclose(single, plain, atol=1e-6)  # the invariance is not trivial
    for dims in [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]:
        flipped = predict_with_flips(net, torch.flip(patches, dims))
        torch.testing.assert_close(flipped, reference, atol=1e-6, rtol=0)


def test_flip_prediction_restores_training_mode():
    net = build_network("teacher").train()
    predict_with_flips(net, torch.zeros(2, 1, SIZE, SIZE, SIZE))
    assert net.training


def test_teacher_beats_chance_on_held_out_patches(trained):
    test_x, test_y = trained["test"]
    probability = predict_with_flips(trained["teacher"], test_x)
    accuracy = float(((probability > 0.5).long() == test_y).float().mean())
    assert accuracy >= 0.75, accuracy
    history = trained["teacher_history"]
    assert np.mean(history[-5:]) < np.mean(history[:5])


def test_student_lowers_its_distillation_loss_and_agrees_with_teacher(trained):
    train_x, train_y = trained["train"]
    test_x, _ = trained["test"]
    teacher, student = trained["teacher"], trained["student"]
    config = trained["config"]
    torch.manual_seed(config.optim.seed)  # the weights distil_student starts from
    untrained = build_network("student").eval()
    with torch.no_grad():
        teacher_logits = teacher(train_x)
        before = distillation_loss(untrained(train_x), teacher_logits, train_y,
                                   config.distillation)
        after = distillation_loss(student(train_x), teacher_logits, train_y,
                                  config.distillation)
    assert float(after) < float(before)
    history = trained["student_history"]
    assert np.mean(history[-5:]) < np.mean(history[:5])
    agree = ((predict_with_flips(student, test_x) > 0.5)
             == (predict_with_flips(teacher, test_x) > 0.5)).float().mean()
    assert float(agree) >= 0.75, float(agree)


def test_training_is_seeded():
    x, y = _toy_patches(8, seed=3)
    config = _config(2, 4, seed=5)
    _, first = train_teacher(x, y, config)
    _, second = train_teacher(x, y, config)
    assert first.history == second.history


def test_patch_batches_flip_and_augment_from_the_engine_generators():
    from lesion_core.training import SampleContext

    x, y = _toy_patches(6, seed=4)

    def draw(augment, seed=0):
        ctx = SampleContext(0, 5, torch.Generator().manual_seed(seed), np.random.default_rng(seed))
        return disc.PatchBatches(x, y, augment)(ctx)

    plain, labels = draw(AcquisitionAugment.none())
    assert plain.shape == (5, 1, SIZE, SIZE, SIZE) and labels.shape == (5,)
    # Without randomization every patch is a flip of a stored one (clipped to [0, 1.5]).
    stored = x.clamp(0.0, 1.5)
    for patch in plain[:, None]:  # [1, C, I, J, K], the layout the flip sets index
        assert any(torch.equal(torch.flip(patch, dims)[0], stored[i])
                   for i in range(len(x)) for dims in disc._flip_sets())
    light, _ = draw(disc.patch_augment())
    assert torch.equal(light, draw(disc.patch_augment())[0])  # same generators, same batch
    assert float(light.min()) >= 0.0 and float(light.max()) <= 1.5


def test_shifted_patch_batches_move_each_patch_by_at_most_the_shift():
    from lesion_core.training import SampleContext

    x = torch.zeros(1, 1, SIZE, SIZE, SIZE)
    x[0, 0, 12, 12, 12] = 1.0  # one bright voxel at the centre
    y = torch.ones(1, dtype=torch.long)

    def draw(shift, seed=0):
        ctx = SampleContext(0, 16, torch.Generator().manual_seed(seed), np.random.default_rng(seed))
        return disc.PatchBatches(x, y, AcquisitionAugment.none(), shift)(ctx)[0]

    moved = draw(2)
    peaks = [np.unravel_index(int(p.argmax()), p.shape[1:]) for p in moved]
    offsets = np.abs(np.array(peaks) - 12)
    flipped = np.abs(np.array(peaks) - 11)  # a flip maps index 12 to 11 on an even edge
    assert (np.minimum(offsets, flipped) <= 2).all()
    assert len({tuple(p) for p in peaks}) > 3  # the offsets vary between patches
    assert torch.equal(moved, draw(2))  # seeded
    # No shift: every patch keeps its one bright voxel whole.
    assert all(float(p.sum()) == 1.0 for p in draw(0))


def test_a_student_checkpoint_belongs_to_its_teacher(tmp_path):
    from lesion_core.training import CheckpointError

    x, y = _toy_patches(8, seed=3)
    torch.manual_seed(0)
    teacher, other = build_network("teacher"), build_network("teacher")
    distil_student(x, y, teacher, _config(1, 4), checkpoint=tmp_path)
    distil_student(x, y, teacher, _config(1, 4), checkpoint=tmp_path)  # finished: returned
    with pytest.raises(CheckpointError, match="other settings"):
        distil_student(x, y, other, _config(1, 4), checkpoint=tmp_path)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        Stage2TrainConfig(optim=OptimConfig(batch_size=1))
    with pytest.raises(ValueError):
        train_teacher(torch.zeros(4, 1, SIZE, SIZE, SIZE), torch.zeros(3).long(), _config(1, 2))
    with pytest.raises(ValueError):
        predict_with_flips(build_network("student"), torch.zeros(1, SIZE, SIZE, SIZE))

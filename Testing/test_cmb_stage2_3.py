"""CMB stage 3 clean-up rules and the stage 2 distillation loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from scipy import ndimage

from lesion_core.cmb.cleanup import (CleanupConfig, blob_in_image, cleanup, component_shape,
                                     near_mask)
from lesion_core.cmb.distillation import DistillationConfig, distillation_loss, soft_targets

SPACING = (1.0, 1.0, 1.0)


def _sphere(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def test_sphere_kept_and_each_mimic_rejected_for_its_reason():
    shape = (48, 48, 48)
    candidates = _sphere(shape, (24, 24, 24), 2.5)                 # ~5 mm bleed: kept
    candidates[5:25, 8, 8] = True                                   # vessel: a 20 mm tube
    candidates[5:25, 9, 8] = True
    candidates |= _sphere(shape, (36, 36, 12), 7.0)                 # 14 mm blob: too large
    candidates[40, 5, 40] = True                                    # one voxel: too small
    candidates |= _sphere(shape, (10, 40, 40), 2.5)                 # bleed-like, beside air
    brain = np.zeros(shape, bool)
    brain[2:46, 2:46, 2:46] = True
    air = np.zeros(shape, bool)
    air[10, 43:, 40] = True                                         # sinus 3 mm from it
    kept, records = cleanup(candidates, SPACING, brain, air)
    reasons = sorted(r["reason"] or "kept" for r in records)
    assert reasons == ["elongated", "kept", "near_air", "too_large", "too_small"]
    assert kept.max() == 1 and kept[24, 24, 24] == 1 and kept[10, 40, 40] == 0
    outside = np.zeros(shape, bool)
    _, records = cleanup(_sphere(shape, (24, 24, 24), 2.5), SPACING, outside, None)
    assert [r["reason"] for r in records] == ["outside_brain"]
    # A centre 3 mm from the brain mask is inside its 4 mm margin, one 6 mm away is not.
    edge = np.zeros(shape, bool)
    edge[27:, :, :] = True
    _, records = cleanup(_sphere(shape, (24, 24, 24), 2.5), SPACING, edge, None)
    assert [r["reason"] for r in records] == [None]
    _, records = cleanup(_sphere(shape, (21, 24, 24), 2.5), SPACING, edge, None)
    assert [r["reason"] for r in records] == ["outside_brain"]
    # The margin is in mm: two 3 mm slices away is 6 mm.
    slab = np.zeros((9, 9, 9), bool)
    slab[:, :, 6] = True
    assert not near_mask(slab, (4, 4, 4), (1.0, 1.0, 3.0), 4.0)
    assert near_mask(slab, (4, 4, 4), (1.0, 1.0, 3.0), 6.0)
    tight = CleanupConfig(brain_margin_mm=0.0)
    _, records = cleanup(_sphere(shape, (24, 24, 24), 2.5), SPACING, edge, None, tight)
    assert [r["reason"] for r in records] == ["outside_brain"]


def test_shape_measures_in_mm_on_anisotropic_grids():
    ball = _sphere((30, 30, 30), (15, 15, 15), 3.0)
    shape = component_shape(ball, SPACING)
    assert abs(shape.diameter_mm - 6.0) < 0.4 and shape.elongation < 1.15
    # The same ball sampled with 2 mm slices keeps its size and roundness in mm.
    coarse = ball[:, :, ::2]
    shape = component_shape(coarse, (1.0, 1.0, 2.0))
    assert abs(shape.diameter_mm - 6.0) < 0.6 and shape.elongation < 1.3
    rod = np.zeros((30, 30, 30), bool)
    rod[5:25, 14:16, 14:16] = True
    assert component_shape(rod, SPACING).elongation > 5
    config = CleanupConfig(max_elongation=1e9)                     # the rule can be relaxed
    assert cleanup(rod, SPACING, config=config)[1][0]["reason"] is None


def test_size_is_measured_on_the_dark_blob_not_on_the_thresholded_component():
    shape = (48, 48, 48)
    rng = np.random.default_rng(5)
    image = np.ones(shape, np.float32)
    image[_sphere(shape, (14, 14, 24), 4.5)] = 0.2          # 9 mm bleed
    image[_sphere(shape, (34, 34, 24), 2.0)] = 0.3          # 4 mm bleed
    image = ndimage.gaussian_filter(image, 0.7) + rng.normal(0, 0.03, shape).astype(np.float32)
    candidates = _sphere(shape, (14, 14, 24), 5.6)          # the blurred probability: 11 mm
    candidates[34, 34, 24] = True                           # a faint one: one voxel
    candidates[34, 10, 40] = True                           # one voxel on flat tissue
    _, on_components = cleanup(candidates, SPACING)
    _, on_image = cleanup(candidates, SPACING, image=image)
    assert [r["reason"] for r in on_components] == ["too_large", "too_small", "too_small"]
    # Components are numbered in raster order: the 9 mm bleed, flat tissue, the 4 mm one.
    assert [r["reason"] for r in on_image] == [None, "too_small", None]
    assert abs(on_image[0]["diameter_mm"] - 9.0) < 1.0 and abs(on_image[2]["diameter_mm"] - 4.0) < 1.0
    # Nothing darker than its surroundings: no blob, the component's own shape is judged.
    assert blob_in_image(np.ones(shape, np.float32), (24, 24, 24), SPACING, CleanupConfig()) is None


def test_distillation_soft_term_is_cross_entropy_to_soft_targets():
    torch.manual_seed(0)
    student, teacher = torch.randn(16, 2, requires_grad=True), torch.randn(16, 2)
    t = 4.0
    loss = distillation_loss(student, teacher, None, DistillationConfig(temperature=t, alpha=1))
    targets = soft_targets(teacher, t)
    cross_entropy = -(targets * F.log_softmax(student / t, dim=1)).sum(1).mean() * t * t
    entropy = -(targets * targets.log()).sum(1).mean() * t * t
    assert torch.allclose(loss, cross_entropy - entropy, atol=1e-5)
    (grad_loss,) = torch.autograd.grad(loss, student)
    (grad_ce,) = torch.autograd.grad(cross_entropy, student)
    assert torch.allclose(grad_loss, grad_ce, atol=1e-6)
    assert float(distillation_loss(teacher.clone(), teacher, None,
                                   DistillationConfig(alpha=1))) == pytest.approx(0, abs=1e-6)
    labels = torch.randint(0, 2, (16,))
    mixed = distillation_loss(student, teacher, labels, DistillationConfig(temperature=t, alpha=0.25))
    assert torch.allclose(mixed, 0.25 * loss + 0.75 * F.cross_entropy(student, labels))
    with pytest.raises(ValueError):
        DistillationConfig(temperature=0)


def test_a_student_trained_a_few_steps_moves_towards_the_teacher():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    teacher = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    student = torch.nn.Linear(8, 2)
    labels = teacher(x).argmax(1)
    config = DistillationConfig(temperature=2.0, alpha=0.8)

    def gap():
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(student(x) / 2, 1),
                                  soft_targets(teacher(x), 2), reduction="batchmean"))

    before = gap()
    optimiser = torch.optim.Adam(student.parameters(), lr=0.05)
    for _ in range(30):
        loss = distillation_loss(student(x), teacher(x), labels, config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert gap() < 0.5 * before

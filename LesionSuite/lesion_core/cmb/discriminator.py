"""Stage 2 of the CMB detector: the patch discriminator (microbleed vs mimic).

Each candidate from stage 1 is judged on a 24^3 voxel patch centred on it. A teacher
network is trained on the labelled patches; a much smaller student is then distilled from
it (:mod:`.distillation`) so that the shipped model is fast enough to run on every
candidate on a CPU.

Both networks are MONAI classes on LesionSuite's bundle allow-list
(:mod:`lesion_core.networks`), rebuilt from the JSON-able keyword arguments of
:func:`teacher_args` / :func:`student_args`:

* teacher: ``"monai.ResNet"``, basic blocks, one block per stage, widths 16-32-64-128:
  897,842 parameters (measured with :func:`parameter_count`);
* student: ``"monai.Classifier"``, two strided residual stages of 8 and 16 channels:
  14,307 parameters, about 1/63 of the teacher.

Layouts: patches ``[N, 1, 24, 24, 24]`` (float, intensities normalised by the caller),
logits ``[N, 2]`` (class 0: mimic, class 1: microbleed), labels ``[N]`` (int64).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.nn import functional as F

from ..networks import get_network_class
from .distillation import DistillationConfig, distillation_loss

#: Edge of the cubic patch (voxels) both networks are built for.
PATCH_SIZE = 24
#: Class count: 0 mimic, 1 microbleed.
NUM_CLASSES = 2

TEACHER_NAME = "monai.ResNet"
STUDENT_NAME = "monai.Classifier"

#: The three spatial axes of a ``[N, C, I, J, K]`` tensor.
_SPATIAL_DIMS = (2, 3, 4)


def teacher_args() -> dict[str, Any]:
    """Keyword arguments of the teacher ``monai.ResNet`` (JSON-able; ResNet names the
    input channels ``n_input_channels`` and the outputs ``num_classes``)."""
    return {
        "block": "basic",
        "layers": [1, 1, 1, 1],
        "block_inplanes": [16, 32, 64, 128],
        "spatial_dims": 3,
        "n_input_channels": 1,
        # A 7-voxel stem would blur a 2-5 voxel bleed into its surroundings: keep it small.
        "conv1_t_size": 3,
        "conv1_t_stride": 1,
        "num_classes": NUM_CLASSES,
    }


def student_args() -> dict[str, Any]:
    """Keyword arguments of the student ``monai.Classifier`` (JSON-able). ``in_shape`` is
    ``[C, I, J, K]`` because the classifier ends in a dense layer sized for it."""
    return {
        "in_shape": [1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE],
        "classes": NUM_CLASSES,
        "channels": [8, 16],
        "strides": [2, 2],
        "num_res_units": 1,
    }


def build_network(kind: Literal["teacher", "student"]) -> torch.nn.Module:
    """A freshly initialised teacher or student, built through the bundle allow-list so that
    the same class and arguments are what a saved bundle would name."""
    if kind == "teacher":
        return get_network_class(TEACHER_NAME)(**teacher_args())
    if kind == "student":
        return get_network_class(STUDENT_NAME)(**student_args())
    raise ValueError(f"kind must be 'teacher' or 'student', got {kind!r}")


def parameter_count(net: torch.nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _flip_sets() -> list[tuple[int, ...]]:
    """All 8 subsets of the spatial axes: the identity (empty) and the 7 flips."""
    return [dims for r in range(4) for dims in itertools.combinations(_SPATIAL_DIMS, r)]


def predict_with_flips(net: torch.nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Microbleed probability ``[N]`` in [0, 1] for ``patches`` ``[N, 1, I, J, K]``.

    Softmax outputs are averaged over the identity and the 7 combinations of flips along
    I, J and K. The flips form a group, so flipping the input only permutes the 8 views and
    the average is exactly invariant to it (up to float rounding). The network is put in
    eval mode (batch norm uses its running statistics) and no gradients are kept; the
    previous train/eval mode is restored afterwards.
    """
    if patches.ndim != 5:
        raise ValueError(f"patches must be [N, C, I, J, K], got shape {tuple(patches.shape)}")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            total = torch.zeros(patches.shape[0], dtype=torch.float64)
            views = _flip_sets()
            for dims in views:
                view = torch.flip(patches, dims) if dims else patches
                total += F.softmax(net(view).double(), dim=1)[:, 1].cpu()
            return (total / len(views)).to(torch.float32)
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class Stage2TrainConfig:
    """Optimisation of the teacher or the student.

    ``steps`` Adam updates of ``batch_size`` patches drawn with replacement, learning rate
    ``lr``; ``seed`` fixes the initial weights, the draws and the augmentation;
    ``distillation`` is only used by :func:`distil_student`.
    """

    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0
    distillation: DistillationConfig = field(default_factory=DistillationConfig)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        # Batch norm in the teacher cannot normalise a batch of one.
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")


def _check_data(patches: torch.Tensor, labels: torch.Tensor) -> None:
    if patches.ndim != 5 or patches.shape[1] != 1:
        raise ValueError(f"patches must be [N, 1, I, J, K], got shape {tuple(patches.shape)}")
    if labels.shape != (patches.shape[0],):
        raise ValueError(f"labels must be [N] with N={patches.shape[0]}, "
                         f"got shape {tuple(labels.shape)}")


def _batches(patches: torch.Tensor, labels: torch.Tensor, config: Stage2TrainConfig,
             generator: torch.Generator):
    """``config.steps`` random batches, each patch flipped along a random subset of axes.

    Bleeds have no preferred orientation, so flips are label-preserving augmentation
    (and match the views :func:`predict_with_flips` averages over).
    """
    n = patches.shape[0]
    for _ in range(config.steps):
        index = torch.randint(0, n, (config.batch_size,), generator=generator)
        batch = patches[index].clone()
        flips = torch.rand(config.batch_size, 3, generator=generator) < 0.5
        for row in range(config.batch_size):
            dims = [d - 1 for d, f in zip(_SPATIAL_DIMS, flips[row].tolist()) if f]
            if dims:  # per-sample tensor is [C, I, J, K]: spatial axes shift down by one
                batch[row] = torch.flip(batch[row], dims)
        yield batch, labels[index]


def train_teacher(patches: torch.Tensor, labels: torch.Tensor,
                  config: Stage2TrainConfig = Stage2TrainConfig(),
                  init: torch.nn.Module | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Train a teacher (or fine-tune ``init``) with cross-entropy on ``patches``
    ``[N, 1, 24, 24, 24]`` and ``labels`` ``[N]``. Returns the network (in eval mode) and
    the loss of every step."""
    _check_data(patches, labels)
    torch.manual_seed(config.seed)  # initial weights
    net = init if init is not None else build_network("teacher")
    net.train()
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    for batch, target in _batches(patches, labels.long(), config, generator):
        optimiser.zero_grad()
        loss = F.cross_entropy(net(batch), target)
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
    return net.eval(), history


def distil_student(patches: torch.Tensor, labels: torch.Tensor, teacher: torch.nn.Module,
                   config: Stage2TrainConfig = Stage2TrainConfig(),
                   init: torch.nn.Module | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Distil a student from ``teacher`` with :func:`.distillation.distillation_loss`
    (``config.distillation``). The teacher sees the same augmented batch as the student, in
    eval mode and without gradients, so its soft targets describe exactly what the student
    is shown. ``init``: a student to fine-tune instead of a fresh one. Returns the student
    (in eval mode) and the loss of every step."""
    _check_data(patches, labels)
    torch.manual_seed(config.seed)
    student = init if init is not None else build_network("student")
    student.train()
    was_training = teacher.training
    teacher.eval()
    optimiser = torch.optim.Adam(student.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    try:
        for batch, target in _batches(patches, labels.long(), config, generator):
            with torch.no_grad():
                teacher_logits = teacher(batch)
            optimiser.zero_grad()
            loss = distillation_loss(student(batch), teacher_logits, target,
                                     config.distillation)
            loss.backward()
            optimiser.step()
            history.append(float(loss.detach()))
    finally:
        teacher.train(was_training)
    return student.eval(), history

"""Stage 2 of the CMB detector: the patch discriminator (microbleed vs mimic).

Each candidate from stage 1 is judged on a 24^3 voxel patch centred on it. A teacher
network is trained on the labelled patches; a much smaller student is then distilled from
it (:mod:`.distillation`) so that the shipped model is fast enough to run on every
candidate on a CPU. Both train through :func:`lesion_core.training.run_training` on
flipped, lightly randomized patches (:class:`PatchBatches`, :func:`patch_augment`).

Both networks are MONAI classes on LesionSuite's bundle allow-list
(:mod:`lesion_core.networks`), rebuilt from the JSON-able keyword arguments of
:func:`teacher_args` / :func:`student_args`:

* teacher: ``"monai.ResNet"``, basic blocks, one block per stage, widths 16-32-64-128:
  897,842 parameters (measured with :func:`parameter_count`);
* student: ``"monai.Classifier"``, strided residual stages of ``student_channels`` (model
  config): 16-32-64 in the shipped model, 142,788 parameters, about 1/6 of the teacher;
  8-16 (14,307, 1/63) in bundles that do not record a width.

Layouts: patches ``[N, 1, 24, 24, 24]`` (float, intensities normalised by the caller),
logits ``[N, 2]`` (class 0: mimic, class 1: microbleed), labels ``[N]`` (int64).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.nn import functional as F

from ..device import select_device
from ..networks import get_network_class
from ..progress import Progress
from ..training import OptimConfig, SampleContext, TrainResult, autocast, run_training
from ..training.augment import AcquisitionAugment, Augmenter
from .candidates import CLIP_MAX
from .distillation import DistillationConfig, distillation_loss

#: Edge of the cubic patch (voxels) both networks are built for.
PATCH_SIZE = 24
#: Class count: 0 mimic, 1 microbleed.
NUM_CLASSES = 2

TEACHER_NAME = "monai.ResNet"
STUDENT_NAME = "monai.Classifier"
#: Widths of the student's stages when a bundle does not record them (those saved before
#: the width was configurable); new trainings default to 16-32-64 (``CMBTrainConfig``).
DEFAULT_STUDENT_CHANNELS = (8, 16)

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


def student_args(channels: tuple[int, ...] = DEFAULT_STUDENT_CHANNELS) -> dict[str, Any]:
    """Keyword arguments of the student ``monai.Classifier`` (JSON-able): one residual
    stage of stride 2 per entry of ``channels``. ``in_shape`` is ``[C, I, J, K]`` because
    the classifier ends in a dense layer sized for it."""
    if not channels or any(int(c) < 1 for c in channels) or len(channels) > 4:
        raise ValueError(f"student channels must be 1-4 positive widths, got {channels!r}")
    return {
        "in_shape": [1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE],
        "classes": NUM_CLASSES,
        "channels": [int(c) for c in channels],
        "strides": [2] * len(channels),
        "num_res_units": 1,
    }


def build_network(kind: Literal["teacher", "student"],
                  student_channels: tuple[int, ...] = DEFAULT_STUDENT_CHANNELS
                  ) -> torch.nn.Module:
    """A freshly initialised teacher or student (of ``student_channels``), built through
    the bundle allow-list so that the same class and arguments are what a saved bundle
    would name."""
    if kind == "teacher":
        return get_network_class(TEACHER_NAME)(**teacher_args())
    if kind == "student":
        return get_network_class(STUDENT_NAME)(**student_args(student_channels))
    raise ValueError(f"kind must be 'teacher' or 'student', got {kind!r}")


def parameter_count(net: torch.nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def weights_digest(net: torch.nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers: the identity of trained weights."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _flip_sets() -> list[tuple[int, ...]]:
    """All 8 subsets of the spatial axes: the identity (empty) and the 7 flips."""
    return [dims for r in range(4) for dims in itertools.combinations(_SPATIAL_DIMS, r)]


def predict_with_flips(net: torch.nn.Module, patches: torch.Tensor, precision: str = "auto"
                       ) -> torch.Tensor:
    """Microbleed probability ``[N]`` in [0, 1] for ``patches`` ``[N, 1, I, J, K]``.

    Softmax outputs are averaged over the identity and the 7 combinations of flips along
    I, J and K. The flips form a group, so flipping the input only permutes the 8 views and
    the average is exactly invariant to it (up to float rounding). The network is put in
    eval mode (batch norm uses its running statistics) and run on its own device under
    ``precision`` (``auto``: bf16 autocast where the hardware has it), without gradients;
    the previous train/eval mode is restored afterwards.
    """
    if patches.ndim != 5:
        raise ValueError(f"patches must be [N, C, I, J, K], got shape {tuple(patches.shape)}")
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), autocast(precision, device):
            total = torch.zeros(patches.shape[0], dtype=torch.float64)
            views = _flip_sets()
            on_device = patches.to(device)
            # All views in one forward pass: in eval mode (batch norm on its running
            # statistics) a sample's output does not depend on its batch, and one pass of
            # 8N patches takes a fraction of the time of 8 passes of N (4x on 2 CPU cores).
            batch = torch.cat([torch.flip(on_device, dims) if dims else on_device
                               for dims in views])
            outputs = F.softmax(net(batch).double(), dim=1)[:, 1].cpu()
            for view in outputs.reshape(len(views), -1):
                total += view
            return (total / len(views)).to(torch.float32)
    finally:
        net.train(was_training)


def patch_augment() -> AcquisitionAugment:
    """Light acquisition randomization of stage 2 patches (24 mm cubes of the normalised
    magnitude): the discriminator judges a bleed's shape against a vessel's, so nothing that
    reshapes it strongly. Rician-mostly noise (p 0.5, SD up to 0.04), gamma 0.85-1.2
    (p 0.3), thick slices 1-2 mm (p 0.2: more would stretch a 2 mm bleed towards a vessel
    segment), scale 0.9-1.1; no bias field (a 24 mm patch sees only a slope of it, which
    the scale covers), no histogram shift, Gibbs ringing or low resolution."""
    return AcquisitionAugment(bias_p=0.0, noise_p=0.5, noise_sd=0.04, rician_p=0.7,
                              gamma_p=0.3, gamma=(0.85, 1.2), histogram_p=0.0, gibbs_p=0.0,
                              lowres_p=0.0, thick_p=0.2, thick_mm=(1.0, 2.0), scale=(0.9, 1.1))


@dataclass(frozen=True)
class Stage2TrainConfig:
    """How the teacher or the student is trained (recorded in the training report only).

    ``optim``: steps, learning rate, patches per step (drawn with replacement), seed (initial
    weights, draws, augmentation), device, precision; ``augment``: acquisition
    randomization of each patch after its random flips (:func:`patch_augment`);
    ``distillation`` is only used by :func:`distil_student`; ``shift_voxels``: each patch
    is moved by up to this many voxels along each axis (edges repeated), as a candidate's
    centre at prediction is off the bleed's by about as much; 0: no shift.
    """

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        steps=200, lr=1e-3, batch_size=16))
    augment: AcquisitionAugment = field(default_factory=patch_augment)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    shift_voxels: int = 0

    def __post_init__(self) -> None:
        # Batch norm in the teacher cannot normalise a batch of one.
        if self.optim.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.optim.batch_size}")


def _check_data(patches: torch.Tensor, labels: torch.Tensor) -> None:
    if patches.ndim != 5 or patches.shape[1] != 1:
        raise ValueError(f"patches must be [N, 1, I, J, K], got shape {tuple(patches.shape)}")
    if labels.shape != (patches.shape[0],):
        raise ValueError(f"labels must be [N] with N={patches.shape[0]}, "
                         f"got shape {tuple(labels.shape)}")


class PatchBatches:
    """The engine's sample function for stage 2: ``ctx.batch_size`` patches drawn with
    replacement (``ctx.generator``), each moved by up to ``shift`` voxels per axis (edges
    repeated), flipped along a random subset of axes and then randomized by ``augment``
    (``ctx.rng``), with their labels.

    Bleeds have no preferred orientation, so flips are label-preserving augmentation
    (and match the views :func:`predict_with_flips` averages over).
    """

    def __init__(self, patches: torch.Tensor, labels: torch.Tensor, augment: AcquisitionAugment,
                 shift: int = 0):
        _check_data(patches, labels)
        self.patches, self.labels = patches.float(), labels.long()
        self.augmenter = Augmenter(augment, 1.0)
        self.shift = int(shift)

    def _shifted(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``batch`` ``[B, 1, I, J, K]`` with each patch moved by its own random offset."""
        s = self.shift
        padded = torch.nn.functional.pad(batch, (s,) * 6, mode="replicate")
        starts = torch.randint(0, 2 * s + 1, (batch.shape[0], 3), generator=generator).tolist()
        i, j, k = batch.shape[2:]
        return torch.stack([padded[row, :, a:a + i, b:b + j, c:c + k]
                            for row, (a, b, c) in enumerate(starts)])

    def __call__(self, ctx: SampleContext) -> tuple[torch.Tensor, torch.Tensor]:
        n, size = self.patches.shape[0], ctx.batch_size
        index = torch.randint(0, n, (size,), generator=ctx.generator)
        batch = self.patches[index].clone()
        if self.shift > 0:  # drawn only then: unshifted runs keep their random stream
            batch = self._shifted(batch, ctx.generator)
        flips = torch.rand(size, 3, generator=ctx.generator) < 0.5
        for row in range(size):
            # per-sample tensor is [C, I, J, K]: spatial axes shift down by one
            dims = [d - 1 for d, f in zip(_SPATIAL_DIMS, flips[row].tolist()) if f]
            patch = torch.flip(batch[row], dims) if dims else batch[row]
            batch[row] = self.augmenter(patch, ctx.rng).clamp_(0.0, CLIP_MAX)
        return batch, self.labels[index]


def _data_fingerprint(config: Stage2TrainConfig, labels: torch.Tensor,
                      init: torch.nn.Module | None) -> dict[str, Any]:
    """What a checkpoint must match besides the optimiser settings: augmentation,
    distillation, the example set (its size and positives) and the starting weights."""
    # No shift leaves the fingerprint as it was before the option: older checkpoints resume.
    settings = {k: v for k, v in asdict(config).items()
                if k != "optim" and not (k == "shift_voxels" and not v)}
    return {"settings": settings, "examples": int(len(labels)),
            "positives": int(labels.sum()),
            "init": weights_digest(init) if init is not None else None}


def train_teacher(patches: torch.Tensor, labels: torch.Tensor,
                  config: Stage2TrainConfig = Stage2TrainConfig(),
                  init: torch.nn.Module | None = None, checkpoint: str | Path | None = None,
                  progress: Progress | None = None) -> tuple[torch.nn.Module, TrainResult]:
    """Train a teacher (or fine-tune ``init``, in place) with cross-entropy on ``patches``
    ``[N, 1, 24, 24, 24]`` and ``labels`` ``[N]``; ``checkpoint``: its checkpoint folder.
    Returns the network (eval mode, CPU) and the engine's :class:`TrainResult`."""
    def loss(net, batch, ctx):
        x, y = batch
        return {"loss": F.cross_entropy(net(x).float(), y)}

    return run_training(init if init is not None else (lambda: build_network("teacher")),
                        PatchBatches(patches, labels, config.augment, config.shift_voxels), loss,
                        config.optim,
                        checkpoint_dir=checkpoint, progress=progress, label="teacher",
                        fingerprint=_data_fingerprint(config, labels, init))


def distil_student(patches: torch.Tensor, labels: torch.Tensor, teacher: torch.nn.Module,
                   config: Stage2TrainConfig = Stage2TrainConfig(),
                   init: torch.nn.Module | None = None, checkpoint: str | Path | None = None,
                   progress: Progress | None = None,
                   channels: tuple[int, ...] = DEFAULT_STUDENT_CHANNELS
                   ) -> tuple[torch.nn.Module, TrainResult]:
    """Distil a student of stage widths ``channels`` from ``teacher`` with :func:`.distillation.distillation_loss`
    (``config.distillation``). A frozen copy of the teacher, on the training device, sees
    the same augmented batch as the student, in eval mode and without gradients, so its
    soft targets describe exactly what the student is shown (``teacher`` itself is left
    as it is). ``init``: a student to fine-tune (in place) instead of a fresh one. Returns
    the student (eval mode, CPU) and the engine's :class:`TrainResult`."""
    frozen = copy.deepcopy(teacher).to(select_device(config.optim.device)).eval()
    frozen.requires_grad_(False)

    def loss(net, batch, ctx):
        x, y = batch
        with torch.no_grad():
            soft = frozen(x).float()
        return {"loss": distillation_loss(net(x).float(), soft, y, config.distillation)}

    # A resumed student must go on learning from the same teacher.
    return run_training(init if init is not None
                        else (lambda: build_network("student", channels)),
                        PatchBatches(patches, labels, config.augment, config.shift_voxels), loss,
                        config.optim, checkpoint_dir=checkpoint, progress=progress,
                        label="student",
                        fingerprint={**_data_fingerprint(config, labels, init),
                                     "teacher": weights_digest(teacher),
                                     "channels": [int(c) for c in channels]})

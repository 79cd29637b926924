"""Toy data and a file-open recorder shared by the ICHWeakSeg test suites."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import torch

from lesion_core.ich.config import CAMConfig, ClassifierConfig, ICHConfig, SegmenterConfig, SliceGrid, Window
from lesion_core.ich.data import WeakSample
from lesion_core.ich.preprocess import SliceStack
from lesion_core.training import OptimConfig, run_training
from lesion_core.volume import Volume

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    # "open" is raised by every Python-level file open (builtins, io, gzip through them).
    if event == "open" and _OPENED is not None and args and args[0] is not None:
        path = args[0]
        _OPENED.append(os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path))


sys.addaudithook(_audit)  # hooks cannot be removed; it records only inside recording()


@contextlib.contextmanager
def recording():
    """Collect every path Python opens inside the block (yields the growing list)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


TOY = ICHConfig(grid=SliceGrid(size=32, pixel_mm=4.0),
                classifier=ClassifierConfig(channels=(8, 16), strides=(2, 2), gru_hidden=8),
                cam=CAMConfig(threshold=0.4), segmenter=SegmenterConfig(channels=(8, 16), num_res_units=1))


def toy_ct(seed: int, blood_slices=(), shape=(40, 40, 8), affine=None) -> Volume:
    """A head-like CT in HU: air, a 900 HU skull ring, 30 HU brain, 70 HU blood disks."""
    rng = np.random.default_rng(seed)
    i, j = np.mgrid[:shape[0], :shape[1]]
    r = np.hypot(i - shape[0] / 2, j - shape[1] / 2)
    hu = np.full(shape, -1000.0, np.float32)
    hu[r < 13] = 900.0  # inside the 128 mm field of view of TOY
    hu[r < 11] = 30.0
    for k in blood_slices:
        ci, cj = rng.integers(16, 25, 2)
        hu[np.hypot(i - ci, j - cj) < 3.5, k] = 70.0
    hu += rng.normal(0, 3, shape).astype(np.float32)
    affine = np.diag([4.0, 4.0, 5.0, 1.0]) if affine is None else affine
    return Volume(np.round(hu).astype(np.int16), affine, meta={"modality": "CT"})


#: A window that maps toy values -2..4 linearly onto the input range 0..1.
TOY_WINDOW = Window("toy", 1.0, 6.0)


def toy_sample(values: np.ndarray, slice_targets, scan_targets, name="toy") -> WeakSample:
    """A WeakSample around toy values ``[S, H, W]`` stored as the stack's HU (identity
    geometry, one channel: :data:`TOY_WINDOW`)."""
    values = np.asarray(values, np.float32)
    s, h, w = values.shape
    stack = SliceStack((TOY_WINDOW,), values, np.ones((s, h, w), bool), np.eye(4),
                       np.eye(4), (h, w, s), 2, np.arange(s))
    return WeakSample(name, stack, torch.as_tensor(slice_targets, dtype=torch.float32),
                      torch.as_tensor(scan_targets, dtype=torch.float32))


def blob_stacks(n: int, seed: int, slices=8, size=16, p=0.4, radius=2.5):
    """Noise stacks ``[n, S, 1, H, W]`` with a bright disk on random slices; ``present [n, S]``."""
    gen = np.random.default_rng(seed)
    x = gen.normal(0, 0.3, (n, slices, 1, size, size)).astype(np.float32)
    present = gen.random((n, slices)) < p
    yy, xx = np.mgrid[:size, :size]
    centres = gen.integers(4, size - 4, (n, slices, 2))
    for b, s in zip(*np.nonzero(present)):
        x[b, s, 0][np.hypot(yy - centres[b, s, 0], xx - centres[b, s, 1]) < radius] += 2.0
    return torch.from_numpy(x), present, centres


def fit(net, x, y, steps, lr=1e-2, batch=8, seed=0):
    """Train a per-slice classifier on stacks ``x`` and slice targets ``y`` with the
    training engine (fp32, CPU): ``batch`` stacks per step, cycling through ``x`` in order."""
    def sample(ctx):
        return _cycle(x, ctx), _cycle(y, ctx)

    def loss(network, batch_xy, ctx):
        inputs, targets = batch_xy
        return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(
            network(inputs)[..., 0], targets)}

    config = OptimConfig(steps=steps, lr=lr, batch_size=batch, seed=seed, device="cpu",
                         precision="fp32")
    return run_training(net, sample, loss, config, prefetch=False)[0]


def _cycle(data: torch.Tensor, ctx) -> torch.Tensor:
    return data[torch.arange(ctx.step * ctx.batch_size, (ctx.step + 1) * ctx.batch_size)
                % data.shape[0]]

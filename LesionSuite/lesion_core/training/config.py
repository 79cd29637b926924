"""How a network is optimised: one config for every model the project trains.

Architecture lives in each task's model config and is saved in its bundle; these settings
say how the weights were reached and are recorded in the bundle's training report only.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("constant", "cosine", "warmup_cosine")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings for :func:`lesion_core.training.run_training`.

    Args:
        steps: optimiser steps in the whole run (a resumed run counts from its checkpoint).
        lr: peak learning rate of Adam(W).
        schedule: ``constant``, ``cosine`` (decay to ``min_lr_fraction`` x lr over
            ``steps``) or ``warmup_cosine`` (linear warm-up over ``warmup_steps``, then
            cosine).
        warmup_steps: length of the warm-up (``warmup_cosine`` only).
        min_lr_fraction: the learning rate at the end of a cosine schedule, relative to lr.
        weight_decay: decoupled weight decay (AdamW); 0 is plain Adam.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        batch_size: samples per step (the task's sampler reads it).
        seed: seeds the initial weights, every random draw of the sampler and augmentation.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto`` (bf16 autocast where the hardware has bf16 units), ``fp32``
            or ``bf16``.
        deterministic: ask PyTorch for deterministic kernels (warn-only where none exist).
        checkpoint_every_s: seconds between checkpoints when a checkpoint folder is given.
        checkpoint_every_steps: also checkpoint every N steps (0: by time only).
        log_every: steps between progress messages.
    """

    steps: int = 1000
    lr: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_fraction: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    batch_size: int = 4
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = False
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0
    log_every: int = 10

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps >= 0, batch_size >= 1 and lr > 0 are required")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")

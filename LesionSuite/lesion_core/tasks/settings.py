"""The training settings every task's ``fit`` and ``finetune`` take from the caller.

:class:`TrainSettings` holds what ``lesion-suite <task> train`` has in common for every
task (the optimisation options, where the networks train, checkpoints and the cache); a
task applies them onto the defaults of each network it trains with :meth:`TrainSettings.optim`,
so a value left unset keeps that network's own default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the training package imports torch
    from ..training import OptimConfig


@dataclass(frozen=True)
class TrainSettings:
    """Shared training settings (None: the network's own default).

    Attributes:
        steps, lr, batch_size: optimiser steps, peak learning rate, samples per step.
        seed: seeds weights, sampling and augmentation.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``: where every network
            trains.
        precision: ``auto``, ``fp32`` or ``bf16``.
        checkpoint: folder of resumable checkpoints (one subfolder per network where a
            task trains several); rerunning the same training resumes.
        checkpoint_minutes: minutes between checkpoints.
        cache: folder of prepared training data kept between runs (None: the task's
            default, which may be a folder in ``checkpoint``).
    """

    steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    checkpoint: Path | None = None
    checkpoint_minutes: float = 5.0
    cache: Path | None = None

    @classmethod
    def from_args(cls, args: Any) -> "TrainSettings":
        """From parsed command-line options (missing ones keep their defaults)."""
        given = {name: getattr(args, name) for name in cls.__dataclass_fields__
                 if getattr(args, name, None) is not None}
        for name in ("checkpoint", "cache"):
            if name in given:
                given[name] = Path(given[name])
        return cls(**given)

    def shared(self) -> dict[str, Any]:
        """The settings every network of a run takes, whatever its own defaults: seed,
        device, precision and checkpoint interval (:class:`OptimConfig` fields)."""
        return {"seed": self.seed, "device": self.device, "precision": self.precision,
                "checkpoint_every_s": 60.0 * self.checkpoint_minutes}

    def optim(self, defaults: "OptimConfig", steps: int | None = None) -> "OptimConfig":
        """``defaults`` with these settings applied (``steps``: this network's own step
        count, which wins over :attr:`steps`; 0 keeps a network given to start from)."""
        given = {"steps": self.steps if steps is None else steps, "lr": self.lr,
                 "batch_size": self.batch_size}
        return replace(defaults, **{k: v for k, v in given.items() if v is not None},
                       **self.shared())

    def subfolder(self, name: str) -> Path | None:
        """The checkpoint folder of one network (None without checkpoints)."""
        return None if self.checkpoint is None else self.checkpoint / name

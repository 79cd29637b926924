"""Training: one engine (:func:`run_training`) and one config (:class:`OptimConfig`) for
every model LesionSuite trains, with checkpoints that resume exactly and bf16 autocast
where the hardware has it."""

from .checkpoint import CheckpointError, load_checkpoint
from .config import OptimConfig
from .engine import SampleContext, StepContext, TrainResult, run_training
from .precision import autocast, cpu_has_bf16_units, resolve_precision
from .sampling import EpochOrder

__all__ = ["CheckpointError", "EpochOrder", "OptimConfig", "SampleContext", "StepContext", "TrainResult",
           "autocast", "cpu_has_bf16_units", "load_checkpoint", "resolve_precision",
           "run_training"]

"""The one training loop every LesionSuite model goes through.

A task supplies two functions and the engine does the rest:

- ``sample(ctx: SampleContext) -> batch``: draw one batch, using only ``ctx.generator``
  (torch) and ``ctx.rng`` (NumPy) for randomness and keeping any position of its own in a
  ``state`` object (``state_dict``/``load_state_dict``). It runs in a prefetch thread, one
  batch ahead of the network, so reading and augmenting overlap the step.
- ``loss(model, batch, ctx: StepContext) -> {"loss": tensor, other: tensor | float | None}``:
  the objective of one step; every entry is recorded in the history.

The engine owns seeding (initial weights, sampler generators), device placement (tensors in
the batch are moved for the task), precision (bf16 autocast where :mod:`.precision` says),
determinism, Adam(W) with the schedule of :class:`~.config.OptimConfig`, gradient clipping,
progress and cancel, the history and checkpoints. With a checkpoint folder, the same call
after a kill resumes from the last checkpoint and reaches the same weights as an
uninterrupted run (the batch drawn after a checkpoint is drawn from the random state saved
in it, not from where the prefetch thread had got to).

Under ``torchrun`` (``WORLD_SIZE`` > 1, :mod:`.distributed`) the same call trains with K
processes: the network is wrapped in ``DistributedDataParallel``, so every step averages
the gradients of K batches (an effective batch of K x ``batch_size``); rank r draws its
batches from seed ``seed + r`` (rank 0 draws what a single process draws); rank 0 alone
writes the checkpoint, which holds every rank's random state, so a rerun with the same K
resumes exactly. A single process runs none of this.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import numpy as np
import torch

from ..device import deterministic_algorithms, select_device
from ..errors import OperationCancelled
from ..progress import Progress, ensure_progress
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import OptimConfig
from .distributed import (decided_by_rank0, gather_from_ranks, join_process_group,
                          rank_device, sync_buffers, wrap_in_ddp)
from .precision import autocast, resolve_precision

# Settings that change neither the weights nor the random draws: a run may resume with
# other values of these (e.g. on another device).
_NOT_FINGERPRINTED = ("device", "checkpoint_every_s", "checkpoint_every_steps", "log_every")


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class SampleContext:
    """What ``sample`` gets: the step it draws for and the generators it must use."""

    step: int
    batch_size: int
    generator: torch.Generator
    rng: np.random.Generator


@dataclass
class StepContext:
    """What ``loss`` gets: the step, the device and the run's settings."""

    step: int
    device: torch.device
    config: OptimConfig


@dataclass
class TrainResult:
    """How a run went: per-step history, steps and wall time (seconds, over all sessions of
    a resumed run), the precision used and the step the last session resumed from."""

    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    wall_s: float = 0.0
    precision: str = "fp32"
    resumed_from: int = 0

    def summary(self) -> dict[str, Any]:
        """A JSON-able record for a model card (no per-step lists)."""
        loss = self.history.get("loss", [])
        tail = [v for v in loss[-50:] if math.isfinite(v)]
        return {"steps": self.steps, "wall_s": round(self.wall_s, 1), "precision": self.precision,
                "loss_first": loss[0] if loss else None,
                "loss_last50": float(np.mean(tail)) if tail else None}


def _fingerprint(config: OptimConfig, task: Mapping[str, Any] | None, world_size: int = 1
                 ) -> str:
    kept = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_FINGERPRINTED}
    settings: dict[str, Any] = {"optim": kept, "task": task or {}}
    if world_size > 1:  # K processes reach other weights; one process keeps its old key
        settings["world_size"] = world_size
    return json.dumps(settings, sort_keys=True, default=str)


def _lr_factor(config: OptimConfig) -> Callable[[int], float]:
    steps, warm, floor = max(config.steps, 1), config.warmup_steps, config.min_lr_fraction

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "warmup_cosine" and step < warm:
            return (step + 1) / max(warm, 1)
        start = warm if config.schedule == "warmup_cosine" else 0
        t = min(max(step - start, 0) / max(steps - start, 1), 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return factor


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class _Sampler:
    """Draws batches in step order, optionally one step ahead in a thread; every batch comes
    with the random state it was drawn from, which is what a checkpoint before it saves."""

    def __init__(self, sample, state: Stateful | None, config: OptimConfig, prefetch: bool,
                 seed: int):
        self.sample, self.state, self.config = sample, state, config
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.prefetch = prefetch
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def snapshot(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(),
                "numpy": copy.deepcopy(self.rng.bit_generator.state),
                "sampler": self.state.state_dict() if self.state is not None else {}}

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.generator.set_state(snap["generator"])
        self.rng.bit_generator.state = snap["numpy"]
        if self.state is not None:
            self.state.load_state_dict(snap["sampler"])

    def _draw(self, step: int):
        snap = self.snapshot()
        ctx = SampleContext(step, self.config.batch_size, self.generator, self.rng)
        return snap, self.sample(ctx)

    def _produce(self, start: int) -> None:
        for step in range(start, self.config.steps):
            try:
                item = ("ok", self._draw(step))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the training thread
                item = ("error", exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] == "error" or self._stop.is_set():
                return

    def start(self, first_step: int) -> None:
        if self.prefetch and first_step < self.config.steps:
            self._thread = threading.Thread(target=self._produce, args=(first_step,), daemon=True)
            self._thread.start()

    def next(self, step: int):
        if self._thread is None:
            return self._draw(step)
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _build(model: torch.nn.Module | Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # the initial weights are part of the seeded run
    return model if isinstance(model, torch.nn.Module) else model()


def run_training(model: torch.nn.Module | Callable[[], torch.nn.Module],
                 sample: Callable[[SampleContext], Any],
                 loss: Callable[[torch.nn.Module, Any, StepContext], Mapping[str, Any]],
                 config: OptimConfig, *,
                 parameters: Callable[[torch.nn.Module], Iterable[torch.nn.Parameter]] | None = None,
                 state: Stateful | None = None, checkpoint_dir: str | Path | None = None,
                 progress: Progress | None = None, label: str = "training",
                 prefetch: bool = True, fingerprint: Mapping[str, Any] | None = None
                 ) -> tuple[torch.nn.Module, TrainResult]:
    """Train ``model`` (a module to continue, or a factory for a fresh one) for
    ``config.steps`` steps.

    Args:
        parameters: which parameters to optimise (default: all that require a gradient).
        state: the sampler's own position (saved in checkpoints, restored on resume).
        checkpoint_dir: where this run keeps its checkpoint; a run found there resumes (a
            finished one returns its final weights without training). Settings that change
            the result must match the checkpoint's.
        progress: reporter; a cancel raises ``OperationCancelled`` after saving a checkpoint.
        prefetch: draw the next batch in a thread while the network runs (same result).
        fingerprint: the task's settings that change the result (data, loss, augmentation;
            JSON-able): a checkpoint made with others is refused, like other optimiser
            settings.

    Returns:
        the network in eval mode on the CPU and the :class:`TrainResult`.

    Raises:
        CheckpointError: the checkpoint folder holds a run with other settings.
    """
    progress = ensure_progress(progress)
    device = select_device(config.device)
    ranks = join_process_group(device)
    device = rank_device(device, ranks)
    precision = resolve_precision(config.precision, device)
    net = _build(model, config.seed).to(device).train()
    chosen = list(parameters(net) if parameters is not None else
                  (p for p in net.parameters() if p.requires_grad))
    optimiser = torch.optim.AdamW(chosen, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_factor(config))
    sampler = _Sampler(sample, state, config, prefetch, config.seed + ranks.rank)
    result = TrainResult(precision=precision)
    fingerprint = _fingerprint(config, fingerprint, ranks.world_size)

    saved = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if saved is not None:
        if saved["fingerprint"] != fingerprint:
            raise CheckpointError(
                f"the checkpoint in {checkpoint_dir} is from a run with other settings",
                "Rerun with the same settings to resume it, or delete the folder to start anew",
                source=checkpoint_dir)
        net.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        own = saved["ranks"][ranks.rank] if ranks.distributed else saved
        torch.set_rng_state(own["torch_rng"])
        sampler.restore(own["next_batch"])
        result.history = {k: list(v) for k, v in saved["history"].items()}
        result.steps = result.resumed_from = int(saved["step"])
        result.wall_s = float(saved["wall_s"])
    else:
        # Dropout and other global draws of the network (each rank its own).
        torch.manual_seed(config.seed + ranks.rank)
    # Wrapped after loading: DDP starts every rank from rank 0's weights and buffers.
    trained = wrap_in_ddp(net, device) if ranks.distributed else net

    def checkpoint(step: int, next_batch: Mapping[str, Any], wall_s: float | None = None) -> None:
        """Save the run (with several ranks: a collective call, rank 0 writes); ``wall_s``:
        the run's wall time so far (default: now)."""
        if checkpoint_dir is None:
            return
        own = {"torch_rng": torch.get_rng_state(), "next_batch": next_batch}
        every = gather_from_ranks(own, ranks) if ranks.distributed else None
        if not ranks.main:
            return
        payload = {"fingerprint": fingerprint, "step": step, "model": net.state_dict(),
                   "optimizer": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                   **own, "history": result.history,
                   "wall_s": wall_before + time.monotonic() - began if wall_s is None else wall_s}
        if every is not None:
            payload["ranks"] = every
        save_checkpoint(checkpoint_dir, payload)

    def checkpoint_due(step: int) -> bool:
        due = bool(time.monotonic() - last_saved >= config.checkpoint_every_s
                   or (config.checkpoint_every_steps
                       and step % config.checkpoint_every_steps == 0))
        if ranks.distributed and checkpoint_dir is not None:
            due = decided_by_rank0(due, device)  # rank 0's clock decides for all
        return due and step > result.resumed_from

    began = last_saved = time.monotonic()
    wall_before = result.wall_s
    step = result.steps
    sampler.start(step)
    try:
        with deterministic_algorithms(config.deterministic):
            while step < config.steps:
                snap, batch = sampler.next(step)
                if checkpoint_due(step):
                    checkpoint(step, snap)
                    last_saved = time.monotonic()
                try:
                    if step % max(config.log_every, 1) == 0:
                        recent = result.history.get("loss", [])[-config.log_every:]
                        shown = f" loss {np.nanmean(recent):.4f}" if recent else ""
                        progress.update(step / max(config.steps, 1),
                                        f"{label} step {step + 1}/{config.steps}{shown}")
                except OperationCancelled:
                    if not ranks.distributed:  # the others would wait for it forever
                        checkpoint(step, snap)
                    raise
                _train_step(trained, optimiser, scheduler, loss, _to_device(batch, device),
                            StepContext(step, device, config), precision, config, result)
                step += 1
    finally:
        sampler.close()
    result.steps = step
    # One reading of the clock for the result and the last checkpoint, so that a rerun
    # that resumes a finished run reports the same wall time (writing it is not counted).
    result.wall_s = wall_before + time.monotonic() - began
    if saved is None or saved["step"] < step:
        checkpoint(step, sampler.snapshot(), result.wall_s)
    if ranks.distributed:
        sync_buffers(net)
    progress.update(1.0, f"{label} done")
    return net.eval().to("cpu"), result


def _train_step(net, optimiser, scheduler, loss, batch, ctx: StepContext, precision: str,
                config: OptimConfig, result: TrainResult) -> None:
    optimiser.zero_grad(set_to_none=True)
    with autocast(precision, ctx.device):
        terms = loss(net, batch, ctx)
    total = terms["loss"].float()
    total.backward()
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(
            [p for group in optimiser.param_groups for p in group["params"]], config.grad_clip)
    optimiser.step()
    scheduler.step()
    for key, value in terms.items():
        number = math.nan if value is None else float(value.detach() if
                                                      isinstance(value, torch.Tensor) else value)
        result.history.setdefault(key, []).append(number)

"""Multi-process training: what the engine needs when ``torchrun`` starts K copies of a command.

``torchrun --nproc_per_node=K`` (or a job array of nodes with ``--nnodes``) starts every
process with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in its
environment. :func:`ranks_from_environment` reads them (:func:`is_main_process` tells the
command line whether to save and report); :func:`join_process_group` creates the
one process group of the run on first use (NCCL for CUDA, gloo otherwise) and keeps it for
every later network of the same command (CMB and ICH train several in turn).

The engine (:func:`~lesion_core.training.run_training`) then wraps the network in
``DistributedDataParallel`` (gradients averaged over the processes in every step), draws each
process's batches from its own seed (``seed + rank``), and lets rank 0 alone write the
checkpoint, which holds every rank's random state. Without ``WORLD_SIZE`` > 1 none of this
runs and training is exactly the single-process one.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a multi-process run (one process: rank 0 of 1).

    Attributes:
        rank: the process's index over all nodes (0 writes checkpoints and the model).
        world_size: processes in the run.
        local_rank: the process's index on its node (its GPU with CUDA).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks_from_environment(environ: Mapping[str, str] | None = None) -> Ranks:
    """The :class:`Ranks` ``torchrun`` put in the environment (none: a single process).

    Raises:
        ValueError: the variables are there but not whole numbers in range.
    """
    environ = os.environ if environ is None else environ
    try:
        world = int(environ.get("WORLD_SIZE", "1") or 1)
        rank = int(environ.get("RANK", "0") or 0)
        local = int(environ.get("LOCAL_RANK", str(rank)) or 0)
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK are not whole numbers ({exc})") from exc
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"RANK {rank} does not fit WORLD_SIZE {world}")
    return Ranks(rank, world, local)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a multi-process run (which must not write the
    model, checkpoints or logs)."""
    return ranks_from_environment().main


def join_process_group(device: torch.device) -> Ranks:
    """This process's :class:`Ranks`; in a multi-process run, the process group is created
    on the first call (NCCL when ``device`` is a CUDA device, else gloo) and destroyed when
    the process exits."""
    ranks = ranks_from_environment()
    if not ranks.distributed:
        return ranks
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_leave)
    return ranks


def _leave() -> None:
    if dist.is_initialized():
        # Leave together: a rank that tears gloo down while another still has a
        # connection open can make the other abort ("terminate called without an active
        # exception") on a busy machine.
        dist.barrier()
        dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device this rank trains on: each process of a multi-process CUDA run takes the
    GPU of its local rank (whatever ``cuda:N`` was asked for); other devices are kept."""
    if ranks.distributed and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device


def _comm_device(net_device: torch.device) -> torch.device:
    """Where small tensors for collectives live: NCCL needs them on the GPU."""
    return net_device if dist.get_backend() == "nccl" else torch.device("cpu")


def decided_by_rank0(flag: bool, net_device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (one tiny broadcast): a decision every rank must make
    the same, such as "checkpoint now", which rank 0 takes by its own clock."""
    value = torch.tensor([1 if flag else 0], device=_comm_device(net_device))
    dist.broadcast(value, 0)
    return bool(value.item())


def gather_from_ranks(item: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``item`` (picklable), in rank order, on every rank."""
    items: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(items, item)
    return items


def wrap_in_ddp(net: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``net`` in ``DistributedDataParallel`` (gradients averaged over the ranks in every
    backward pass; the initial weights and buffers are rank 0's). The tasks' networks use
    every trainable parameter in each forward pass (each whole training was run under
    torchrun: WMH DualTasker and T1 mode, CMB stage 1, teacher and student, ICH classifier
    and segmenter), so DDP need not search the graph for unused ones; a network that
    skips one fails at its second step with DDP's own message."""
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, output_device=ids[0] if ids else None)


def sync_buffers(net: torch.nn.Module) -> None:
    """Rank 0's buffers (e.g. normalisation statistics) on every rank: DDP copies them
    before each forward pass, so after the last step they could still differ."""
    for buffer in net.buffers():
        dist.broadcast(buffer.data, 0)


"""Which device runs the networks: CPU, an NVIDIA GPU (CUDA) or an Apple GPU (MPS).

``select_device("auto")`` picks CUDA when PyTorch can use it, else MPS, else the CPU.
Setting the environment variable ``LESION_SUITE_FORCE_CPU=1`` (or passing
``force_cpu=True``) always gives the CPU, e.g. to keep a GPU free or to reproduce a run.
Asking for a device that is not there is a user mistake and raises :class:`DeviceError`
with what to do, instead of a CUDA error from deep inside PyTorch.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

from .errors import LesionSuiteError

FORCE_CPU_ENV = "LESION_SUITE_FORCE_CPU"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(:(\d+))?$")


class DeviceError(LesionSuiteError):
    """The requested device does not exist or this PyTorch build cannot use it."""


def force_cpu_requested() -> bool:
    """True when ``LESION_SUITE_FORCE_CPU`` is set to 1/true/yes/on."""
    return os.environ.get(FORCE_CPU_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device names usable here, CPU first: ``["cpu", "cuda:0", ..., "mps"]``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def select_device(preference: str | torch.device = "auto", force_cpu: bool = False
                  ) -> torch.device:
    """The device to run on.

    Args:
        preference: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``
            (the first GPU), ``"cuda:N"``, ``"mps"``, or a ``torch.device``.
        force_cpu: return the CPU whatever the preference (as does the
            ``LESION_SUITE_FORCE_CPU`` environment variable).

    Raises:
        DeviceError: the name is not a device, or that device is not available.
    """
    if force_cpu or force_cpu_requested():
        return torch.device("cpu")
    text = str(preference).strip().lower()
    match = _DEVICE_RE.match(text)
    if not match or (match.group(1) in ("auto", "cpu") and match.group(2)):
        raise DeviceError(f"{preference!r} is not a device name",
                          "Use auto, cpu, cuda, cuda:N or mps")
    kind, index = match.group(1), match.group(3)
    available = available_devices()
    if kind == "auto":
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if "mps" in available else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if "mps" not in available:
            raise DeviceError("the Apple GPU (mps) is not available",
                              "Choose cpu, or use a Mac with Apple silicon and macOS 12.3 "
                              "or later")
        return torch.device("mps")
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise DeviceError(f"{text} was requested but PyTorch cannot use a CUDA GPU here",
                          "Choose cpu or install a CUDA build of PyTorch (and an NVIDIA "
                          "driver)")
    number = int(index) if index is not None else 0
    if number >= torch.cuda.device_count():
        raise DeviceError(f"there is no GPU cuda:{number}",
                          f"Choose one of {', '.join(available)}")
    return torch.device("cuda", number)


def _system_memory_gib() -> float | None:
    """Physical memory of this machine in GiB, where the OS tells it cheaply."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return None


def describe_device(device: str | torch.device) -> str:
    """One line for logs and the GUI, e.g. ``"cuda:0: NVIDIA H100 (79.1 GiB)"``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index}: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if dev.type == "mps":
        memory = _system_memory_gib()
        shared = f" ({memory:.1f} GiB shared memory)" if memory else ""
        return f"mps: Apple GPU{shared}"
    name = platform.processor() or platform.machine() or "CPU"
    memory = _system_memory_gib()
    mem = f", {memory:.1f} GiB memory" if memory else ""
    return f"cpu: {name} ({os.cpu_count() or 1} cores, {torch.get_num_threads()} threads{mem})"


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Ask torch for deterministic kernels inside the block (restored afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


@contextlib.contextmanager
def cpu_threads(count: int):
    """Run the block with ``count`` torch CPU threads (the setting is restored afterwards).
    For long chains of tiny operations, such as a recurrent network stepping through a
    sequence, where waking a second thread for each step costs more than it gives (and
    far more when other jobs hold the cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

"""Device choice: auto order, forced CPU, and clear errors for missing devices (CPU only)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lesion_core import device as dev
from lesion_core.errors import LesionSuiteError


@pytest.fixture
def no_gpu(monkeypatch):
    """Pretend this machine has neither CUDA nor MPS, whatever it has."""
    monkeypatch.delenv("LESION_SUITE_FORCE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretend two CUDA devices exist (nothing is ever run on them)."""
    monkeypatch.delenv("LESION_SUITE_FORCE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(name=f"Fake GPU {i}", total_memory=8 * 2**30))


def test_cpu_only_machine(no_gpu) -> None:
    assert dev.available_devices() == ["cpu"]
    assert dev.select_device() == torch.device("cpu")
    assert dev.select_device("CPU") == torch.device("cpu")
    assert dev.select_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_missing_cuda_gives_fix(no_gpu, name: str) -> None:
    with pytest.raises(dev.DeviceError) as info:
        dev.select_device(name)
    assert isinstance(info.value, LesionSuiteError)
    assert "choose cpu or install a cuda build of pytorch" in str(info.value).lower()


def test_missing_mps_and_bad_names(no_gpu) -> None:
    with pytest.raises(dev.DeviceError, match="mps"):
        dev.select_device("mps")
    for bad in ("gpu", "cuda:x", "cpu:1", "tpu"):
        with pytest.raises(dev.DeviceError, match="not a device name"):
            dev.select_device(bad)


def test_auto_prefers_cuda_then_mps(two_gpus, monkeypatch) -> None:
    assert dev.available_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert dev.select_device() == torch.device("cuda", 0)
    assert dev.select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(dev.DeviceError, match="no GPU cuda:2"):
        dev.select_device("cuda:2")
    assert dev.describe_device("cuda:1") == "cuda:1: Fake GPU 1 (8.0 GiB)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    assert dev.select_device() == torch.device("mps")
    assert dev.describe_device("mps").startswith("mps: Apple GPU")


def test_force_cpu(two_gpus, monkeypatch) -> None:
    assert dev.select_device("cuda:1", force_cpu=True) == torch.device("cpu")
    monkeypatch.setenv("LESION_SUITE_FORCE_CPU", "1")
    assert dev.select_device() == torch.device("cpu")
    assert dev.select_device("cuda:5") == torch.device("cpu")
    monkeypatch.setenv("LESION_SUITE_FORCE_CPU", "0")
    assert dev.select_device() == torch.device("cuda", 0)


def test_describe_cpu() -> None:
    text = dev.describe_device("cpu")
    assert text.startswith("cpu: ") and "cores" in text

"""Tiny untrained WMH models for tests: the DualTasker (FLAIR) and the T1 mode, saved as
bundles on a coarse 4 mm grid (seconds to build and run)."""

from __future__ import annotations

from pathlib import Path

import torch

from lesion_core.wmh.config import DualTaskerConfig
from lesion_core.wmh.model import build_t1_network, save_wmh_model
from lesion_core.wmh.train import build_network

TINY = DualTaskerConfig(spacing_mm=4.0, shape=(48, 56, 48), features=(4, 8, 16))


def save_tiny_models(folder: Path) -> dict[str, Path]:
    """A FLAIR and a T1 bundle of :data:`TINY` (seeded) in ``folder``: kind -> folder."""
    torch.manual_seed(0)
    save_wmh_model(folder / "flair", build_network(TINY), TINY)
    save_wmh_model(folder / "t1", build_t1_network(TINY), TINY, t1=True)
    return {"flair": folder / "flair", "t1": folder / "t1"}

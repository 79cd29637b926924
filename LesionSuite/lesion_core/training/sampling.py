"""Sampler positions that training checkpoints carry (see :class:`.engine.Stateful`)."""

from __future__ import annotations

import torch


class EpochOrder:
    """Indices still to come in this epoch: a shuffled ``range(count)``, topped up with a
    new shuffle when fewer than a batch are left. Saved in checkpoints, so a resumed run
    draws the same batches."""

    def __init__(self) -> None:
        self.order: list[int] = []

    def take(self, n: int, count: int, generator: torch.Generator) -> list[int]:
        """The next ``n`` indices of ``range(count)`` (shuffles drawn from ``generator``)."""
        while len(self.order) < n:
            self.order += torch.randperm(count, generator=generator).tolist()
        picked, self.order = self.order[:n], self.order[n:]
        return picked

    def state_dict(self) -> dict:
        return {"order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.order = [int(i) for i in state["order"]]

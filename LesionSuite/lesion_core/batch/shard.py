"""Splitting a cohort between machines that do not talk to each other: ``--shard I/N``.

Every machine lists the same cohort, sorts the case ids and keeps the cases whose position
in that order is ``I`` modulo ``N``: the N shards cover the cohort exactly once, each within
one case of the same size, with no coordinator. ``I`` counts from 0, as SLURM's
``--array=0-(N-1)`` does. A case added to the cohort later may move others to another
shard; a case already done is still skipped by whichever shard now has it, when the shards
share one output folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, TypeVar

from ..errors import CommandError

T = TypeVar("T")
_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 of 1: the whole cohort)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """``"I/N"`` (None: the whole cohort); a malformed or out-of-range value is one
        :class:`~lesion_core.errors.CommandError`."""
        if text is None:
            return cls()
        match = _PATTERN.match(text)
        if match is None:
            raise CommandError(f"--shard {text!r} is not I/N",
                               "give the shard as I/N with 0 <= I < N, e.g. --shard 0/4")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise CommandError(f"--shard {text}: shard {index} of {count} does not exist",
                               f"give I from 0 to N-1 (SLURM: --array=0-{max(count - 1, 0)})")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def label(self) -> str:
        """``shard-I-of-N`` (empty for the whole cohort): the suffix of its files."""
        return "" if self.whole else f"shard-{self.index}-of-{self.count}"

    def select(self, items: Sequence[T], key=lambda item: item.case_id) -> list[T]:
        """This shard's items: sorted by ``key``, every ``count``-th from ``index``."""
        ordered = sorted(items, key=key)
        return [item for position, item in enumerate(ordered)
                if position % self.count == self.index]

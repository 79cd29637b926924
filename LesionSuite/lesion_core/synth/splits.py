"""Which seeds make which split, so that training never sees a benchmark subject.

A subject is fully determined by ``(kind, seed, config)``; keeping the seed ranges apart
keeps the splits apart. Bundled models train on :data:`TRAIN_SEEDS`, choose thresholds on
:data:`VALIDATION_SEEDS`, and ``bench/`` reports on :data:`BENCHMARK_SEEDS`.
"""

from __future__ import annotations

TRAIN_SEEDS = range(0, 100_000)
VALIDATION_SEEDS = range(100_000, 200_000)
BENCHMARK_SEEDS = range(900_000, 1_000_000)


def split_of(seed: int) -> str:
    """``"train"``, ``"validation"``, ``"benchmark"`` or ``"unassigned"``."""
    for name, seeds in (("train", TRAIN_SEEDS), ("validation", VALIDATION_SEEDS),
                        ("benchmark", BENCHMARK_SEEDS)):
        if seed in seeds:
            return name
    return "unassigned"


def seeds(split: str, n: int, offset: int = 0) -> list[int]:
    """The first ``n`` seeds of a split (after ``offset``)."""
    source = {"train": TRAIN_SEEDS, "validation": VALIDATION_SEEDS, "benchmark": BENCHMARK_SEEDS}[split]
    if offset + n > len(source):
        raise ValueError(f"the {split} split has only {len(source)} seeds")
    return list(source[offset:offset + n])

"""Which seeds make which split, so that training never sees a benchmark subject.

A subject is fully determined by ``(kind, seed, config)``; keeping the seed ranges apart
keeps the splits apart. Bundled models train on :data:`TRAIN_SEEDS`, choose thresholds on
:data:`VALIDATION_SEEDS`, and ``bench/`` reports on :data:`BENCHMARK_SEEDS` (the standard
set) and :data:`SHIFTED_BENCHMARK_SEEDS` (the shifted set, generated in the "shifted"
domain of :mod:`lesion_core.synth.domain`).
"""

from __future__ import annotations

TRAIN_SEEDS = range(0, 100_000)
VALIDATION_SEEDS = range(100_000, 200_000)
BENCHMARK_SEEDS = range(900_000, 950_000)
SHIFTED_BENCHMARK_SEEDS = range(950_000, 1_000_000)

#: Split name -> its seeds.
SPLITS = {"train": TRAIN_SEEDS, "validation": VALIDATION_SEEDS, "benchmark": BENCHMARK_SEEDS,
          "shifted_benchmark": SHIFTED_BENCHMARK_SEEDS}


def split_of(seed: int) -> str:
    """A name of :data:`SPLITS` (``"train"``, ..., ``"shifted_benchmark"``) or ``"unassigned"``."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    return "unassigned"


def seeds(split: str, n: int, offset: int = 0) -> list[int]:
    """The first ``n`` seeds of a split (after ``offset``)."""
    source = SPLITS[split]
    if offset + n > len(source):
        raise ValueError(f"the {split} split has only {len(source)} seeds")
    return list(source[offset:offset + n])

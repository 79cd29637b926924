"""Teacher vs student of the CMB discriminator: parameters and time per candidate.

    python bench/cmb_distillation_cost.py [--model DIR] [--candidates 64] [--repeats 5]
                                          [--precision auto|fp32|bf16]

Times the flip-averaged prediction (8 views, as the pipeline runs it) of a batch of random
24^3 patches with each network of a CMB bundle, on the CPU with the torch threads
available and at ``--precision``, and prints a Markdown table row per network (median of
``--repeats`` runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lesion_core.cmb.discriminator import parameter_count, predict_with_flips
from lesion_core.cmb.model import load_cmb_model
from lesion_core.training import resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="CMB bundle (default: the shipped one)")
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    args = parser.parse_args()
    model = load_cmb_model(args.model, device="cpu")
    patches = torch.rand(args.candidates, 1, 24, 24, 24, generator=torch.Generator().manual_seed(0))
    print(f"| network | parameters | ms per candidate (8-flip TTA, {torch.get_num_threads()} "
          f"threads, {resolve_precision(args.precision, 'cpu')}) |\n|---|---|---|")
    for name, net in (("teacher", model.teacher), ("student", model.student)):
        predict_with_flips(net, patches[:2], args.precision)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predict_with_flips(net, patches, args.precision)
            times.append(time.perf_counter() - start)
        per = 1000 * statistics.median(times) / args.candidates
        print(f"| {name} | {parameter_count(net):,} | {per:.2f} |")


if __name__ == "__main__":
    main()

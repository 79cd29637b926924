"""A tiny training run for ``torchrun`` (Testing/test_distributed_training.py starts it).

    torchrun --standalone --nproc_per_node=2 Testing/ddp_toy_training.py --out DIR \
        [--steps 6] [--checkpoint DIR] [--fail-at STEP]

Every rank trains the same small MONAI U-Net (batch normalisation, so buffers must agree
too) through :func:`lesion_core.training.run_training` and writes its final weights to
``DIR/rank<r>.pt`` (the test compares them); rank 0 also saves the network as a model
bundle in ``DIR/bundle`` and each rank writes the batches it drew to
``DIR/drawn<r>.json``. ``--fail-at STEP`` raises while drawing that step's batch, as an
interrupted run would stop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lesion_core.bundle import BundleMetadata, NetworkSpec, save_bundle
from lesion_core.training import EpochOrder, OptimConfig, run_training
from lesion_core.training.distributed import ranks_from_environment

NETWORK = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [4, 8],
           "strides": [2], "num_res_units": 0, "norm": "batch"}


def build():
    from monai.networks.nets import UNet

    return UNet(**NETWORK)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--checkpoint")
    parser.add_argument("--fail-at", type=int)
    args = parser.parse_args()
    ranks = ranks_from_environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = torch.randn(32, 1, 16, 16, generator=torch.Generator().manual_seed(7))
    targets = (images > 0.5).float()
    order = EpochOrder()
    drawn: list[list[int]] = []

    def sample(ctx):
        if ctx.step == args.fail_at:
            raise RuntimeError(f"interrupted at step {ctx.step}")
        picked = order.take(ctx.batch_size, len(images), ctx.generator)
        drawn.append(picked)
        return images[picked], targets[picked]

    def loss(net, batch, ctx):
        x, y = batch
        return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)}

    config = OptimConfig(steps=args.steps, lr=0.01, batch_size=4, seed=11, device="cpu",
                         precision="fp32", checkpoint_every_s=1e9, checkpoint_every_steps=2,
                         log_every=1)
    # No prefetch: the batches drawn are then exactly those trained on.
    net, result = run_training(build, sample, loss, config, state=order,
                               checkpoint_dir=args.checkpoint, prefetch=False)
    torch.save(net.state_dict(), out / f"rank{ranks.rank}.pt")
    (out / f"drawn{ranks.rank}.json").write_text(json.dumps(drawn))
    if ranks.main:
        meta = BundleMetadata(name="ddp_toy", task="cmb", version="1.0", input_modality="SWI",
                              spacing_mm=(1.0, 1.0, 1.0),
                              networks={"net": NetworkSpec("monai.UNet", NETWORK)},
                              training=result.summary())
        save_bundle(out / "bundle", meta, {"net": net})


if __name__ == "__main__":
    main()

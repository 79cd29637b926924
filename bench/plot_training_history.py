"""Loss curves of a training run from its checkpoint folder (any model trained by
lesion_core.training.run_training), for a model card: is the curve still falling?

    python bench/plot_training_history.py CHECKPOINT_DIR --out docs/images/curve.png

Each history entry (one value per step) is drawn raw and as a running mean over
``--window`` steps, one panel per entry.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesion_core.training.checkpoint import load_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the run's checkpoint folder")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--window", type=int, default=50, help="running-mean steps")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args()
    payload = load_checkpoint(args.checkpoint)
    if payload is None:
        raise SystemExit(f"no checkpoint in {args.checkpoint}")
    # entries that stayed 0 (e.g. a loss term with no data in this run) are left out
    history = {k: np.asarray(v, float) for k, v in payload["history"].items()
               if len(v) and np.any(np.asarray(v, float) != 0)}
    fig, axes = plt.subplots(1, len(history), figsize=(3.2 * len(history), 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], history.items()):
        window = max(min(args.window, len(values) // 5), 1)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(1, len(values) + 1), values, lw=0.5, alpha=0.35)
        ax.plot(np.arange(window, len(values) + 1), smooth, lw=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(args.title or f"{Path(args.checkpoint).name}: {payload['step']} steps",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Look at a WMH model's maps before trusting its numbers: image, truth, map and mask of a
few benchmark cases side by side, for the model card.

One row per case (the axial slice with the most true WMH, or the middle of the brain for a
scan without WMH): the image (the FLAIR, or the T1 for a T1-mode model), the truth
outlined in red on it, the model's map (0-1, zero outside the brain) and the predicted
mask in yellow; the title gives the true and predicted volumes and, for the DualTasker,
the rated and predicted ARWMC totals and the rating/segmentation agreement. Slices are
shown in the radiological convention.

    python bench/render_wmh_maps.py --cases standard:900001 shifted:950000 shifted:950005 \
        [--model DIR] [--cache DIR] --out docs/images/wmh_maps.png

Cases come from the benchmark cache (``run_benchmark.py`` generates them). Needs matplotlib.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bench_cases  # noqa: E402


def _slice(truth: np.ndarray, brain: np.ndarray) -> int:
    per_slice = truth.sum(axis=(0, 1))
    if per_slice.max() > 0:
        return int(np.argmax(per_slice))
    return int(np.mean(np.nonzero(brain.any(axis=(0, 1)))[0]))


def _view(array: np.ndarray, k: int) -> np.ndarray:
    return np.rot90(array[::-1, :, k])  # patient's right on the left, anterior up


def render(cases: list[tuple[str, int]], model_folder: str | None, cache: Path, out: Path) -> None:
    from lesion_core.wmh.model import load_wmh_model
    from lesion_core.wmh.predict import predict

    model = load_wmh_model(model_folder)
    modality = "T1" if model.is_t1 else "FLAIR"
    fig, axes = plt.subplots(len(cases), 4, figsize=(12, 3.2 * len(cases)), squeeze=False)
    for row, (bench_set, seed) in enumerate(cases):
        case = bench_cases.load_case(bench_cases.ensure_case("wmh", seed, 1.5, cache, bench_set))
        image = case.images[modality]
        truth = np.asarray(case.labels[modality]["wmh"].array) > 0
        result = predict(image, model)
        brain = np.asarray(result.atlases.brain.array) > 0
        k = _slice(truth, brain)
        pixels = np.asarray(image.array, np.float32)
        top = np.percentile(pixels[brain], 99.5)
        voxel_ml = float(np.prod(image.spacing)) / 1000.0
        panels = ((modality, pixels, "gray", (0, top)), ("truth", pixels, "gray", (0, top)),
                  ("map", result.activation.array, "magma", (0, 1)),
                  ("mask", pixels, "gray", (0, top)))
        for col, (name, data, cmap, (low, high)) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(_view(data, k), cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            if name == "truth" and truth[:, :, k].any():
                ax.contour(_view(truth.astype(float), k), levels=[0.5], colors="red",
                           linewidths=0.8)
            if name == "mask":
                shown = np.ma.masked_equal(_view(result.labels.array.astype(float), k), 0)
                ax.imshow(shown, cmap="autumn", vmin=0, vmax=1, alpha=0.8,
                          interpolation="nearest")
            ax.set_axis_off()
            if col:
                ax.set_title(name, fontsize=9)
        rating = ("" if model.is_t1 else f"ARWMC {case.targets['arwmc_total']} -> "
                  f"{result.total}, ")
        agreement = "" if model.is_t1 else f", agreement {result.agreement:.1f}"
        axes[row, 0].set_title(f"{bench_set} {seed}: {rating}{truth.sum() * voxel_ml:.1f} -> "
                               f"{result.lesion_ml:.1f} mL{agreement}", fontsize=8, loc="left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", required=True, metavar="SET:SEED",
                        help="benchmark cases, e.g. standard:900001 shifted:950005")
    parser.add_argument("--model", help="WMH model folder (default: the shipped DualTasker)")
    parser.add_argument("--cache", default=str(bench_cases.CACHE_DIR),
                        help="benchmark case cache (default %(default)s)")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()
    cases = [(text.split(":")[0], int(text.split(":")[1])) for text in args.cases]
    render(cases, args.model, Path(args.cache), Path(args.out))


if __name__ == "__main__":
    main()

"""Training and inference speed: fp32 vs bf16 autocast, and where training data come from.

    python bench/training_speed.py [--steps 10] [--out docs/benchmarks.md]

1. One training step (forward, backward, AdamW) of a MONAI UNet(16-32-64-128) on a batch
   of 4 x 64^3 patches, in fp32 and under bf16 autocast (the precision
   ``lesion_core.training`` picks with ``--precision auto`` on CPUs with AMX or
   AVX512-BF16), through the training engine itself.
2. Inference of the same network on a full brain (160 x 192 x 160), fp32 vs bf16.
3. Getting one training subject three ways: synthesising it (what re-generating per step
   would cost), reading its NIfTI image and resampling it to a 3 mm working grid (no
   cache), and reading the preprocessed arrays from the on-disk cache.

Writes the ``training_speed`` section of the benchmark document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import lesion_core  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(1, str(HERE.parent / "LesionSuite"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_report import machine_description, update_document  # noqa: E402


def _unet() -> torch.nn.Module:
    from monai.networks.nets import UNet
    return UNet(3, 1, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)


def step_seconds(precision: str, steps: int) -> float:
    """Median seconds per training step through :func:`run_training` (2 warm-up steps)."""
    from lesion_core.training import OptimConfig, run_training

    x = torch.rand(4, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))
    y = (x > 0.9).float()
    times: list[float] = []
    last = [time.perf_counter()]

    def sample(ctx):
        return x, y

    def loss(net, batch, ctx):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        image, target = batch
        return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(net(image), target)}

    config = OptimConfig(steps=steps + 3, lr=1e-3, device="cpu", precision=precision,
                         log_every=1000)
    run_training(_unet, sample, loss, config, label=f"speed {precision}")
    return float(np.median(times[3:]))  # times[i] spans step i-1's backward and step i's forward


def inference_seconds(precision: str, repeats: int = 3) -> float:
    from lesion_core.training import autocast

    torch.manual_seed(0)
    net = _unet().eval()
    x = torch.rand(1, 1, 160, 192, 160)
    with torch.no_grad(), autocast(precision, "cpu"):
        net(x)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def subject_seconds() -> dict[str, float]:
    """Seconds to get one training subject: synthesised, from NIfTI, from the cache."""
    from lesion_core.io import read_volume
    from lesion_core.synth.anatomy import AnatomyConfig
    from lesion_core.synth.cohort import SubjectConfig, make_subject, save_subject
    from lesion_core.training.cache import cached_arrays

    config = SubjectConfig(kind="wmh", anatomy=AnatomyConfig(spacing_mm=1.5))
    t0 = time.perf_counter()
    subject = make_subject(7, config)
    synthesise = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(save_subject(subject, folder)["flair"])

        def prepare():
            image = read_volume(path).to_ras().resample_to_spacing(3.0)
            array = np.asarray(image.array, np.float32)
            return {"image": array / np.median(array[array > 0]), "affine": image.affine}

        t0 = time.perf_counter()
        prepare()
        from_nifti = time.perf_counter() - t0
        cached_arrays(Path(folder) / "cache", [path, "3mm"], prepare)
        t0 = time.perf_counter()
        cached_arrays(Path(folder) / "cache", [path, "3mm"], prepare)
        from_cache = time.perf_counter() - t0
    return {"synthesise_s": synthesise, "nifti_s": from_nifti, "cache_s": from_cache}


def render(result: dict) -> str:
    s, i, d = result["step"], result["inference"], result["data"]
    return "\n".join([
        "<!-- bench:training_speed -->",
        "## Training and inference speed (`bench/training_speed.py`)",
        "",
        f"Machine: {result['machine']}; torch {result['torch']}, {result['threads']} threads; "
        f"CPU bf16 units: {result['bf16_units']}; {result['date']}.",
        "",
        "| what | fp32 | bf16 autocast | speed-up |",
        "|---|---|---|---|",
        f"| training step, UNet(16-32-64-128), 4 x 64^3 (s) | {s['fp32']:.3f} | {s['bf16']:.3f} "
        f"| {s['fp32'] / s['bf16']:.2f}x |",
        f"| inference, full brain 160 x 192 x 160 (s) | {i['fp32']:.3f} | {i['bf16']:.3f} "
        f"| {i['fp32'] / i['bf16']:.2f}x |",
        "",
        "| one training subject (WMH FLAIR, 1.5 mm anatomy) | seconds |",
        "|---|---|",
        f"| synthesised anew | {d['synthesise_s']:.2f} |",
        f"| read from NIfTI and resampled to the 3 mm working grid (no cache) | {d['nifti_s']:.3f} |",
        f"| read from the preprocessed-array cache | {d['cache_s']:.4f} |",
        "",
        "<!-- /bench:training_speed -->",
        ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks.md"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    import datetime

    from lesion_core.training import cpu_has_bf16_units
    result = {"machine": machine_description(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "bf16_units": cpu_has_bf16_units(),
              "date": datetime.date.today().isoformat(),
              "step": {p: step_seconds(p, args.steps) for p in ("fp32", "bf16")},
              "inference": {p: inference_seconds(p) for p in ("fp32", "bf16")},
              "data": subject_seconds()}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    update_document(Path(args.out), {"training_speed": render(result)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pictures and measured contrast table of the synthetic cohort, for docs/synthetic_cohort.md.

Writes into ``docs/images/``:

- ``synth_flair.png``: a FLAIR (3 mm axial slices) with WMH, three slices;
- ``synth_t1_vs_real.png``: a synthetic T1 and the real T1 example at the same MNI
  position (axial and coronal), and their brain histograms normalised to the WM peak;
- ``synth_swi.png``: an SWI with microbleeds (red) and mimics (yellow);
- ``synth_ct.png``: a non-contrast CT (brain window, level 40 / width 80 HU) with
  haemorrhage (red) and perihaematomal oedema (cyan).

Lesions are outlined by the contours of their ground-truth label. Slices are shown in the
radiological convention (patient's right on the left of the picture). With ``--table``
it also prints the measured contrast table (markdown) over ``--n`` subjects per kind.
Needs matplotlib. The real T1's brain mask and peaks are read from
``Testing/Data/real`` (made by ``scripts/measure_real_t1.py``).

    python scripts/make_synth_figures.py [--table --n 5 --spacing 1.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesion_core.io import read_volume  # noqa: E402
from lesion_core.synth import SubjectConfig, make_subject  # noqa: E402
from lesion_core.synth.acquisition import AcquisitionConfig  # noqa: E402
from lesion_core.synth.anatomy import AnatomyConfig  # noqa: E402
from lesion_core.synth.realism import (LITERATURE_RANGES, histogram_peaks,  # noqa: E402
                                       normalised_histogram, pure_tissue_masks,
                                       synthetic_brain_mask,
                                       tissue_contrast_table)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
REAL = ROOT / "Testing" / "Data" / "real"
DPI = 80


def _save(fig, out: Path) -> None:
    """Write a small PNG: rendered at :data:`DPI`, then reduced to a 128-colour palette."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=128)
    image.save(out, optimize=True)


def _axial(volume, k):
    """Axial slice ``k`` of a RAS-ordered array, ready for imshow (rows = anterior)."""
    return volume[:, :, k].T


def _show(ax, image, vmin, vmax, outlines=(), title=""):
    ax.imshow(image, cmap="gray", origin="lower", vmin=vmin, vmax=vmax, interpolation="nearest")
    for mask, colour in outlines:
        if np.any(mask):
            ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
    ax.invert_xaxis()  # radiological convention
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def _ras(subject, name):
    image = subject.images[name].to_ras()
    labels = {k: v.to_ras().array for k, v in subject.labels[name].items()}
    return image, labels


def _ras_mask(subject, name, mask):
    """A boolean mask on image ``name``'s grid, reordered like ``to_ras()`` reorders the image."""
    return subject.images[name].with_array(mask.astype(np.uint8)).to_ras().array > 0


def _best_slices(mask, count=3, spread=4):
    """Axial slices with the most lesion, at least ``spread`` slices apart."""
    area = mask.reshape(-1, mask.shape[2]).sum(0)
    chosen = []
    for k in np.argsort(area)[::-1]:
        if area[k] == 0 or len(chosen) == count:
            break
        if all(abs(int(k) - c) >= spread for c in chosen):
            chosen.append(int(k))
    return sorted(chosen)


def figure_flair(out: Path) -> None:
    acq = {"FLAIR": AcquisitionConfig(orientation="RAS", in_plane_mm=1.0, slice_thickness_mm=3.0,
                                      bias_strength=0.1, noise_fraction=0.03),
           "T1": AcquisitionConfig(orientation="RAS", slice_thickness_mm=1.0)}
    subject = make_subject(3, SubjectConfig(kind="wmh", severity=0.6, acquisition=acq))
    image, labels = _ras(subject, "FLAIR")
    wmh = labels["wmh"] > 0
    wm = float(np.median(image.array[_ras_mask(subject, "FLAIR", pure_tissue_masks(subject, "FLAIR")["wm"])]))
    vmax = 2.3 * wm
    fig, axes = plt.subplots(2, 3, figsize=(10, 7.2))
    for column, k in enumerate(_best_slices(wmh, spread=5)):
        _show(axes[0, column], _axial(image.array, k), 0, vmax, title=f"FLAIR, axial slice {k}")
        _show(axes[1, column], _axial(image.array, k), 0, vmax, [(_axial(wmh, k), "red")],
              title="WMH ground truth (red)")
    targets = subject.targets
    fig.suptitle(f"Synthetic FLAIR (3 mm slices), severity 0.6, ARWMC total "
                 f"{targets.get('arwmc_total', '?')}, WMH {targets.get('wmh_volume_ml', 0):.1f} mL; "
                 "window 0-2.3 x white matter", fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def _slice_at_mni(volume, ras_to_mni, axis, value):
    """Index along voxel ``axis`` (RAS-ordered volume) whose slice centre is nearest to MNI ``value``."""
    centre = (np.asarray(volume.shape) - 1) / 2.0
    best, best_d = 0, np.inf
    for index in range(volume.shape[axis]):
        ijk = centre.copy()
        ijk[axis] = index
        mni = ras_to_mni(volume.voxel_to_ras(ijk[None]))[0]
        if abs(mni[axis] - value) < best_d:
            best, best_d = index, abs(mni[axis] - value)
    return best


def figure_t1(out: Path) -> dict:
    real = read_volume(REAL / "t1_deep-T1-WMH_example.nii.gz").to_ras()
    real_mask = read_volume(REAL / "t1_deep-T1-WMH_example_brainmask.nii.gz").to_ras().array > 0
    record = json.loads((REAL / "t1_deep-T1-WMH_example_peaks.json").read_text())
    matrix = np.asarray(record["brain_mask"]["ras_to_mni"])
    acq = {"T1": AcquisitionConfig(orientation="RAS", in_plane_mm=1.75, slice_thickness_mm=1.75,
                                   bias_strength=0.05, noise_fraction=0.02)}
    subject = make_subject(1, SubjectConfig(kind="wmh", severity=0.3, acquisition=acq,
                                            anatomy=AnatomyConfig(spacing_mm=1.0)))
    synth = subject.images["T1"].to_ras()
    synth_mask = _ras_mask(subject, "T1", synthetic_brain_mask(subject, "T1"))
    anatomy = subject.anatomy

    def synth_to_mni(ras):
        return anatomy.to_mni(anatomy.grid.ras_to_voxel(ras))

    def real_to_mni(ras):
        return ras @ matrix[:3, :3].T + matrix[:3, 3]

    peaks = {"synthetic": histogram_peaks(synth, synth_mask), "real": histogram_peaks(real, real_mask)}
    fig = plt.figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(2, 3)
    for row, (axis, value, what) in enumerate([(2, 12.0, "axial, MNI z = 12"), (1, -18.0, "coronal, MNI y = -18")]):
        for column, (label, volume, to_mni, mask) in enumerate(
                [("synthetic", synth, synth_to_mni, synth_mask), ("real", real, real_to_mni, real_mask)]):
            index = _slice_at_mni(volume, to_mni, axis, value)
            array = np.take(volume.array, index, axis=axis).T
            wm = peaks[label]["peaks"]["wm"]
            ax = fig.add_subplot(grid[row, column])
            _show(ax, array, 0, 1.45 * wm, title=f"{label} T1, {what}")
            ax.set_aspect(volume.spacing[2] / volume.spacing[0] if axis != 2 else 1.0)
    ax = fig.add_subplot(grid[:, 2])
    for label, volume, mask, colour in [("synthetic", synth, synth_mask, "tab:blue"),
                                        ("real", real, real_mask, "tab:orange")]:
        p = peaks[label]
        x, density = normalised_histogram(volume, mask, p["peaks"]["wm"])
        ax.plot(x, density, color=colour,
                label=f"{label}: GM/WM {p['gm_wm']:.3f}, CSF/WM {p['csf_wm']:.3f}")
        for tissue in ("csf", "gm"):
            ax.axvline(p["normalised"][tissue], color=colour, linestyle=":", linewidth=1)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    ax.set_xlabel("intensity / WM peak")
    ax.set_ylabel("density (brain voxels)")
    ax.set_title("brain histograms (dotted: CSF, GM peaks)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Synthetic T1 (1.75 mm, like the real one) vs real T1 (1.75 mm, not skull-stripped)",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return {k: {"gm_wm": v["gm_wm"], "csf_wm": v["csf_wm"]} for k, v in peaks.items()}


def figure_swi(out: Path) -> None:
    acq = {"SWI": AcquisitionConfig(orientation="RAS", in_plane_mm=1.0, slice_thickness_mm=1.5,
                                    bias_strength=0.1, noise_fraction=0.03)}
    subject = make_subject(5, SubjectConfig(kind="cmb", lesion_count=18, swi_variant="SWI", acquisition=acq))
    image, labels = _ras(subject, "SWI")
    cmb, mimics = labels["cmb"] > 0, labels.get("mimics", np.zeros(image.shape)) > 0
    wm = float(np.median(image.array[_ras_mask(subject, "SWI", pure_tissue_masks(subject, "SWI")["wm"])]))
    vmax = 1.8 * wm
    fig, axes = plt.subplots(2, 3, figsize=(10, 7.2))
    for column, k in enumerate(_best_slices(cmb, spread=6)):
        _show(axes[0, column], _axial(image.array, k), 0, vmax, title=f"SWI, axial slice {k}")
        _show(axes[1, column], _axial(image.array, k), 0, vmax,
              [(_axial(cmb, k), "red"), (_axial(mimics, k), "yellow")],
              title="CMB (red), mimics (yellow)")
    fig.suptitle(f"Synthetic SWI (1.5 mm slices) with {subject.targets.get('cmb_count', '?')} microbleeds",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def figure_ct(out: Path) -> None:
    acq = {"CT": AcquisitionConfig(orientation="RAS", in_plane_mm=0.9, slice_thickness_mm=5.0, ct_noise_hu=4.0)}
    subject = make_subject(5, SubjectConfig(kind="ich", ich_probability=1.0, severity=0.7, acquisition=acq))
    image, labels = _ras(subject, "CT")
    ich = labels["ich"]
    blood, oedema = (ich >= 1) & (ich <= 5), ich == 6
    fig, axes = plt.subplots(2, 3, figsize=(10, 7.2))
    for column, k in enumerate(_best_slices(blood, spread=3)):
        _show(axes[0, column], _axial(image.array, k), 0, 80, title=f"CT, axial slice {k} (W80/L40)")
        _show(axes[1, column], _axial(image.array, k), 0, 80,
              [(_axial(blood, k), "red"), (_axial(oedema, k), "cyan")],
              title="haemorrhage (red), oedema (cyan)")
    kinds = ", ".join(h.get("subtype", "?") for h in subject.targets.get("haemorrhages", []))
    fig.suptitle(f"Synthetic non-contrast CT (5 mm slices): {kinds or 'haemorrhage'}", fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def contrast_table(n: int, spacing: float) -> str:
    """Markdown table: median [min-max] over ``n`` subjects per kind, with literature ranges."""
    collected: dict[str, list[float]] = {}
    for kind in ("wmh", "cmb", "ich"):
        for seed in range(n):
            subject = make_subject(1000 + seed, SubjectConfig(kind=kind, anatomy=AnatomyConfig(spacing_mm=spacing)))
            for name, entry in tissue_contrast_table(subject).items():
                modality = "SWI" if name in ("SWI", "T2star") else name
                for key, value in entry["ratios"].items():
                    if value is not None:
                        collected.setdefault(f"{modality} {key}", []).append(value)
    lines = ["| measure | median | range | n | literature / target |", "|---|---|---|---|---|"]
    for key in sorted(collected):
        values = np.asarray(collected[key])
        ref = LITERATURE_RANGES.get(key)
        lines.append(f"| {key} | {np.median(values):.3g} | {values.min():.3g}-{values.max():.3g} | "
                     f"{values.size} | {f'{ref[0]:g}-{ref[1]:g}' if ref else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="also print the measured contrast table")
    parser.add_argument("--n", type=int, default=5, help="subjects per kind for the table")
    parser.add_argument("--spacing", type=float, default=1.5, help="subject grid (mm) for the table")
    parser.add_argument("--only", choices=("flair", "t1", "swi", "ct"), help="make one figure")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    makers = {"flair": figure_flair, "t1": figure_t1, "swi": figure_swi, "ct": figure_ct}
    names = {"flair": "synth_flair.png", "t1": "synth_t1_vs_real.png", "swi": "synth_swi.png",
             "ct": "synth_ct.png"}
    for key, make in makers.items():
        if args.only and key != args.only:
            continue
        result = make(IMAGES / names[key])
        print(names[key], json.dumps(result) if result else "")
    if args.table:
        print(contrast_table(args.n, args.spacing))


if __name__ == "__main__":
    main()

"""Which bleeds can stage 1 be asked to find? Stage 1 candidate recall on validation
images, per bleed, against how dark each bleed is in its image compared with bleed-free
tissue nearby.

    python bench/cmb_bleed_visibility.py --validation T [--validation T2 ...] [--model DIR]
        [--json FILE]

Darkness of a region: (median of the ring 1-3 voxels around it - the region's darkest
voxel) / (1.4826 x the ring's median absolute deviation), i.e. how many noise standard
deviations its darkest voxel lies under its surroundings, on the acquired image. The
same measure of the bleed's own voxel pattern moved 8 voxels along each axis, where that
place holds no bleed and no mimic, gives the darkness of bleed-free tissue: a bleed no
darker than the 99th percentile of those places cannot be told from noise without a
hundred false alarms per hundred places looked at. Recall is the distance rule (5 mm,
one-to-one) of the candidates at the lowest threshold and at the model's stage 1
threshold. Generator facts (diameter, core signal, slice thickness) are added where the
cohort wrote a ``targets.json`` beside the truth.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cmb_froc import permissive_run  # noqa: E402
from lesion_core.cmb.fit import read_cohorts  # noqa: E402
from lesion_core.cmb.model import load_cmb_model  # noqa: E402
from lesion_core.io import read_volume  # noqa: E402
from lesion_core.metrics.detection import match_points, object_centres  # noqa: E402

SHIFT_VOXELS = 8


def darkness(image: np.ndarray, occupied: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(darkness in noise standard deviations, ring median) of ``region`` (bool, in a box
    of ``image``); ``occupied``: voxels the ring must leave out (other lesions)."""
    ring = (ndimage.binary_dilation(region, iterations=3)
            & ~ndimage.binary_dilation(region, iterations=1) & ~occupied)
    level = float(np.median(image[ring]))
    spread = 1.4826 * float(np.median(np.abs(image[ring] - level)))
    return ((level - float(image[region].min())) / spread if spread > 0 else float("nan")), level


def _box(voxels: np.ndarray, shape) -> tuple[slice, ...] | None:
    lo, hi = voxels.min(0) - 4, voxels.max(0) + 5
    if (lo < 0).any() or (hi > np.asarray(shape)).any():
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def bleed_rows(image: np.ndarray, labels: np.ndarray, mimics: np.ndarray) -> dict[int, dict]:
    """Darkness of each labelled bleed and of its pattern moved to bleed-free places."""
    occupied, out = (labels > 0) | (mimics > 0), {}
    for ident in (int(i) for i in np.unique(labels) if i > 0):
        voxels = np.argwhere(labels == ident)
        box = _box(voxels, labels.shape) or tuple(slice(0, n) for n in labels.shape)
        own, level = darkness(image[box], occupied[box] & (labels[box] != ident),
                              labels[box] == ident)
        nulls = []
        for axis in range(3):
            for step in (-SHIFT_VOXELS, SHIFT_VOXELS):
                moved = voxels.copy()
                moved[:, axis] += step
                place = _box(moved, labels.shape)
                if place is None or occupied[place].any():
                    continue
                region = np.zeros(tuple(s.stop - s.start for s in place), bool)
                region[tuple((moved - [s.start for s in place]).T)] = True
                value, ring_level = darkness(image[place], occupied[place], region)
                if ring_level > 0.5 * level:  # still in tissue like the bleed's
                    nulls.append(value)
        out[ident] = {"darkness": own, "bleed_free": nulls}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validation", action="append", required=True, help="CMB cohort table")
    parser.add_argument("--model", help="CMB bundle (default: the shipped one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = load_cmb_model(args.model, device="cpu")
    threshold = model.config.stage1.candidates.threshold
    bleeds = []
    for row in read_cohorts(args.validation):
        image, truth = read_volume(row.image), read_volume(row.cmb)
        labels = np.asarray(truth.array).astype(np.int32)
        mimics = np.asarray(read_volume(row.mimics).array) if row.mimics else np.zeros_like(labels)
        run = permissive_run(model, image, truth, row.sequence)
        ids, _ = object_centres(labels)
        lowest = {t for _, t in match_points(run["centres"], run["true"]).matches}
        kept = run["centres"][run["p1"] >= threshold]
        at_threshold = {t for _, t in match_points(kept, run["true"]).matches}
        targets = Path(row.cmb).parent / "targets.json"
        meta = json.loads(targets.read_text()) if targets.exists() else {}
        facts = {b["id"]: b for b in meta.get("targets", {}).get("cmbs", [])}
        acquisition = next(iter(meta.get("acquisition", {}).values()), {})
        measured = bleed_rows(np.asarray(image.array, np.float32), labels, mimics)
        for index, ident in enumerate(ids):
            fact = facts.get(ident, {})
            bleeds.append({"subject": row.subject, "sequence": row.sequence, "id": ident,
                           "found_lowest": index in lowest, "found_at_threshold": index in at_threshold,
                           "diameter_mm": fact.get("diameter_mm"), "core_signal": fact.get("signal"),
                           "slice_mm": acquisition.get("slice_thickness_mm"), **measured[ident]})
        print(row.subject, f"{sum(b['found_lowest'] for b in bleeds)} of {len(bleeds)}", flush=True)
    report = summary(bleeds, threshold)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": report, "bleeds": bleeds}, indent=1))


def summary(bleeds: list[dict], threshold: float) -> dict:
    """Recall of all bleeds and of those darker than the 95th / 99th percentile of the
    bleed-free places; the missed bleeds."""
    nulls = np.array([v for b in bleeds for v in b["bleed_free"] if np.isfinite(v)])
    report = {"bleeds": len(bleeds), "stage1_threshold": threshold,
              "bleed_free_places": int(len(nulls)),
              "bleed_free_darkness_p50_p95_p99": np.percentile(nulls, [50, 95, 99]).round(2).tolist()}

    def recall(group: list[dict]) -> dict:
        n = max(len(group), 1)
        return {"bleeds": len(group),
                "recall_lowest": round(sum(b["found_lowest"] for b in group) / n, 3),
                "recall_at_threshold": round(sum(b["found_at_threshold"] for b in group) / n, 3)}

    report["all"] = recall(bleeds)
    for pct in (95, 99):
        limit = float(np.percentile(nulls, pct))
        report[f"darker_than_p{pct}"] = recall([b for b in bleeds if b["darkness"] > limit])
    report["missed_lowest"] = [{k: b[k] for k in ("subject", "id", "diameter_mm", "core_signal",
                                                  "slice_mm")} | {"darkness": round(b["darkness"], 2)}
                               for b in bleeds if not b["found_lowest"]]
    return report


if __name__ == "__main__":
    main()

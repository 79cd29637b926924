"""What a WMH report shows: the mask outlined and the activation map (DualTasker) or
probability (T1 mode) as a translucent overlay; WMH volume per ARWMC region-side with the
model's ratings and the reader's, volume per deep-T1-WMH zone; on the cohort page, the
lesion load and ARWMC total against WMH volume."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..atlas.arwmc import REGIONS
from ..feedback import CaseFeedback
from ..labels import WMH
from ..volume import Volume
from . import plots
from .folders import PredictionFolder
from .html import Cell, Figure, Link, Section, Swatch, Table
from .mosaic import LabelLayer, MapLayer
from .reader import when
from .view import CaseView, ml, rgb255

#: The activation overlay's colour (opacity carries the value): blue, so that the mask's
#: yellow outline (the label catalogue's WMH colour) stands out on it.
ACTIVATION_RGB = (40, 120, 255)
#: Activations below this are not drawn (the map is low and wide around the lesions).
ACTIVATION_FLOOR = 0.2


def case_view(result: PredictionFolder, image: Volume,
              reader: CaseFeedback | None) -> CaseView:
    """The report of one WMH result on ``image`` (its input)."""
    summary, rows = result.summary, result.outputs["ratings"]
    labels = result.array_on("labels", image)
    activation = result.array_on("activation", image).astype(np.float32)
    colour = rgb255(WMH.color)
    t1_mode = summary.get("levels") is None
    what = "probability" if t1_mode else "activation"
    reader_ratings = _reader_ratings(reader)
    total = summary.get("arwmc_total")
    headline = [("WMH volume", ml(summary["lesion_ml"])), ("brain volume", ml(summary["brain_ml"])),
                ("ARWMC total (0-30)", "not rated (T1 mode)" if total is None else str(total)),
                ("input", str(summary.get("modality", "?")))]
    if summary.get("rating_segmentation_agreement") is not None:
        headline.append(("rating / segmentation agreement",
                         f"{float(summary['rating_segmentation_agreement']):.2f}"))
    return CaseView(
        family="MR",
        layers=(MapLayer(np.clip(activation, 0, 1), ACTIVATION_RGB, max_alpha=0.55,
                         floor=ACTIVATION_FLOOR),
                LabelLayer(labels, {1: colour}, outline=True)),
        markers=(), focus=_largest_slice(labels),
        legend=(Swatch(colour, "WMH mask (outline)", "outline"),
                Swatch(ACTIVATION_RGB, f"{what} map (opacity grows with the value from "
                                       f"{ACTIVATION_FLOOR})")),
        caption=(f"WMH mask outlined, the model's {what} map translucent on the "
                 f"{summary.get('modality', 'MR')} image."),
        headline=tuple(headline),
        tables=(_region_table(rows, reader_ratings, total), _zone_table(summary)),
        sections=(_reader_section(reader, reader_ratings, summary),),
        extent=result.array_on("regions", image) > 0)


def _largest_slice(labels: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """The voxel at the centre of the mask's largest axial-ish cross-section (array axis
    2), so that slice is shown; nothing when the mask is empty."""
    if not labels.any():
        return ()
    k = int(np.argmax((labels > 0).sum(axis=(0, 1))))
    i, j = np.argwhere(labels[:, :, k] > 0).mean(axis=0)
    return ((float(i), float(j), float(k)),)


def _region_table(rows: Sequence[dict], reader: dict[str, dict], total) -> Table:
    body: list[tuple[Cell, ...]] = []
    for row in rows:
        key = f"{row['region']}_{row['side']}"
        body.append((row["region"].replace("_", "-"), row["side"], row["lesion_ml"],
                     row["rating"], row["level"], reader.get(key, {}).get("rating")))
    body.append(("total", "", float(sum(r["lesion_ml"] for r in rows)), None, total,
                 reader.get("total", {}).get("rating")))
    return Table("arwmc", "WMH volume and ARWMC rating per region-side",
                 ("region", "side", "WMH (mL)", "expected rating (0-3)", "rating (0-3)",
                  "reader's rating"), tuple(body),
                 note="Rating: the most probable ARWMC level of the model's rating head "
                      "(total = sum of the 10 levels, 0-30); empty in the T1 mode.")


def _zone_table(summary: dict) -> Table:
    zones = summary.get("zone_ml") or {}
    return Table("zones", "WMH volume per zone (periventricular, deep, juxtacortical)",
                 ("zone", "WMH (mL)"),
                 tuple((name.replace("_", " "), float(value)) for name, value in zones.items()))


def _reader_ratings(reader: CaseFeedback | None) -> dict[str, dict]:
    """target -> ``{"rating", "reader", "time"}`` of the ratings that stand."""
    if reader is None:
        return {}
    from ..wmh.reader_ratings import RATING_KIND

    out = {}
    for target, record in reader.state().of_kind(RATING_KIND).items():
        rating = record.payload.get("rating")
        if rating is not None:
            out[target] = {"rating": int(rating), "reader": record.reader, "time": record.time}
    return out


def _reader_section(reader: CaseFeedback | None, ratings: dict[str, dict],
                    summary: dict) -> Section:
    if reader is None:
        return Section("reader", "Reader's decisions",
                       ("No feedback store was given, or it holds no case for this image.",))
    levels = summary.get("levels") or {}
    order = [t for t in REGIONS if t in ratings] + (["total"] if "total" in ratings else [])
    rows = tuple((t.replace("_", " "), levels.get(t, summary.get("arwmc_total") if t == "total"
                                                   else None),
                  ratings[t]["rating"], ratings[t]["reader"], when(ratings[t]["time"]))
                 for t in order)
    text = (f"Case {reader.case_id}: {len(rows)} rating(s) by a reader."
            if rows else f"Case {reader.case_id}: no ratings by a reader.")
    return Section("reader", "Reader's decisions", (text,), tables=(
        Table("reader-ratings", "ARWMC ratings a reader entered",
              ("region-side", "model", "reader", "by", "when"), rows),) if rows else ())


# ------------------------------------------------------------------------- cohort
def cohort_section(results: Sequence[PredictionFolder], names: Sequence[str],
                   links: Sequence[Link | str]) -> Section:
    """The WMH part of a cohort page: lesion load, ARWMC total against volume, a table."""
    volumes = [float(r.summary["lesion_ml"]) for r in results]
    rated = [(n, v, r.summary["arwmc_total"]) for n, v, r in zip(names, volumes, results)
             if r.summary.get("arwmc_total") is not None]
    figures: list[Figure] = [plots.histogram(
        "wmh-load", volumes, "WMH volume (mL)", "WMH lesion load",
        f"WMH volume of {len(volumes)} case(s).")]
    if rated:
        figures.append(plots.scatter(
            "wmh-rating-volume", [v for _, v, _ in rated], [t for _, _, t in rated],
            [n for n, _, _ in rated], "WMH volume (mL)", "ARWMC total (0-30)",
            "ARWMC total against WMH volume",
            f"{len(rated)} rated case(s); T1-mode results have no rating.", (-0.5, 30.5)))
    rows = tuple((link, " ".join(r.model), r.summary.get("modality"),
                  float(r.summary["lesion_ml"]), float(r.summary["brain_ml"]),
                  r.summary.get("arwmc_total"), "; ".join(r.out_of_distribution) or "–")
                 for r, link in zip(results, links))
    return Section("wmh", f"WMH ({len(results)} case(s))", figures=tuple(figures), tables=(
        Table("wmh-cases", "WMH cases", ("case", "model", "input", "WMH (mL)", "brain (mL)",
                                         "ARWMC total", "out of distribution"), rows),))

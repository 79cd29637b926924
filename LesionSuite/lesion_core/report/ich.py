"""What an ICH report shows: each haemorrhage component filled and outlined in its
subtype's colour (the label catalogue's) on the CT in the brain window; volume by subtype,
the components, the scan and slice probabilities, the reader's slice labels; on the cohort
page, the lesion load and the volume by subtype per case."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..feedback import CaseFeedback
from ..labels import ICH_SUBTYPE_ORDER, ICH_SUBTYPES
from ..volume import Volume
from . import plots
from .folders import PredictionFolder
from .html import Cell, Link, Section, Swatch, Table
from .mosaic import LabelLayer
from .reader import when
from .view import CaseView, ml, rgb255

#: Subtype key -> (label value, RGB 0-255), in label-value order (1-5).
SUBTYPE_COLOURS = {key: (label.value, rgb255(label.color))
                   for key, label in zip(ICH_SUBTYPE_ORDER, ICH_SUBTYPES)}


def case_view(result: PredictionFolder, image: Volume,
              reader: CaseFeedback | None) -> CaseView:
    """The report of one ICH result on ``image`` (its input CT)."""
    summary, slices = result.summary, result.outputs["slices"]
    labels = result.array_on("labels", image)
    present = sorted(int(v) for v in np.unique(labels) if 1 <= v <= 5)
    colours = {value: rgb for value, rgb in SUBTYPE_COLOURS.values()}
    subtypes = ", ".join(summary["subtypes"]) or "none"
    headline = (("haemorrhage", "yes" if summary["present"] else "no"),
                ("scan probability", f"{float(summary['scan_probability']):.3f}"),
                ("ICH volume", ml(summary["volume_ml"])), ("subtypes", subtypes))
    if summary.get("intracranial_ml") is not None:
        headline += (("intracranial volume", ml(summary["intracranial_ml"])),)
    return CaseView(
        family="CT", layers=(LabelLayer(labels, colours, fill_alpha=0.45, outline=True),),
        markers=(), focus=_component_centres(labels),
        legend=tuple(Swatch(rgb, key) for key, (value, rgb) in SUBTYPE_COLOURS.items()
                     if value in present) or (Swatch(colours[1], "no haemorrhage segmented"),),
        caption=("Haemorrhage components filled and outlined in the colour of their "
                 "subtype; slices through each component are shown first."),
        headline=headline,
        tables=(_subtype_table(summary), _component_table(summary),
                _slice_table(slices, summary)),
        sections=(_reader_section(reader, slices),))


def _component_centres(labels: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """Centres (voxel index) of the connected components, largest first."""
    components, count = ndimage.label(labels > 0)
    if count == 0:
        return ()
    sizes = np.bincount(components.ravel())[1:]
    centres = ndimage.center_of_mass(labels > 0, components, range(1, count + 1))
    order = np.argsort(-sizes, kind="stable")
    return tuple(tuple(float(v) for v in centres[n]) for n in order)


def _subtype_table(summary: dict) -> Table:
    by = summary["volume_ml_by_subtype"]
    rows = tuple((key, float(by.get(key, 0.0))) for key in ICH_SUBTYPE_ORDER)
    extra = tuple((key, float(v)) for key, v in by.items() if key not in ICH_SUBTYPE_ORDER)
    return Table("subtypes", "Haemorrhage volume by subtype", ("subtype", "volume (mL)"),
                 rows + extra + (("total", float(summary["volume_ml"])),))


def _component_table(summary: dict) -> Table:
    rows = tuple((n, c.get("subtype"), c.get("volume_ml"), c.get("first_slice"),
                  c.get("last_slice"))
                 for n, c in enumerate(summary.get("components") or [], start=1))
    return Table("components", "Haemorrhage components", ("#", "subtype", "volume (mL)",
                                                          "first slice", "last slice"), rows,
                 note=f"Slices are counted along array axis {summary['slice_axis']} of the CT.")


def _slice_table(slices: Sequence[dict], summary: dict) -> Table:
    shown = [s for s in slices if s["present"]]
    rows = tuple((s["slice"], s["probability"], max(ICH_SUBTYPE_ORDER, key=lambda k: s[k]),
                  s["area_mm2"]) for s in shown)
    return Table("slices", f"Slices with haemorrhage ({len(shown)} of {len(slices)})",
                 ("slice", "probability", "likeliest subtype", "area (mm²)"), rows,
                 note=f"Scan probability {float(summary['scan_probability']):.3f}; "
                      f"thresholds {summary.get('thresholds')}.")


def _reader_section(reader: CaseFeedback | None, slices: Sequence[dict]) -> Section:
    if reader is None:
        return Section("reader", "Reader's decisions",
                       ("No feedback store was given, or it holds no case for this image.",))
    from ..ich.reader_labels import reader_mask_versions, standing_slice_labels

    labels = standing_slice_labels(reader)
    model = {s["slice"]: s for s in slices}
    rows: list[tuple[Cell, ...]] = [
        (k, label.describe(), model.get(k, {}).get("probability"),
         None if k not in model else bool(model[k]["present"]),
         label.record.reader if label.record else None,
         when(label.record.time if label.record else None)) for k, label in labels.items()]
    masks = reader_mask_versions(reader)
    text = [f"Case {reader.case_id}: {len(rows)} slice label(s) by a reader."]
    if masks:
        text.append(f"The reader saved {len(masks)} version(s) of a corrected mask "
                    f"(latest: {Path(masks[-1]).name}).")
    return Section("reader", "Reader's decisions", tuple(text), tables=(Table(
        "reader-slices", "Slice labels a reader entered",
        ("slice", "reader", "model probability", "model: haemorrhage", "by", "when"),
        tuple(rows)),) if rows else ())


# ------------------------------------------------------------------------- cohort
def cohort_section(results: Sequence[PredictionFolder], names: Sequence[str],
                   links: Sequence[Link | str]) -> Section:
    """The ICH part of a cohort page: lesion load, volume by subtype, a table."""
    volumes = [float(r.summary["volume_ml"]) for r in results]
    series = {key: ([float(r.summary["volume_ml_by_subtype"].get(key, 0.0)) for r in results],
                    rgb) for key, (_, rgb) in SUBTYPE_COLOURS.items()}
    figures = (plots.histogram("ich-load", volumes, "ICH volume (mL)", "Haemorrhage load",
                               f"ICH volume of {len(volumes)} case(s)."),
               plots.stacked_bars("ich-subtypes", names, series, "volume (mL)",
                                  "Volume by subtype"))
    rows = tuple((link, " ".join(r.model), float(r.summary["scan_probability"]),
                  float(r.summary["volume_ml"]), ", ".join(r.summary["subtypes"]) or "–",
                  "; ".join(r.out_of_distribution) or "–")
                 for r, link in zip(results, links))
    return Section("ich", f"ICH ({len(results)} case(s))", figures=figures, tables=(
        Table("ich-cases", "ICH cases", ("case", "model", "scan probability", "ICH (mL)",
                                         "subtypes", "out of distribution"), rows, digits=2),))

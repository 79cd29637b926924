"""What a CMB report shows: each microbleed the detector kept circled, each candidate it
rejected circled in another colour, both with their ids (as in ``cmb_candidates.json``),
microbleeds a reader added in a third; counts by MARS location, the microbleeds and the
rejected candidates with their probabilities, the reader's decisions; on the cohort page,
the counts per case."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ..feedback import CaseFeedback, Record
from ..labels import CMB
from ..volume import Volume
from . import plots
from .folders import PredictionFolder
from .html import Cell, Link, Section, Swatch, Table
from .mosaic import PointMarker
from .reader import when
from .view import CaseView, rgb255

#: Colours of rejected candidates and of microbleeds a reader added (RGB 0-255).
REJECTED_RGB = (0, 190, 235)
ADDED_RGB = (80, 220, 80)
#: A circle's radius: the candidate's radius plus this margin (mm), so the dot stays visible.
_MARGIN_MM = 2.5
_LOCATIONS = ("lobar", "deep", "infratentorial")


def case_view(result: PredictionFolder, image: Volume,
              reader: CaseFeedback | None) -> CaseView:
    """The report of one CMB result on ``image`` (its input)."""
    document = result.summary
    candidates = document["candidates"]
    kept = [c for c in candidates if c["kept"]]
    rejected = [c for c in candidates if not c["kept"]]
    decisions = _decisions(reader, candidates)
    colour = rgb255(CMB.color)
    markers = [_marker(c, image, colour) for c in kept]
    markers += [_marker(c, image, REJECTED_RGB) for c in rejected]
    markers += [PointMarker(tuple(float(v) for v in image.ras_to_voxel(centre)),
                            float(r.payload.get("diameter_mm") or 3.0) / 2 + _MARGIN_MM,
                            ADDED_RGB, "+") for r, centre in decisions["added"]]
    by = Counter(c.get("dropped_by") for c in rejected)
    headline = (("microbleeds", str(len(kept))), ("candidates (stage 1)", str(len(candidates))),
                ("rejected", f"{by['stage2']} by the classifier, {by['cleanup']} by the "
                             "clean-up"),
                ("input", str(document.get("modality", "?"))))
    return CaseView(
        family="MR", layers=(), markers=tuple(markers),
        focus=tuple(tuple(m.ijk) for m in markers[:len(kept) + len(rejected)]),
        legend=(Swatch(colour, "microbleed (kept), with its id", "circle"),
                Swatch(REJECTED_RGB, "rejected candidate, with its id", "circle"),
                Swatch(ADDED_RGB, "added by a reader", "circle")),
        caption=("Circles: microbleeds the detector kept and candidates it rejected, "
                 "labelled with the ids of the tables below; slices through them are "
                 "shown first."),
        headline=headline,
        tables=(_location_table(kept), _kept_table(kept, decisions["matched"]),
                _rejected_table(rejected, decisions["matched"])),
        sections=(_reader_section(reader, decisions["standing"]),))


def _marker(candidate: dict, image: Volume, colour) -> PointMarker:
    radius = float(candidate.get("diameter_mm") or 3.0) / 2 + _MARGIN_MM
    return PointMarker(tuple(float(v) for v in image.ras_to_voxel(candidate["centre_ras"])),
                       radius, colour, f"#{candidate['id']}")


def _decisions(reader: CaseFeedback | None, candidates: Sequence[dict]) -> dict:
    """The standing decisions, per candidate id the decision it takes over
    (:func:`lesion_core.cmb.reader_decisions.match_decisions`), and the microbleeds a
    reader added with their centres (RAS mm)."""
    if reader is None:
        return {"standing": [], "matched": {}, "added": []}
    from ..cmb.reader_decisions import decision_centre, match_decisions, standing_decisions

    standing = standing_decisions(reader)
    matched = match_decisions(list(candidates), standing)
    added = [(r, decision_centre(r)) for r in standing.values()
             if r.payload.get("decision") == "add"]
    return {"standing": list(standing.values()),
            "matched": {c["id"]: r for c, r in zip(candidates, matched) if r is not None},
            "added": [(r, centre) for r, centre in added if centre is not None]}


def _decision(matched: dict[int, Record], identifier: int) -> str | None:
    record = matched.get(identifier)
    return None if record is None else str(record.payload.get("decision"))


def _location_table(kept: Sequence[dict]) -> Table:
    counts = Counter(str(c.get("location") or "unknown") for c in kept)
    order = [k for k in _LOCATIONS if k in counts] + sorted(set(counts) - set(_LOCATIONS))
    rows = tuple((name, counts[name]) for name in order) + (("total", len(kept)),)
    return Table("locations", "Microbleeds by location (MARS)", ("location", "microbleeds"), rows)


def _kept_table(kept: Sequence[dict], matched: dict[int, Record]) -> Table:
    rows = tuple((c["id"], c.get("location"), c.get("region"), c.get("diameter_mm"),
                  c.get("volume_mm3"), c.get("stage1_probability"),
                  c.get("stage2_probability"), _decision(matched, c["id"])) for c in kept)
    return Table("microbleeds", "Microbleeds (kept by all three stages)",
                 ("id", "location", "region", "diameter (mm)", "volume (mm³)",
                  "stage 1 p", "stage 2 p", "reader"), rows)


def _rejected_table(rejected: Sequence[dict], matched: dict[int, Record]) -> Table:
    rows = tuple((c["id"], c.get("dropped_by"), c.get("reason"), c.get("location"),
                  c.get("region"), c.get("stage1_probability"), c.get("stage2_probability"),
                  _decision(matched, c["id"])) for c in rejected)
    return Table("rejected", "Rejected candidates", ("id", "dropped by", "reason", "location",
                                                      "region", "stage 1 p", "stage 2 p",
                                                      "reader"), rows)


def _reader_section(reader: CaseFeedback | None, standing: Sequence[Record]) -> Section:
    if reader is None:
        return Section("reader", "Reader's decisions",
                       ("No feedback store was given, or it holds no case for this image.",))
    counts = Counter(str(r.payload.get("decision")) for r in standing)
    rows: list[tuple[Cell, ...]] = []
    for r in sorted(standing, key=lambda r: r.time):
        centre = r.payload.get("centre_ras") or []
        rows.append((str(r.payload.get("decision")), r.payload.get("candidate_id"),
                     ", ".join(f"{float(v):.1f}" for v in centre), r.reader, when(r.time)))
    text = (f"Case {reader.case_id}: " + ", ".join(f"{n} {d}" for d, n in sorted(counts.items()))
            if rows else f"Case {reader.case_id}: no decisions by a reader.")
    return Section("reader", "Reader's decisions", (text,), tables=(Table(
        "reader-decisions", "Decisions on candidates (matched to this result within 3 mm)",
        ("decision", "candidate id then", "centre (RAS mm)", "by", "when"), tuple(rows)),)
        if rows else ())


# ------------------------------------------------------------------------- cohort
def cohort_section(results: Sequence[PredictionFolder], names: Sequence[str],
                   links: Sequence[Link | str]) -> Section:
    """The CMB part of a cohort page: microbleed counts, a table."""
    kept = [sum(bool(c["kept"]) for c in r.summary["candidates"]) for r in results]
    rejected = [len(r.summary["candidates"]) - k for r, k in zip(results, kept)]
    figures = (plots.histogram("cmb-load", kept, "microbleeds per case", "Microbleed count",
                               f"Microbleeds of {len(kept)} case(s).", whole=True),
               plots.stacked_bars("cmb-counts", names, {
                   "microbleeds": (kept, rgb255(CMB.color)),
                   "rejected candidates": (rejected, REJECTED_RGB)},
                   "candidates", "Microbleeds and rejected candidates"))
    rows = tuple((link, " ".join(r.model), r.summary.get("modality"), k, k + n,
                  "; ".join(r.out_of_distribution) or "–")
                 for r, link, k, n in zip(results, links, kept, rejected))
    return Section("cmb", f"CMB ({len(results)} case(s))", figures=figures, tables=(
        Table("cmb-cases", "CMB cases", ("case", "model", "input", "microbleeds",
                                         "candidates", "out of distribution"), rows),))

"""A task's figures as TID 1500 measurement groups, each on the SEG segment it was made on.

From the result's summary (the JSON document ``predict`` writes) and the SEG written for
it (:mod:`.seg`, segments from :mod:`.segments`):

* **WMH**: the lesion volume (mL) and the ARWMC total on the WMH segment; per ARWMC
  region-side (finding site: the region, with laterality) its volume (mL) and rating
  (0-3); per reporting zone its volume (mL). All of them reference the WMH segment.
* **CMB**: the count, also per MARS category (a TID 1501 group, no segment); per kept
  microbleed, on its own segment, its volume (mm3) and diameter (mm) with the MARS
  category and region as finding sites, and its centre as an Image Region (a POINT on the
  source slice nearest to it, TID 1410 group with the same tracking identifier).
* **ICH**: the scan-level probability of haemorrhage and the total volume (mL, TID 1501);
  per subtype present, on its segment, its volume (mL); absent subtypes get a 0 mL
  measurement without a segment (TID 1501), so every subtype of the summary is reported.

Numbers are the summary's, unchanged: the SR's volumes equal the JSON summary's.
Every group carries the algorithm (name, version, model) and a tracking identifier; a
group on a whole segment uses the segment's Tracking UID. A reader's decisions
(:class:`.review.Review`) are added to the groups they concern (see :mod:`.review`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..labels import BRAIN, CMB, ICH_ANY, ICH_SUBTYPES, WMH
from . import codes
from .review import Review
from .specs import AlgorithmInfo, SegmentPlan

if TYPE_CHECKING:
    import highdicom as hd
    from pydicom import Dataset

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


class _Builder:
    """What every group needs: the SEG, the plan, the algorithm, new tracking UIDs."""

    def __init__(self, seg: "Dataset", plan: SegmentPlan, algorithm: AlgorithmInfo):
        import highdicom as hd

        self.hd = hd
        self.seg = seg
        self.plan = plan
        self.algorithm_id = hd.sr.AlgorithmIdentification(
            name=algorithm.name, version=algorithm.version,
            parameters=[f"model {algorithm.model_name} {algorithm.model_version}"])
        self.tracking_uids = {int(item.SegmentNumber): str(item.TrackingUID)
                              for item in seg.SegmentSequence if "TrackingUID" in item}

    def tracking(self, identifier: str, segment_number: int | None = None):
        uid = self.tracking_uids.get(segment_number) if segment_number else None
        return self.hd.sr.TrackingIdentifier(uid=uid or self.hd.UID(),
                                             identifier=identifier[:64])

    def segment(self, number: int):
        # Built by hand: highdicom's from_segmentation needs per-frame segment numbers,
        # which a one-segment SEG keeps in the shared groups and an empty segment lacks.
        series = str(self.seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
        return self.hd.sr.ReferencedSegment(
            sop_class_uid=str(self.seg.SOPClassUID),
            sop_instance_uid=str(self.seg.SOPInstanceUID), segment_number=number,
            source_series=self.hd.sr.SourceSeriesForSegmentation(series))

    def measurement(self, name, value: float, unit, sites: Sequence = (), method=None):
        """A measurement: the algorithm's, or a reader's (``method`` given, no algorithm)."""
        return self.hd.sr.Measurement(name=name, value=float(value), unit=unit,
                                      finding_sites=list(sites) or None, method=method,
                                      algorithm_id=None if method else self.algorithm_id)

    def decision(self, record):
        """A reader's decision on a microbleed as a qualitative evaluation."""
        return self.hd.sr.QualitativeEvaluation(
            codes.reader_decision(), codes.decision_value(record.payload["decision"]))

    def site(self, location, side: str | None = None):
        return self.hd.sr.FindingSite(anatomic_location=location,
                                      laterality=codes.laterality(side) if side else None)

    def volumetric(self, identifier: str, number: int, finding, sites: Sequence,
                   measurements: Sequence, evaluations: Sequence = (),
                   own_tracking: bool = True, session: str | None = None):
        return self.hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=self.tracking(identifier, number if own_tracking else None),
            referenced_segment=self.segment(number), finding_type=finding,
            finding_category=codes.coded(WMH.category), algorithm_id=self.algorithm_id,
            finding_sites=list(sites) or None, measurements=list(measurements),
            qualitative_evaluations=list(evaluations) or None, session=session)

    def image_level(self, identifier: str, finding, measurements: Sequence,
                    evaluations: Sequence = (), session: str | None = None):
        return self.hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=self.tracking(identifier), finding_type=finding,
            finding_category=codes.coded(WMH.category), algorithm_id=self.algorithm_id,
            measurements=list(measurements) or None,
            qualitative_evaluations=list(evaluations) or None, session=session)


# ------------------------------------------------------------------------------ WMH
def wmh_groups(b: _Builder, summary: dict, review: Review | None = None) -> list:
    from ..atlas.arwmc import REGIONS

    spec = b.plan.segments[0]
    finding = codes.coded(WMH.type)
    reader = review.ratings() if review else {}

    def reader_items(target: str, name) -> tuple[list, str | None]:
        if target not in reader:
            return [], None
        value, record = reader[target]
        return ([b.measurement(name, value, codes.score_unit(), method=codes.reader_rating())],
                review.session([record]))

    whole = [b.measurement(codes.volume(), summary["lesion_ml"], codes.millilitre())]
    if summary.get("arwmc_total") is not None:
        whole.append(b.measurement(codes.arwmc_total(), summary["arwmc_total"],
                                   codes.score_unit()))
    extra, session = reader_items("total", codes.arwmc_total())
    groups = [b.volumetric("WMH", spec.number, finding, [b.site(codes.coded(BRAIN))],
                           whole + extra, session=session)]
    levels = summary.get("levels") or {}
    for name in REGIONS:
        region, side = name.rsplit("_", 1)
        items = [b.measurement(codes.volume(), summary["region_ml"][name], codes.millilitre())]
        if levels.get(name) is not None:
            items.append(b.measurement(codes.arwmc_rating(), levels[name], codes.score_unit()))
        extra, session = reader_items(name, codes.arwmc_rating())
        groups.append(b.volumetric(
            f"WMH {region.replace('_', '-')} {side}", spec.number, finding,
            [b.site(codes.arwmc_region(region), side)], items + extra,
            own_tracking=False, session=session))
    for name, ml in (summary.get("zone_ml") or {}).items():
        kind, lobe, side = name.split("_")
        groups.append(b.volumetric(
            f"WMH {kind} {lobe} {side}", spec.number, finding,
            [b.site(codes.wmh_zone(kind, lobe), side)],
            [b.measurement(codes.volume(), ml, codes.millilitre())], own_tracking=False))
    return groups


# ------------------------------------------------------------------------------ CMB
def _centre_region(b: _Builder, centre_ras: Sequence[float], sources: Sequence["Dataset"]):
    """The Image Region (POINT, pixel column/row) of a RAS point on the source slice
    nearest to it, or None when it lies off the images."""
    lps = _RAS_TO_LPS @ np.asarray(centre_ras, float)
    first = sources[0]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in sources])
    k = int(np.argmin(np.abs((positions - lps) @ normal)))
    dr, dc = (float(v) for v in first.PixelSpacing)
    offset = lps - positions[k]
    column, row_index = float(offset @ row) / dc, float(offset @ col) / dr
    if not (-0.5 <= column <= int(first.Columns) - 0.5 and
            -0.5 <= row_index <= int(first.Rows) - 0.5):
        return None
    hd = b.hd
    # SCOORD pixel coordinates: (column, row), the top-left corner of the first pixel at
    # (0, 0), so a pixel's centre is at index + 0.5.
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[column + 0.5, row_index + 0.5]]),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=str(sources[k].SOPClassUID),
            referenced_sop_instance_uid=str(sources[k].SOPInstanceUID)))


def cmb_groups(b: _Builder, summary: dict, sources: Sequence["Dataset"],
               review: Review | None = None) -> list:
    from ..atlas.mars import CATEGORIES

    finding = codes.coded(CMB.type)
    candidates = {str(c["id"]): c for c in summary.get("candidates", [])}
    kept = [c for c in summary.get("candidates", []) if c.get("kept")]
    decisions = review.cmb_by_candidate(summary.get("candidates", [])) if review else {}
    counts = [b.measurement(codes.number_of_lesions(), summary.get("count", len(kept)),
                            codes.count_unit())]
    for category in CATEGORIES:
        n = sum(1 for c in kept if c.get("location") == category)
        counts.append(b.measurement(codes.number_of_lesions(), n, codes.count_unit(),
                                    [b.site(codes.mars_category(category))]))
    session = None
    if review and review.cmb_decisions():
        counts += [b.measurement(codes.number_of_lesions(), n, codes.count_unit(),
                                 method=codes.decision_value(decision))
                   for decision, n in review.cmb_counts().items()]
        session = review.session(review.cmb_decisions())
    groups = [b.image_level("CMB count", finding, counts, session=session)]
    for spec in b.plan.segments:
        candidate = candidates.get(spec.key)
        if candidate is None:
            continue  # the empty segment of a result without microbleeds
        sites = [b.site(codes.mars_category(str(candidate.get("location") or "unknown")))]
        region = codes.mars_region(str(candidate.get("region") or ""))
        if region is not None:
            sites.append(b.site(region))
        items = []
        if candidate.get("volume_mm3") is not None:
            items.append(b.measurement(codes.volume(), candidate["volume_mm3"],
                                       codes.cubic_millimetre()))
        if candidate.get("diameter_mm") is not None:
            items.append(b.measurement(codes.diameter(), candidate["diameter_mm"],
                                       codes.millimetre()))
        record = decisions.get(spec.key)
        groups.append(b.volumetric(
            spec.tracking_id, spec.number, finding, sites, items,
            [b.decision(record)] if record else (),
            session=review.session([record]) if record else None))
        centre = _centre_region(b, candidate["centre_ras"], sources)
        if centre is not None:
            groups.append(b.hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=b.tracking(spec.tracking_id, spec.number),
                referenced_region=centre, finding_type=finding,
                finding_category=codes.coded(CMB.category), algorithm_id=b.algorithm_id,
                finding_sites=sites, geometric_purpose=codes.concept("111010", "DCM",
                                                                     "Center")))
    return groups


# ------------------------------------------------------------------------------ ICH
def ich_groups(b: _Builder, summary: dict, review: Review | None = None) -> list:
    from ..labels import ICH_SUBTYPE_KEYS

    finding_any = codes.coded(ICH_ANY.type)
    scan = [b.measurement(codes.probability(), summary["scan_probability"], codes.no_units()),
            b.measurement(codes.volume(), summary["volume_ml"], codes.millilitre())]
    evaluations = [b.hd.sr.QualitativeEvaluation(codes.finding(),
                                                 codes.present(bool(summary.get("present"))))]
    labels = review.slice_labels() if review else {}
    session = None
    if labels:
        flags = [flag for flag, _ in labels.values()]
        scan += [b.measurement(codes.reader_slices(flag), flags.count(flag), codes.count_unit(),
                               method=codes.reader_rating()) for flag in (True, False)]
        session = review.session([record for _, record in labels.values()])
    groups = [b.image_level("ICH scan", finding_any, scan, evaluations, session=session)]
    by_key = {key: label for label in ICH_SUBTYPES
              for value, key in ICH_SUBTYPE_KEYS.items() if label.value == value}
    volumes = summary.get("volume_ml_by_subtype") or {}
    for key, ml in volumes.items():
        spec = b.plan.by_key(key)
        finding = codes.coded(by_key[key].type) if key in by_key else finding_any
        measurement = b.measurement(codes.volume(), ml, codes.millilitre())
        if spec is not None:
            groups.append(b.volumetric(spec.tracking_id, spec.number, finding,
                                       [b.site(codes.coded(BRAIN))], [measurement]))
        else:
            groups.append(b.image_level(f"ICH {key}", finding, [measurement]))
    return groups


def measurement_groups(task: str, seg: "Dataset", plan: SegmentPlan, summary: dict,
                       source_datasets: Sequence["Dataset"], algorithm: AlgorithmInfo,
                       review: Review | None = None) -> list:
    """The measurement groups of ``task``'s result (see the module notes); ``review``:
    a reader's decisions on it (:mod:`.review`), or None."""
    builder = _Builder(seg, plan, algorithm)
    if task == "wmh":
        return wmh_groups(builder, summary, review)
    if task == "cmb":
        return cmb_groups(builder, summary, source_datasets, review)
    if task == "ich":
        return ich_groups(builder, summary, review)
    raise ValueError(f"no DICOM SR for task {task!r}")

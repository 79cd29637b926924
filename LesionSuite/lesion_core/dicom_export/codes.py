"""The coded concepts of the DICOM SEG and SR objects LesionSuite writes.

Lesion categories and types come from :mod:`lesion_core.labels` (SNOMED CT, ``SCT``),
the names of measurements and units from DICOM (``DCM``), SNOMED CT and UCUM, as the
DICOM standard's context groups list them (pydicom's code dictionary holds those
groups). Concepts that no public coding scheme has (the ARWMC rating and its regions,
the deep-T1-WMH zones, the MARS categories, a reader's decision) use LesionSuite's own
coding scheme :data:`SCHEME` (``99LSUITE``: a private scheme, its designator starting
with "99" as DICOM PS3.16 8.2 requires), declared in each SR's Coding Scheme
Identification Sequence.

Checked codes. The SNOMED CT codes of ``lesion_core.labels`` were checked against public
code lists; :data:`UNVERIFIED` names those that were not found in one, and every SEG
segment with such a code says so in its Segment Description. Where the DICOM standard
gives one of the codes another meaning text (49755003: CID 7150 says "Morphologically
Abnormal Structure"), the standard's text is written (:data:`STANDARD_MEANINGS`), so a
viewer that matches meanings finds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..labels import Code

if TYPE_CHECKING:
    from highdicom.sr import CodedConcept

#: LesionSuite's private coding scheme (designator, name written in the SR).
SCHEME = "99LSUITE"
SCHEME_NAME = "LesionSuite private concepts"

#: Code value -> the meaning text DICOM's context group gives it, where it differs from
#: the one in :mod:`lesion_core.labels` (which Slicer's terminology uses).
STANDARD_MEANINGS = {"49755003": "Morphologically Abnormal Structure"}

#: SNOMED CT codes of :mod:`lesion_core.labels` not found in a public code list: used
#: as they are, and marked in the SEG's Segment Description and in docs/dicom.md.
UNVERIFIED = {
    "68752002": "Extradural hemorrhage (epidural haemorrhage)",
    "2032001": "Cerebral edema (perihaematomal oedema)",
}


def coded(code: Code) -> "CodedConcept":
    """A :class:`~lesion_core.labels.Code` as a highdicom CodedConcept, with DICOM's
    meaning text where the standard gives one (:data:`STANDARD_MEANINGS`)."""
    from highdicom.sr import CodedConcept

    meaning = STANDARD_MEANINGS.get(code.value, code.meaning) if code.scheme == "SCT" \
        else code.meaning
    return CodedConcept(code.value, code.scheme, meaning)


def private(value: str, meaning: str) -> "CodedConcept":
    """A concept of LesionSuite's private scheme :data:`SCHEME`."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value, SCHEME, meaning)


def concept(value: str, scheme: str, meaning: str) -> "CodedConcept":
    from highdicom.sr import CodedConcept

    return CodedConcept(value, scheme, meaning)


# --------------------------------------------------------------- standard concepts
# Measurement names (DICOM CID 7469 / DCM), units (UCUM, CID 7181), laterality (CID 244).
def volume() -> "CodedConcept":
    return concept("118565006", "SCT", "Volume")


def diameter() -> "CodedConcept":
    return concept("81827009", "SCT", "Diameter")


def number_of_lesions() -> "CodedConcept":
    return concept("246206008", "SCT", "Number of lesions")


def probability() -> "CodedConcept":
    return concept("122157", "DCM", "Probability")


def millilitre() -> "CodedConcept":
    return concept("mL", "UCUM", "milliliter")


def cubic_millimetre() -> "CodedConcept":
    return concept("mm3", "UCUM", "cubic millimeter")


def millimetre() -> "CodedConcept":
    return concept("mm", "UCUM", "millimeter")


def no_units() -> "CodedConcept":
    return concept("1", "UCUM", "no units")


def score_unit() -> "CodedConcept":
    """UCUM annotation unit of a rating scale's points."""
    return concept("{score}", "UCUM", "score")


def count_unit() -> "CodedConcept":
    return concept("{count}", "UCUM", "count")


def laterality(side: str) -> "CodedConcept | None":
    """SNOMED CT Left / Right for ``"left"`` / ``"right"`` (None otherwise)."""
    return {"left": concept("7771000", "SCT", "Left"),
            "right": concept("24028007", "SCT", "Right")}.get(side)


def present(is_present: bool) -> "CodedConcept":
    return (concept("52101004", "SCT", "Present") if is_present
            else concept("272519000", "SCT", "Absent"))


def finding() -> "CodedConcept":
    return concept("121071", "DCM", "Finding")


# ---------------------------------------------------------------- private concepts
# Code values are SH (at most 16 characters): short, stable abbreviations.
_ARWMC_REGIONS = {"frontal": "FR", "parieto_occipital": "PO", "temporal": "TE",
                  "infratentorial": "IT", "basal_ganglia": "BG"}
_ZONE_KINDS = {"periventricular": "PV", "deep": "DP", "juxtacortical": "JC"}
_LOBES = {"frontal": "F", "posterior": "P"}
_MARS = {"lobar": "LOB", "deep": "DEEP", "infratentorial": "INFRA", "outside": "OUT",
         "unknown": "UNK"}
_DECISIONS = {"accept": ("ACC", "Accepted by reader"), "reject": ("REJ", "Rejected by reader"),
              "add": ("ADD", "Added by reader")}


def arwmc_rating() -> "CodedConcept":
    """The ARWMC (age-related white matter changes) rating of a region-side, 0-3."""
    return private("ARWMC-RATING", "ARWMC rating")


def arwmc_total() -> "CodedConcept":
    """The ARWMC total, 0-30 (the sum of the ten region-side ratings)."""
    return private("ARWMC-TOTAL", "ARWMC total score")


def arwmc_region(region: str) -> "CodedConcept":
    """An ARWMC region (``frontal``, ``parieto_occipital``, ``temporal``,
    ``infratentorial``, ``basal_ganglia``), sides apart (laterality says which)."""
    return private(f"ARWMC-{_ARWMC_REGIONS[region]}",
                   f"ARWMC {region.replace('_', '-')} region")


def wmh_zone(kind: str, lobe: str) -> "CodedConcept":
    """A deep-T1-WMH reporting zone without its side: ``kind`` periventricular, deep or
    juxtacortical, ``lobe`` frontal or posterior."""
    return private(f"WMH-{_ZONE_KINDS[kind]}-{_LOBES[lobe]}",
                   f"{kind} {lobe} white matter zone")


def mars_category(category: str) -> "CodedConcept":
    """A MARS microbleed location category (``lobar``, ``deep``, ``infratentorial``;
    ``outside`` and ``unknown`` where the atlas could not place it)."""
    return private(f"MARS-{_MARS.get(category, 'UNK')}", f"MARS {category} location")


#: MARS regions (:mod:`lesion_core.atlas.mars`) as the SNOMED CT anatomic concepts DICOM's
#: context groups list (CID 7151 / 7153 / 7702); the rest in the private scheme.
_MARS_REGIONS_SCT = {
    "brainstem": ("119238007", "Brain Stem"), "cerebellum": ("113305005", "Cerebellum"),
    "thalamus": ("42695009", "Thalamus"), "internal_capsule": ("85637007", "internal capsule"),
    "external_capsule": ("10517005", "external capsule"),
    "corpus_callosum": ("88442005", "Corpus callosum"), "insula": ("36169008", "Insula"),
    "frontal": ("83251001", "Frontal lobe"), "temporal": ("78277001", "Temporal lobe"),
    "parietal": ("16630005", "Parietal lobe"), "occipital": ("31065004", "Occipital lobe")}
_MARS_REGIONS_PRIVATE = {"basal_ganglia": "BG", "periventricular_white_matter": "PVWM",
                         "deep_white_matter": "DWM", "ventricle": "VENT"}


def mars_region(region: str) -> "CodedConcept | None":
    """The anatomic concept of a MARS region (``"thalamus"``, ``"frontal"``...): SNOMED CT
    where DICOM lists one, else private; None for ``""``, ``"outside"`` and the unknown."""
    if region in _MARS_REGIONS_SCT:
        return concept(*_MARS_REGIONS_SCT[region][:1], "SCT", _MARS_REGIONS_SCT[region][1])
    if region in _MARS_REGIONS_PRIVATE:
        return private(f"MARS-R-{_MARS_REGIONS_PRIVATE[region]}",
                       f"MARS {region.replace('_', ' ')}")
    return None


def reader_decision() -> "CodedConcept":
    return private("READER-DECISION", "Reader decision")


def decision_value(decision: str) -> "CodedConcept":
    """A reader's decision on a finding: ``accept``, ``reject`` or ``add``."""
    value, meaning = _DECISIONS[decision]
    return private(f"DEC-{value}", meaning)


def reader_rating() -> "CodedConcept":
    """The method of a rating a reader gave (beside the model's)."""
    return private("RDR-RATING", "Reader rating")


def reader_slices(haemorrhage: bool) -> "CodedConcept":
    """The count of slices a reader labelled with (or without) haemorrhage."""
    return (private("RDR-SLICES-POS", "Slices labelled haemorrhage by reader") if haemorrhage
            else private("RDR-SLICES-NEG", "Slices labelled no haemorrhage by reader"))


def all_private_codes() -> list["CodedConcept"]:
    """Every private concept (for the tests: values fit SH, meanings fit LO)."""
    out = [arwmc_rating(), arwmc_total(), reader_decision(), reader_rating(),
           reader_slices(True), reader_slices(False)]
    out += [arwmc_region(r) for r in _ARWMC_REGIONS]
    out += [wmh_zone(k, lobe) for k in _ZONE_KINDS for lobe in _LOBES]
    out += [mars_category(c) for c in _MARS]
    out += [decision_value(d) for d in _DECISIONS]
    out += [mars_region(r) for r in _MARS_REGIONS_PRIVATE]
    return out

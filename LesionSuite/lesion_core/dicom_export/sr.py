"""DICOM Structured Report (TID 1500 Measurement Report, Comprehensive 3D SR) with
highdicom.

:func:`build_sr` wraps measurement groups (:mod:`.measurements`) in a Measurement Report:
the observation context names the algorithm as the device observer (its name, the
manufacturer "LesionSuite", the model's name and version) and, where a reader's
decisions are reported, the reader as the person observer; the procedure reported is
the source series' (CT head or MR brain); the evidence is the source series and the SEG
the measurements reference. LesionSuite's private codes are declared in the Coding
Scheme Identification Sequence. :func:`sr_volumes` reads the volumes back (tests, and
anyone checking a report against the JSON summary).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from . import codes
from .specs import AlgorithmInfo

if TYPE_CHECKING:
    import highdicom as hd
    from pydicom import Dataset

#: Series number of the SR: the source series' plus this.
SR_SERIES_OFFSET = 2000


def _procedure(source: "Dataset") -> "hd.sr.CodedConcept":
    """LOINC code of the imaging procedure the source series comes from."""
    if str(source.get("Modality", "")) == "CT":
        return codes.concept("24725-4", "LN", "CT Head")
    return codes.concept("24590-2", "LN", "MR Brain")


def _series_number(source: "Dataset") -> int:
    try:
        return int(source.get("SeriesNumber") or 0) + SR_SERIES_OFFSET
    except (TypeError, ValueError):
        return SR_SERIES_OFFSET


def build_sr(source_datasets: Sequence["Dataset"], seg: "Dataset", groups: list,
             algorithm: AlgorithmInfo, reader: str | None = None,
             series_number: int | None = None) -> "hd.sr.Comprehensive3DSR":
    """A Comprehensive 3D SR holding one TID 1500 Measurement Report of ``groups``.

    ``source_datasets``: the source series (slice order; pixel data not needed);
    ``seg``: the SEG the groups reference; ``reader``: the reader whose decisions the
    groups include (person observer), or None.
    """
    import highdicom as hd
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    device = hd.sr.ObserverContext(
        observer_type=codes.concept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=algorithm.name[:64], manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.model_name[:64], serial_number=algorithm.model_version[:64]))
    person = None
    if reader:
        person = hd.sr.ObserverContext(
            observer_type=codes.concept("121006", "DCM", "Person"),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=_person_name(reader)))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person,
                                                     observer_device_context=device),
        procedure_reported=_procedure(source_datasets[0]),
        imaging_measurements=groups,
        title=codes.concept("126000", "DCM", "Imaging Measurement Report"))
    scheme = CodingSchemeIdentificationItem(
        designator=codes.SCHEME, name=codes.SCHEME_NAME,
        responsible_organization="LesionSuite")
    return hd.sr.Comprehensive3DSR(
        evidence=list(source_datasets) + [seg], content=report[0],
        series_instance_uid=hd.UID(),
        series_number=series_number or _series_number(source_datasets[0]),
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=algorithm.manufacturer,
        is_complete=True, is_final=False, is_verified=False,
        series_description=f"{algorithm.name} measurements"[:64],
        coding_schemes=[scheme])


def _person_name(reader: str) -> str:
    """A reader's name as a DICOM person name (``Family^Given``): a name without ``^``
    (a login name) is one family-name component, marked so by a trailing ``^``;
    characters PN forbids (``\\``, ``=``, control characters) are dropped."""
    cleaned = "".join(ch for ch in reader if ch.isprintable() and ch not in "\\=")[:63]
    cleaned = cleaned or "unknown"
    return cleaned if "^" in cleaned else cleaned + "^"


def sr_measurements(sr, code_value: str = "118565006") -> dict[str, list[float]]:
    """Tracking identifier -> the values of every measurement named ``code_value``
    (default SCT 118565006 Volume, in the unit written: mL or mm3) in the measurement
    groups of an SR. ``sr``: a path or a pydicom Dataset. Plain pydicom: any TID 1500
    report can be read so."""
    import pydicom

    dataset = sr if isinstance(sr, pydicom.Dataset) else pydicom.dcmread(sr)
    out: dict[str, list[float]] = {}
    for item in _walk(dataset):
        if item.get("ValueType") != "CONTAINER" or "ContentSequence" not in item:
            continue
        tracking = next((c.TextValue for c in item.ContentSequence
                         if c.get("ValueType") == "TEXT"
                         and c.ConceptNameCodeSequence[0].CodeValue == "112039"), None)
        for child in item.ContentSequence:
            if (tracking is not None and child.get("ValueType") == "NUM"
                    and child.ConceptNameCodeSequence[0].CodeValue == code_value):
                out.setdefault(tracking, []).append(
                    float(child.MeasuredValueSequence[0].NumericValue))
    return out


def _walk(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _walk(item)

"""The lesion label catalogue: label value, name, colour and coded meaning of every lesion class.

Pure Python (no slicer, vtk or qt). The MRML bridge (``LesionSuiteLib.segmentations``) turns a
:class:`LesionLabel` into a Slicer segment (name, colour, terminology); DICOM SEG / SR export
uses the same codes. One catalogue per task, keyed by the task name used everywhere else:

- ``"wmh"``: white-matter hyperintensity (value 1);
- ``"cmb"``: cerebral microbleed (value 1);
- ``"ich"``: the five RSNA haemorrhage subtypes (values 1-5) plus perihaematomal oedema (6);
- ``"ich_binary"``: any intracranial haemorrhage (value 1), for the binary ICH mask.

Label value 0 is background in every label map. Colours are RGB in 0..1.

Codes are SNOMED CT (coding scheme designator ``"SCT"``, as DICOM writes it). Each code
meaning is the SNOMED CT preferred term of that concept, not our display name. Where a
concept could not be checked against more than one independent public listing, the entry
says so in a comment; check such codes in a SNOMED CT browser before relying on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class Code:
    """One coded concept: coding scheme designator, code value, code meaning."""

    scheme: str
    value: str
    meaning: str

    def as_dict(self) -> dict:
        """``{"CodingSchemeDesignator", "CodeValue", "CodeMeaning"}`` as DICOM names them."""
        return {"CodingSchemeDesignator": self.scheme, "CodeValue": self.value,
                "CodeMeaning": self.meaning}


@dataclass(frozen=True)
class LesionLabel:
    """One lesion class of a label map.

    Attributes:
        value: voxel value in the label map (1..255; 0 is background).
        name: short display name, also the Slicer segment name.
        color: RGB display colour, each component in 0..1.
        category: segmented property category (e.g. morphologically altered structure).
        type: segmented property type (what the lesion is).
        region: anatomic region the lesion lies in (brain by default), or None.
        description: one sentence for tooltips and reports.
    """

    value: int
    name: str
    color: tuple[float, float, float]
    category: Code
    type: Code
    region: Code | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not 1 <= int(self.value) <= 255:
            raise ValueError(f"label value must be 1..255, got {self.value}")
        if len(self.color) != 3 or not all(0.0 <= c <= 1.0 for c in self.color):
            raise ValueError(f"colour must be three numbers in 0..1, got {self.color}")

    @property
    def color_rgb255(self) -> tuple[int, int, int]:
        """Colour as 0..255 integers (DICOM SEG, HTML reports)."""
        return tuple(int(round(c * 255)) for c in self.color)  # type: ignore[return-value]


# ------------------------------------------------------------------------- codes
#: Category of every lesion: DICOM CID 7150 "Morphologically Altered Structure".
MORPHOLOGICALLY_ALTERED = Code("SCT", "49755003", "Morphologically Altered Structure")
#: Anatomic region of every lesion here.
BRAIN = Code("SCT", "12738006", "Brain")

# White-matter hyperintensity has no SNOMED CT concept of its own that we could verify;
# 22811006 "Leukoencephalopathy" is the nearest broader disorder concept found in a
# public SNOMED CT code list. Uncertain: check against a SNOMED CT browser.
_WMH = Code("SCT", "22811006", "Leukoencephalopathy")
# 723857007 "Silent micro-hemorrhage of brain": found in several independent public lists.
_CMB = Code("SCT", "723857007", "Silent micro-hemorrhage of brain")
_HAEMORRHAGE = Code("SCT", "50960005", "Hemorrhage")
_INTRACRANIAL = Code("SCT", "1386000", "Intracranial hemorrhage")
# 274100004 is "Cerebral hemorrhage" (seen in a public SNOMED CT code list).
_INTRAPARENCHYMAL = Code("SCT", "274100004", "Cerebral hemorrhage")
# Intraventricular: 274110009 "Intraventricular hemorrhage (disorder)", found in two
# independent public code sets (a FHIR set and a stroke-registry concept list); still to
# be checked in a SNOMED CT browser. 230706003 is "Hemorrhagic cerebral infarction", not IVH.
_INTRAVENTRICULAR = Code("SCT", "274110009", "Intraventricular hemorrhage")
_SUBARACHNOID = Code("SCT", "21454007", "Subarachnoid intracranial hemorrhage")
# Subdural 35486000 (also in a public ICH export code list) and extradural 68752002: widely
# used; not re-checked against a SNOMED CT browser.
_SUBDURAL = Code("SCT", "35486000", "Subdural intracranial hemorrhage")
_EPIDURAL = Code("SCT", "68752002", "Extradural hemorrhage")
# 2032001 "Cerebral edema"; uncertain (from memory, not found in a public listing here).
_OEDEMA = Code("SCT", "2032001", "Cerebral edema")


WMH = LesionLabel(1, "White matter hyperintensity", (0.96, 0.78, 0.15), MORPHOLOGICALLY_ALTERED,
                  _WMH, BRAIN, "Hyperintense white-matter lesion of presumed vascular origin.")
CMB = LesionLabel(1, "Cerebral microbleed", (0.85, 0.10, 0.55), MORPHOLOGICALLY_ALTERED,
                  _CMB, BRAIN, "Small round blooming hypointensity on SWI / T2*-GRE.")
ICH_ANY = LesionLabel(1, "Intracranial haemorrhage", (0.90, 0.12, 0.12), MORPHOLOGICALLY_ALTERED,
                      _INTRACRANIAL, BRAIN, "Any acute intracranial haemorrhage on CT.")
ICH_SUBTYPES: tuple[LesionLabel, ...] = (
    LesionLabel(1, "Intraparenchymal haemorrhage", (0.86, 0.08, 0.08), MORPHOLOGICALLY_ALTERED,
                _INTRAPARENCHYMAL, BRAIN, "Haemorrhage within the brain parenchyma."),
    LesionLabel(2, "Intraventricular haemorrhage", (0.18, 0.45, 0.95), MORPHOLOGICALLY_ALTERED,
                _INTRAVENTRICULAR, BRAIN, "Blood within the ventricular system."),
    LesionLabel(3, "Subarachnoid haemorrhage", (0.98, 0.60, 0.10), MORPHOLOGICALLY_ALTERED,
                _SUBARACHNOID, BRAIN, "Blood in the subarachnoid space (sulci, cisterns)."),
    LesionLabel(4, "Subdural haemorrhage", (0.20, 0.75, 0.30), MORPHOLOGICALLY_ALTERED,
                _SUBDURAL, BRAIN, "Crescentic collection between dura and arachnoid."),
    LesionLabel(5, "Epidural haemorrhage", (0.62, 0.30, 0.85), MORPHOLOGICALLY_ALTERED,
                _EPIDURAL, BRAIN, "Lentiform collection between skull and dura."),
    LesionLabel(6, "Perihaematomal oedema", (0.55, 0.85, 0.95), MORPHOLOGICALLY_ALTERED,
                _OEDEMA, BRAIN, "Hypodense oedema surrounding an intraparenchymal haematoma."),
)

#: Short keys of the five RSNA haemorrhage subtypes by label value (1-5 of the ``"ich"``
#: map): "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural".
#: The keys name the subtypes in files (prediction CSV and JSON, weak-label tables, reader
#: labels); this module is light, so readers that must not load torch use it.
ICH_SUBTYPE_KEYS: dict[int, str] = {label.value: label.name.split()[0].lower()
                                    for label in ICH_SUBTYPES if label.value <= 5}
#: The same five keys in label-value order: the ICH task's subtype vocabulary (classifier
#: outputs, file columns, reader labels, synthetic subtypes) everywhere.
ICH_SUBTYPE_ORDER: tuple[str, ...] = tuple(ICH_SUBTYPE_KEYS[v] for v in sorted(ICH_SUBTYPE_KEYS))

#: The catalogue: task name -> its labels, in label-value order.
LABELS_BY_TASK: dict[str, tuple[LesionLabel, ...]] = {
    "wmh": (WMH,),
    "cmb": (CMB,),
    "ich": ICH_SUBTYPES,
    "ich_binary": (ICH_ANY,),
}


def labels_for(task: str) -> tuple[LesionLabel, ...]:
    """Labels of a task (``"wmh"``, ``"cmb"``, ``"ich"``, ``"ich_binary"``)."""
    try:
        return LABELS_BY_TASK[task.lower()]
    except KeyError:
        known = ", ".join(sorted(LABELS_BY_TASK))
        raise KeyError(f"unknown task {task!r}; known tasks: {known}") from None


def as_value_map(labels: Iterable[LesionLabel] | Mapping[int, LesionLabel] | None
                 ) -> dict[int, LesionLabel]:
    """Normalise a list of labels or a ``{value: label}`` mapping to ``{value: label}``.

    Raises ValueError when two labels share a value, or a mapping key and the label's
    own value disagree.
    """
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        out = {}
        for key, label in labels.items():
            if int(key) != int(label.value):
                raise ValueError(f"key {key} does not match label value {label.value}")
            out[int(key)] = label
        return out
    out = {}
    for label in labels:
        if int(label.value) in out:
            raise ValueError(f"two labels share the value {label.value}")
        out[int(label.value)] = label
    return out


def label_by_name(name: str, labels: Iterable[LesionLabel] | None = None) -> LesionLabel | None:
    """Find a label by display name (case-insensitive) in ``labels`` or the whole catalogue."""
    pool = labels if labels is not None else (
        lab for task_labels in LABELS_BY_TASK.values() for lab in task_labels)
    wanted = name.strip().lower()
    for label in pool:
        if label.name.lower() == wanted:
            return label
    return None

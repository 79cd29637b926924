"""What a DICOM export is made of: the algorithm, the segments, the segment map.

Plain dataclasses (no highdicom, no numpy work): the command line, the Slicer logic and
the tests fill them; :mod:`.seg` and :mod:`.sr` turn them into DICOM objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..labels import LesionLabel
from ..volume import Volume


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the result: the software and the model.

    ``name``: the algorithm (``"LesionSuite WMH"``), ``version``: the software's version
    (``lesion_core.__version__``), ``model_name`` / ``model_version``: the model the
    result came from (its bundle's name and version). Written as the SEG's Algorithm
    Identification, the SEG/SR equipment (manufacturer "LesionSuite", model name,
    software versions) and the SR's device observer.
    """

    name: str
    version: str
    model_name: str
    model_version: str
    manufacturer: str = "LesionSuite"

    @property
    def parameters(self) -> dict[str, str]:
        """Algorithm Parameters of the SEG (text)."""
        return {"model": self.model_name, "model_version": self.model_version}


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of a DICOM SEG.

    ``number``: the segment number (1, 2, ...), also its value in the segment map;
    ``label``: name, colour and codes (:mod:`lesion_core.labels`); ``segment_label``:
    the name written (defaults to the label's name; e.g. ``"Cerebral microbleed 3"``);
    ``tracking_id``: a short text that the SR's measurements of this segment repeat;
    ``key``: what the task calls it (``"wmh"``, a CMB candidate id, an ICH subtype key).
    """

    number: int
    label: LesionLabel
    tracking_id: str
    key: str = ""
    segment_label: str = ""

    @property
    def name(self) -> str:
        return self.segment_label or self.label.name


@dataclass
class SegmentPlan:
    """A result as segments: ``segment_map`` holds each voxel's segment number (0 none)
    on the source image's grid (``[i, j, k]``, uint8 or uint16); ``segments`` describe
    numbers 1..n in order. A result without a lesion has one segment and an empty map."""

    segment_map: Volume
    segments: list[SegmentSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        numbers = [s.number for s in self.segments]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"segment numbers must be 1..n in order, got {numbers}")
        if not numbers:
            raise ValueError("a SEG needs at least one segment")

    def by_key(self, key: str) -> SegmentSpec | None:
        return next((s for s in self.segments if s.key == key), None)

"""What a task's report shows of one result: :class:`CaseView`, filled by
:mod:`.wmh`, :mod:`.cmb` and :mod:`.ich` and laid out by :mod:`.case`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .html import Section, Swatch, Table
from .mosaic import Layer, PointMarker


@dataclass(frozen=True)
class CaseView:
    """One result as a report shows it.

    Attributes:
        family: ``"MR"`` or ``"CT"``: the display window and the head's extent.
        layers, markers: drawn on the mosaic (arrays and points on the image grid).
        focus: voxel indices (image grid) whose slices the mosaic must show, most
            important first.
        legend: the colours of the mosaic.
        caption: what the mosaic shows, one or two sentences.
        headline: ``(name, value)`` facts shown first (volumes, counts, probabilities).
        tables: the measurement tables.
        sections: further sections (ratings, candidates, the reader's decisions).
        extent: a mask (image grid) the shown slices are spread through, e.g. the
            brain; None: the head.
    """

    family: str
    layers: Tuple[Layer, ...]
    markers: Tuple[PointMarker, ...]
    focus: Tuple[Tuple[float, float, float], ...]
    legend: Tuple[Swatch, ...]
    caption: str
    headline: Tuple[Tuple[str, str], ...]
    tables: Tuple[Table, ...]
    sections: Tuple[Section, ...] = ()
    extent: Optional[np.ndarray] = None


def rgb255(colour) -> Tuple[int, int, int]:
    """An RGB colour in 0..1 (the label catalogue's) as 0-255 integers."""
    return tuple(int(round(float(c) * 255)) for c in colour)  # type: ignore[return-value]


def ml(value) -> str:
    """A volume in mL as text (two decimals), or a dash."""
    return "–" if value is None else f"{float(value):.2f} mL"

"""Normal structures and artefacts that defeat simple lesion detectors (no labels).

Filled in per kind; ``confounder_layers`` returns the layers painted after the lesions.
"""

from __future__ import annotations

import numpy as np

from .anatomy import SubjectAnatomy
from .contrast import LesionLayer


def confounder_layers(kind: str, anatomy: SubjectAnatomy, rng: np.random.Generator) -> list[LesionLayer]:
    """Layers of lesion mimics for subjects of ``kind`` ("wmh", "cmb", "ich")."""
    return []

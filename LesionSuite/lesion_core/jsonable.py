"""Plain JSON values from numpy-laden results (one converter for reports, targets, caches)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Convert numpy scalars, tuples and non-finite floats into plain JSON values.

    ``nan`` and ``+-inf`` become ``None`` (JSON has no such numbers); tuples become lists.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dataclass_from_json(cls, data: dict[str, Any]):
    """``cls(**data)`` with every list turned back into the tuple that JSON made it."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

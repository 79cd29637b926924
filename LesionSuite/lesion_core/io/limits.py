"""Size limits checked from a file's header, before its voxels are read into memory."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidImageError

#: Largest image accepted: 2^29 voxels (2 GiB as float32), far beyond any brain scan
#: (a 0.5 mm isotropic whole head is about 2.5e8 voxels).
MAX_VOXELS = 2 ** 29


def check_voxel_count(shape: Sequence[int], path: str | Path, max_voxels: int = MAX_VOXELS) -> None:
    """Refuse an image whose voxel count would not fit in memory for processing."""
    count = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if count > max_voxels:
        raise InvalidImageError(
            f"the image has {count:,} voxels ({' x '.join(str(int(n)) for n in shape)}), "
            f"more than the {max_voxels:,} that can be processed in memory",
            "crop it to the head or resample it to a coarser voxel size (e.g. 1 mm) first",
            path)

"""The MRML bridge: the only code that converts between LesionSuite data and Slicer MRML.

Every function takes the scene (or the nodes) as an argument and never reaches for
``slicer.mrmlScene``, ``slicer.app``, ``slicer.modules`` or Qt, so the same calls run in the
Slicer application and under the ``slicer-core`` wheel (tests; scenes from
:func:`LesionSuiteLib.scene.create_scene`).

Conventions: volumes are :class:`lesion_core.Volume` (``[i, j, k]`` array + 4x4 voxel->RAS
mm affine); points are ``(N, 3)`` RAS mm; label maps use :mod:`lesion_core.labels` values.

- volumes: :func:`volume_to_node`, :func:`node_to_volume`, :func:`probability_to_node`
- segmentations: :func:`labelmap_to_segmentation`, :func:`segmentation_to_labelmap`,
  :func:`segment_terminology`
- markups: :func:`points_to_markups`, :func:`markups_to_points`
- tables: :func:`rows_to_table`, :func:`table_to_rows`
- files: :func:`write_node` (``.seg.nrrd``, ``.mrk.json``, ``.nrrd``, ``.tsv`` ...)
"""

from __future__ import annotations

from pathlib import Path

from .markups_tables import markups_to_points, points_to_markups, rows_to_table, table_to_rows
from .segmentations import (LABEL_VALUE_TAG, labelmap_to_segmentation, segment_label_values,
                            segment_terminology, segmentation_to_labelmap,
                            terminology_string)
from .volumes import (node_ijk_to_ras, node_to_volume, probability_to_node,
                      update_volume_node, volume_to_node)

__all__ = [
    "LABEL_VALUE_TAG", "labelmap_to_segmentation", "markups_to_points", "node_ijk_to_ras",
    "node_to_volume", "points_to_markups", "probability_to_node", "rows_to_table",
    "segment_label_values", "segment_terminology", "segmentation_to_labelmap", "table_to_rows",
    "terminology_string", "update_volume_node", "volume_to_node", "write_node",
]


def write_node(node, path: str | Path) -> Path:
    """Write a node to ``path`` with its default storage node (format from the extension).

    ``.seg.nrrd`` for segmentations, ``.mrk.json`` for markups, ``.nrrd``/``.nii.gz`` for
    volumes, ``.tsv``/``.csv`` for tables. Raises OSError when Slicer reports a failure.
    """
    path = Path(path)
    storage = node.GetStorageNode()
    if storage is None:
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
    if storage is None:
        raise OSError(f"{path}: no storage node for a {node.GetClassName()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"{path}: Slicer could not write '{node.GetName()}'")
    return path

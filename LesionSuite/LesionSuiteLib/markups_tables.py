"""Points <-> markups fiducial nodes, and rows of measurements <-> table nodes.

Points (e.g. CMB candidates) are RAS millimetres, an ``(N, 3)`` float64 array, one row per
point, with per-point label, description and a ``selected`` flag (in LesionSuite: accepted
by the reader). Positions are stored and read back exactly (float64).

Tables are lists of dicts (one dict per row, same keys); each column gets one VTK type from
its values: all ``bool`` -> bit, all ``int`` -> int64, numbers -> double (``None`` -> NaN),
anything else -> string (``None`` -> ``""``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from vtkmodules.vtkCommonCore import (vtkBitArray, vtkDoubleArray, vtkStringArray,
                                      vtkTypeInt64Array)

# ------------------------------------------------------------------ markups


def points_to_markups(scene, points_ras, labels: Sequence[str] | None = None,
                      descriptions: Sequence[str] | None = None,
                      selected: Sequence[bool] | None = None, name: str = "Points",
                      node=None, locked: bool = False):
    """Put points into a (new, or cleared ``node``) ``vtkMRMLMarkupsFiducialNode``.

    Args:
        points_ras: ``(N, 3)`` RAS positions in mm.
        labels: one label per point (default ``"<name>-<n>"`` by Slicer's naming).
        descriptions: one free-text description per point.
        selected: one flag per point (default all True).
        locked: lock the points against moving them with the mouse.
    """
    points = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
    n = len(points)
    for what, seq in (("labels", labels), ("descriptions", descriptions),
                      ("selected", selected)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{what} has {len(seq)} entries for {n} points")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
    was_modifying = node.StartModify()
    try:
        node.RemoveAllControlPoints()
        for index, (x, y, z) in enumerate(points):
            label = "" if labels is None else str(labels[index])
            point_index = node.AddControlPoint(float(x), float(y), float(z), label)
            if descriptions is not None:
                node.SetNthControlPointDescription(point_index, str(descriptions[index]))
            node.SetNthControlPointSelected(point_index,
                                            True if selected is None else bool(selected[index]))
        node.SetLocked(bool(locked))
    finally:
        node.EndModify(was_modifying)
    return node


def markups_to_points(node, world: bool = True
                      ) -> tuple[np.ndarray, list[str], list[str], list[bool]]:
    """``(points (N, 3) RAS mm, labels, descriptions, selected)`` of a markups node.

    ``world=True`` gives positions with any parent transform applied (as shown in Slicer).
    """
    n = node.GetNumberOfControlPoints()
    points = np.zeros((n, 3), dtype=np.float64)
    position = [0.0, 0.0, 0.0]
    for index in range(n):
        if world:
            node.GetNthControlPointPositionWorld(index, position)
        else:
            node.GetNthControlPointPosition(index, position)
        points[index] = position
    labels = [node.GetNthControlPointLabel(i) for i in range(n)]
    descriptions = [node.GetNthControlPointDescription(i) for i in range(n)]
    selected = [bool(node.GetNthControlPointSelected(i)) for i in range(n)]
    return points, labels, descriptions, selected


# ------------------------------------------------------------------ tables


def _column_kind(values: list) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present) \
            and len(present) == len(values):
        return "bit"
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                       for v in present) and len(present) == len(values):
        return "int"
    if present and all(isinstance(v, (int, float, np.integer, np.floating))
                       and not isinstance(v, (bool, np.bool_)) for v in present):
        return "double"
    return "string"


def _make_column(name: str, values: list):
    kind = _column_kind(values)
    if kind == "bit":
        array = vtkBitArray()
    elif kind == "int":
        array = vtkTypeInt64Array()
    elif kind == "double":
        array = vtkDoubleArray()
    else:
        array = vtkStringArray()
    array.SetName(name)
    array.SetNumberOfValues(len(values))
    for row, value in enumerate(values):
        if kind == "string":
            array.SetValue(row, "" if value is None else str(value))
        elif kind == "double":
            array.SetValue(row, math.nan if value is None else float(value))
        else:
            array.SetValue(row, int(value))
    return array


def rows_to_table(scene, rows: Sequence[dict], name: str = "Table", table_node=None,
                  columns: Sequence[str] | None = None):
    """Write rows into a (new, or cleared ``table_node``) ``vtkMRMLTableNode``.

    Args:
        rows: one dict per row; missing keys count as None.
        columns: column order (default: keys in first-seen order).
    """
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    was_modifying = table_node.StartModify()
    try:
        table_node.RemoveAllColumns()
        table = table_node.GetTable()
        for column in columns:
            table.AddColumn(_make_column(str(column), [row.get(column) for row in rows]))
        table_node.SetUseColumnTitleAsColumnHeader(True)
        table_node.SetLocked(False)
        table.Modified()
        table_node.Modified()
    finally:
        table_node.EndModify(was_modifying)
    return table_node


def table_to_rows(table_node) -> list[dict]:
    """Rows of a table node as dicts: bit -> bool, integer -> int, real -> float, else str."""
    table = table_node.GetTable()
    n_rows = table.GetNumberOfRows()
    rows: list[dict] = [{} for _ in range(n_rows)]
    for col in range(table.GetNumberOfColumns()):
        array = table.GetColumn(col)
        name = array.GetName() or f"Column {col}"
        if array.IsA("vtkBitArray"):
            convert = lambda a, r: bool(a.GetValue(r))  # noqa: E731
        elif array.IsA("vtkDataArray") and array.GetDataTypeAsString() in ("float", "double"):
            convert = lambda a, r: float(a.GetValue(r))  # noqa: E731
        elif array.IsA("vtkDataArray"):
            convert = lambda a, r: int(a.GetValue(r))  # noqa: E731
        else:
            convert = lambda a, r: str(a.GetValue(r))  # noqa: E731
        for r in range(n_rows):
            rows[r][name] = convert(array, r)
    return rows

"""Volume <-> vtkMRMLScalarVolumeNode, and probability maps as coloured overlays.

Orientation contract (the one place it is converted):

- ``lesion_core.Volume.array`` is indexed ``[i, j, k]``; ``Volume.affine`` maps
  ``[i, j, k, 1]`` to RAS millimetres.
- VTK image memory has ``i`` varying fastest, so the numpy view of a Slicer volume is
  ``[k, j, i]``. We copy ``array`` in Fortran order into the VTK array, and read it back
  as ``[k, j, i]`` then transpose.
- Slicer keeps origin, spacing and a direction matrix separately; ``SetIJKToRASMatrix``
  splits our affine into them (spacing = column norms, direction = normalised columns), and
  ``GetIJKToRASMatrix`` recomposes it. The image data's own origin/spacing stay 0 and 1.

Voxel values are copied bit for bit. ``bool`` becomes ``uint8`` and ``float16`` becomes
``float32`` (VTK has no such types); every other numpy dtype is kept.
"""

from __future__ import annotations

import numpy as np
import slicer
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkCommonDataModel import vtkImageData

from lesion_core.errors import InvalidImageError
from lesion_core.volume import Volume

# ------------------------------------------------------------------ primitives


def matrix_to_numpy(matrix: vtkMatrix4x4) -> np.ndarray:
    """4x4 ``vtkMatrix4x4`` -> float64 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)],
                    dtype=np.float64)


def numpy_to_matrix(affine: np.ndarray) -> vtkMatrix4x4:
    """4x4 numpy array -> ``vtkMatrix4x4`` (values copied exactly)."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(affine[r, c]))
    return matrix


def vtk_supported(array: np.ndarray) -> np.ndarray:
    """The array in a dtype VTK stores, native byte order (bool->uint8, float16->float32)."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind not in "uif":
        raise InvalidImageError(f"voxel type {array.dtype} cannot be shown in Slicer",
                                "Convert the image to an integer or floating-point type.")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def array_to_image_data(array: np.ndarray) -> vtkImageData:
    """``[i, j, k]`` numpy array -> new ``vtkImageData`` (deep copy, origin 0, spacing 1)."""
    array = vtk_supported(array)
    if array.ndim != 3:
        raise InvalidImageError(f"expected a 3D array [i, j, k], got shape {array.shape}",
                                "Pass one 3D volume (split 4D series into volumes first).")
    flat = np.ravel(array, order="F")  # i fastest, as VTK stores voxels
    scalars = numpy_support.numpy_to_vtk(
        flat, deep=True, array_type=numpy_support.get_vtk_array_type(array.dtype))
    scalars.SetName("ImageScalars")
    image = vtkImageData()
    image.SetDimensions(*(int(n) for n in array.shape))
    image.GetPointData().SetScalars(scalars)
    return image


def image_data_to_array(image: vtkImageData) -> np.ndarray:
    """``vtkImageData`` scalars -> new C-contiguous ``[i, j, k]`` numpy array (a copy)."""
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise InvalidImageError("the volume node holds no voxels",
                                "Load or compute the image before using it.")
    if scalars.GetNumberOfComponents() != 1:
        raise InvalidImageError(
            f"the volume has {scalars.GetNumberOfComponents()} components per voxel",
            "Use a scalar (single-component) volume.")
    dims = image.GetDimensions()
    kji = numpy_support.vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])
    return np.ascontiguousarray(kji.transpose(2, 1, 0))


# ------------------------------------------------------------------ volume nodes


def update_volume_node(node, volume: Volume) -> None:
    """Replace the voxels and geometry of an existing volume node with ``volume``."""
    image = array_to_image_data(volume.array)
    node.SetIJKToRASMatrix(numpy_to_matrix(volume.affine))
    node.SetAndObserveImageData(image)


def volume_to_node(scene, volume: Volume, name: str = "Volume", node=None,
                   class_name: str = "vtkMRMLScalarVolumeNode"):
    """Add ``volume`` to ``scene`` as a new volume node (or update ``node``) and return it.

    Args:
        scene: the ``vtkMRMLScene``.
        volume: ``[i, j, k]`` array and voxel->RAS (mm) affine.
        name: node name (made unique by the scene).
        node: existing node to overwrite instead of adding one.
        class_name: ``"vtkMRMLScalarVolumeNode"`` or ``"vtkMRMLLabelMapVolumeNode"``.
    """
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
    update_volume_node(node, volume)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def node_ijk_to_ras(node, world: bool = True) -> np.ndarray:
    """4x4 voxel->RAS affine of a volume node.

    With ``world=True`` a linear parent transform is applied (as Slicer shows the volume);
    a non-linear one raises, because it cannot be expressed as an affine.
    """
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    affine = matrix_to_numpy(matrix)
    parent = node.GetParentTransformNode() if world else None
    if parent is not None:
        to_world = vtkMatrix4x4()
        if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(parent, None, to_world):
            raise InvalidImageError(
                f"volume '{node.GetName()}' is under a non-linear transform",
                "Harden the transform on the volume (Data module) and try again.")
        affine = matrix_to_numpy(to_world) @ affine
    return affine


def node_to_volume(node, world: bool = True) -> Volume:
    """Copy a volume node into a :class:`Volume` (``[i, j, k]`` array, voxel->RAS affine)."""
    image = node.GetImageData()
    if image is None:
        raise InvalidImageError(f"volume '{node.GetName()}' has no image data",
                                "Load or compute the image before using it.")
    return Volume(image_data_to_array(image), node_ijk_to_ras(node, world),
                  source=node.GetName())


# ------------------------------------------------------------------ probability overlay

# Anchor colours of the procedural "fire" colour map used when the Slicer colour files
# (e.g. Inferno) are not loaded, as under the slicer-core wheel: black -> purple -> red ->
# orange -> pale yellow, perceptually increasing in lightness.
_FIRE_ANCHORS = np.array([
    [0.00, 0.00, 0.00, 0.02],
    [0.25, 0.28, 0.05, 0.42],
    [0.50, 0.72, 0.16, 0.35],
    [0.75, 0.97, 0.50, 0.08],
    [1.00, 0.99, 0.98, 0.64],
])
FALLBACK_COLOR_NODE_NAME = "LesionSuiteFire"


def _find_color_node(scene, color_table: str):
    """Colour node by ID, by Slicer's colour-file ID convention, or by name."""
    for node_id in (color_table, f"vtkMRMLColorTableNodeFile{color_table}.txt",
                    f"vtkMRMLColorTableNode{color_table}"):
        node = scene.GetNodeByID(node_id)
        if node is not None and node.IsA("vtkMRMLColorNode"):
            return node
    nodes = scene.GetNodesByName(color_table)
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.IsA("vtkMRMLColorNode"):
            return node
    return None


def fallback_color_node(scene, n_colors: int = 256):
    """The procedural "fire" colour table (created once per scene)."""
    node = _find_color_node(scene, FALLBACK_COLOR_NODE_NAME)
    if node is not None:
        return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", FALLBACK_COLOR_NODE_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(n_colors)
    node.SetHideFromEditors(False)
    positions = np.linspace(0.0, 1.0, n_colors)
    rgb = [np.interp(positions, _FIRE_ANCHORS[:, 0], _FIRE_ANCHORS[:, c]) for c in (1, 2, 3)]
    for index in range(n_colors):
        node.SetColor(index, f"{positions[index]:.3f}", float(rgb[0][index]),
                      float(rgb[1][index]), float(rgb[2][index]), 1.0)
    node.SetAttribute("Category", "LesionSuite")
    return node


def probability_to_node(scene, volume: Volume, name: str = "Probability",
                        color_table: str = "Inferno", window: float = 1.0, level: float = 0.5,
                        hide_below: float | None = 0.05, node=None):
    """Add a probability map (values 0..1) as a float32 scalar volume with a colour map.

    Args:
        color_table: colour node ID or name (``"Inferno"`` in Slicer); when the scene lacks
            it (slicer-core wheel) a procedural fire map of our own is used.
        window, level: display window/level; the defaults span exactly 0..1.
        hide_below: voxels below this probability are not drawn (threshold), so the map
            can be shown as an overlay; None shows all.
    """
    prob = volume.with_array(np.asarray(volume.array, dtype=np.float32))
    node = volume_to_node(scene, prob, name, node=node)
    display = node.GetDisplayNode()
    color_node = _find_color_node(scene, color_table) or fallback_color_node(scene)
    display.SetAndObserveColorNodeID(color_node.GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(float(window), float(level))
    if hide_below is not None:
        display.SetAutoThreshold(False)
        display.SetThreshold(float(hide_below), float(np.finfo(np.float32).max))
        display.SetApplyThreshold(True)
    node.SetAttribute("LesionSuite.Type", "probability")
    return node

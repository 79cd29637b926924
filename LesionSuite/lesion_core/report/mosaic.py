"""An axial mosaic of an image with a result drawn on it, as one RGB array.

Inputs are on the image's own grid (arrays ``[i, j, k]``, points as continuous voxel
indices ``(i, j, k)``); :func:`render_mosaic` puts everything in RAS voxel order and draws
the chosen axial slices in the radiological convention (patient's right on the left of
each tile, anterior at the top; :mod:`.display`), bottom slice first, left to right and
top to bottom. Drawn in this order on the windowed grey image:

1. :class:`MapLayer`: a map in [0, 1] as a translucent colour (opacity grows with the
   value; the WMH activation, an ICH CAM);
2. :class:`LabelLayer`: label values filled translucently and/or outlined (1 pixel) in
   their colours (a WMH mask, ICH subtypes);
3. :class:`PointMarker`: circles around points (microbleeds) on every shown slice the
   point's radius reaches, with a text label;
4. text: each tile's S position (mm) and the R / L sides on the first tile.

Colours are RGB 0-255.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .display import (DisplayGrid, Window, choose_slices, display_grid, display_volume,
                      head_mask, window_for)

RGB = Tuple[int, int, int]
#: Pixels between tiles, and their colour.
GAP_PX = 2
_GAP_RGB = (40, 40, 40)
_TEXT_RGB = (255, 255, 255)


@dataclass(frozen=True)
class MapLayer:
    """A map (``[i, j, k]`` float, 0-1, image grid) drawn as ``colour`` with opacity
    ``max_alpha * (value - floor) / (1 - floor)``; values below ``floor`` are not drawn."""

    values: np.ndarray
    colour: RGB
    max_alpha: float = 0.6
    floor: float = 0.1


@dataclass(frozen=True)
class LabelLayer:
    """A label map (``[i, j, k]`` integers, image grid; 0 = background): each value of
    ``colours`` filled with opacity ``fill_alpha`` (0: not filled) and, with ``outline``,
    its boundary drawn opaque."""

    labels: np.ndarray
    colours: Mapping[int, RGB]
    fill_alpha: float = 0.0
    outline: bool = True


@dataclass(frozen=True)
class PointMarker:
    """A circle of ``radius_mm`` around ``ijk`` (continuous voxel index, image grid) with
    ``text`` beside it."""

    ijk: Tuple[float, float, float]
    radius_mm: float
    colour: RGB
    text: str = ""


Layer = Union[MapLayer, LabelLayer]


@dataclass(frozen=True)
class Tile:
    """One shown slice: ``k`` in the RAS-ordered image, the tile's top-left pixel in the
    mosaic, and the slice's S position (mm)."""

    k: int
    top: int
    left: int
    superior_mm: float


@dataclass
class Mosaic:
    """The drawn mosaic: ``rgb`` ``uint8 [rows, columns, 3]``, its tiles, the display
    geometry, the affines of the RAS-ordered image and of the image itself (to place
    points), the window used, and how many markers were drawn on a shown slice or on
    none."""

    rgb: np.ndarray
    tiles: Tuple[Tile, ...]
    grid: DisplayGrid
    ras_affine: np.ndarray
    source_affine: np.ndarray
    window: Window
    markers_shown: int = 0
    markers_hidden: int = 0

    def ras_voxel(self, ijk: Sequence[float]) -> np.ndarray:
        """A voxel index of the image's own grid in the RAS-ordered one."""
        ras = self.source_affine[:3, :3] @ np.asarray(ijk, float) + self.source_affine[:3, 3]
        inverse = np.linalg.inv(self.ras_affine)
        return inverse[:3, :3] @ ras + inverse[:3, 3]

    def pixel_of(self, ijk: Sequence[float]) -> tuple[int, int] | None:
        """``(row, column)`` in :attr:`rgb` of voxel ``ijk`` (image grid), or None when its
        slice is not shown or it lies outside the tile."""
        i, j, k = self.ras_voxel(ijk)
        tile = next((t for t in self.tiles if t.k == int(round(k))), None)
        if tile is None:
            return None
        row, column = self.grid.pixel_of(i, j)
        row, column = int(round(row)), int(round(column))
        if not (0 <= row < self.grid.rows and 0 <= column < self.grid.columns):
            return None
        return tile.top + row, tile.left + column


def render_mosaic(image: Volume, family: str, layers: Sequence[Layer] = (),
                  markers: Sequence[PointMarker] = (), focus: Sequence[Sequence[float]] = (),
                  extent: np.ndarray | None = None, count: int = 16, columns: int = 4,
                  tile_px: int = 240) -> Mosaic:
    """Draw ``count`` axial slices of ``image`` (``family`` ``"CT"`` or ``"MR"``: the
    window and the head's extent) with ``layers`` and ``markers`` (see the module notes).

    ``focus``: voxel indices (image grid) whose slices must be shown, most important
    first (a microbleed, a haemorrhage's centre); the other slices are evenly spaced
    through ``extent`` (a mask on the image grid, e.g. the brain; default: the head).
    The tiles show the whole head in-plane. ``tile_px``: a tile's longer side in pixels.
    """
    ras = display_volume(image)
    head = head_mask(ras.array, family)
    window = window_for(ras.array, family, head)
    grid = display_grid(ras, head, tile_px)
    source_affine = np.asarray(image.affine, float)
    mosaic = Mosaic(np.zeros((1, 1, 3), np.uint8), (), grid, ras.affine.copy(), source_affine,
                    window)
    wanted = [int(round(mosaic.ras_voxel(p)[2])) for p in focus]
    through = head
    if extent is not None and np.any(extent):
        through = display_volume(image.with_array(np.asarray(extent, bool))).array
    slices = choose_slices(through, count, wanted)
    ras_layers = [_to_ras(image, layer) for layer in layers]
    columns = max(1, min(columns, len(slices)))
    rows = -(-len(slices) // columns)
    height = rows * grid.rows + (rows - 1) * GAP_PX
    width = columns * grid.columns + (columns - 1) * GAP_PX
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = _GAP_RGB
    coordinates = grid.voxel_coordinates()
    tiles = []
    for index, k in enumerate(slices):
        top = (index // columns) * (grid.rows + GAP_PX)
        left = (index % columns) * (grid.columns + GAP_PX)
        tile = _draw_tile(ras.array[:, :, k], window, coordinates,
                          [(layer, array[:, :, k]) for layer, array in ras_layers])
        canvas[top:top + grid.rows, left:left + grid.columns] = tile
        tiles.append(Tile(k, top, left, grid.superior_mm(k)))
    mosaic.rgb, mosaic.tiles = canvas, tuple(tiles)
    texts = _draw_markers(mosaic, markers)
    _draw_text(mosaic, texts)
    return mosaic


def _to_ras(image: Volume, layer: Layer) -> tuple[Layer, np.ndarray]:
    """The layer's array in the RAS voxel order of :func:`display_volume`."""
    array = layer.values if isinstance(layer, MapLayer) else layer.labels
    return layer, display_volume(image.with_array(np.asarray(array))).array


def _draw_tile(slice_values: np.ndarray, window: Window, coordinates, layers) -> np.ndarray:
    """One tile, ``uint8 [rows, columns, 3]``: the windowed slice sampled at the pixel
    centres (linear), then the layers (labels sampled nearest, so outlines stay sharp)."""
    i, j = coordinates
    grey = ndimage.map_coordinates(window.scale(slice_values), [i, j], order=1, mode="nearest")
    rgb = np.repeat(grey[..., None] * 255.0, 3, axis=2)
    inside = (i > -0.5) & (j > -0.5) & (i < slice_values.shape[0] - 0.5) & (
        j < slice_values.shape[1] - 0.5)
    for layer, values in layers:
        if isinstance(layer, MapLayer):
            sampled = ndimage.map_coordinates(np.nan_to_num(values.astype(np.float32)), [i, j],
                                              order=1, mode="constant")
            alpha = layer.max_alpha * np.clip((sampled - layer.floor) / max(1 - layer.floor, 1e-6),
                                              0, 1) * inside
            rgb = rgb * (1 - alpha[..., None]) + np.asarray(layer.colour, float) * alpha[..., None]
        else:
            labels = ndimage.map_coordinates(values.astype(np.int32), [i, j], order=0,
                                             mode="constant", cval=0)
            rgb = _draw_labels(rgb, labels, layer)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _draw_labels(rgb: np.ndarray, labels: np.ndarray, layer: LabelLayer) -> np.ndarray:
    for value, colour in layer.colours.items():
        where = labels == value
        if not where.any():
            continue
        colour = np.asarray(colour, float)
        if layer.fill_alpha > 0:
            rgb[where] = rgb[where] * (1 - layer.fill_alpha) + colour * layer.fill_alpha
        if layer.outline:
            edge = where & ~ndimage.binary_erosion(where, border_value=0)
            rgb[edge] = colour
    return rgb


def _draw_markers(mosaic: Mosaic, markers: Sequence[PointMarker]
                  ) -> list[tuple[int, int, str, RGB]]:
    """Circle each marker on every shown slice its radius reaches (at least the nearest
    slice within half a slice); returns the texts to write ``(row, column, text, rgb)``."""
    from skimage.draw import circle_perimeter

    grid, canvas = mosaic.grid, mosaic.rgb
    slice_mm = float(grid.spacing[2])
    texts, shown = [], 0
    for marker in markers:
        i, j, k = mosaic.ras_voxel(marker.ijk)
        row, column = grid.pixel_of(i, j)
        radius = max(marker.radius_mm / grid.pixel_mm, 6.0)
        reach = max(marker.radius_mm, slice_mm / 2.0)
        hit = False
        for tile in mosaic.tiles:
            if abs(tile.k - k) * slice_mm > reach + 1e-6:
                continue
            hit = True
            for r in (radius, radius + 1):
                rr, cc = circle_perimeter(int(round(row)), int(round(column)), int(round(r)),
                                          shape=(grid.rows, grid.columns))
                canvas[tile.top + rr, tile.left + cc] = marker.colour
            if marker.text:
                texts.append((tile.top + int(round(row - radius)) - 12,
                              tile.left + int(round(column + radius * 0.7)), marker.text,
                              marker.colour))
        shown += hit
    mosaic.markers_shown, mosaic.markers_hidden = shown, len(markers) - shown
    return texts


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _draw_text(mosaic: Mosaic, texts: list[tuple[int, int, str, RGB]]) -> None:
    """Write the slice positions, R / L on the first tile and the markers' texts."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(mosaic.rgb)
    draw = ImageDraw.Draw(picture)
    small, grid = _font(11), mosaic.grid
    # A black edge keeps every text readable on bright and dark tissue alike.
    edge = {"font": small, "stroke_width": 1, "stroke_fill": (0, 0, 0)}
    for tile in mosaic.tiles:
        draw.text((tile.left + 3, tile.top + 2), f"S {tile.superior_mm:+.0f} mm",
                  fill=_TEXT_RGB, **edge)
    if mosaic.tiles:
        first = mosaic.tiles[0]
        middle = first.top + grid.rows // 2 - 6
        draw.text((first.left + 3, middle), "R", fill=_TEXT_RGB, **edge)
        draw.text((first.left + grid.columns - 10, middle), "L", fill=_TEXT_RGB, **edge)
    for row, column, text, colour in texts:
        draw.text((max(column, 0), max(row, 0)), text, fill=tuple(colour), **edge)
    mosaic.rgb = np.asarray(picture, np.uint8).copy()

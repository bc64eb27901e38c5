"""Where the automatic mask generator prompts: the point grids and the crop layout.

Both follow the official ``SamAutomaticMaskGenerator`` exactly, so that the same options give the same
prompts. Coordinates in this module are Segment Anything's ``(x, y)`` (column first) and crop boxes are
``(x0, y0, x1, y1)`` with exclusive ends: the grids are *generated* in that order, no ``(row, col)``
array is flipped here (:mod:`napari_sam.engine.decode.coords` stays the only place that converts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CropBox", "crop_boxes", "layer_point_grids", "point_grid"]


def point_grid(n_per_side: int) -> np.ndarray:
    """A regular ``n × n`` grid of cell centres in the unit square.

    Returns
    -------
    numpy.ndarray
        ``(n * n, 2)`` float64 ``(x, y)`` in ``(0, 1)``; x varies fastest.
    """
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1.0 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One unit-square grid per crop layer: layer ``i`` has ``int(n_per_side / downscale**i)`` per side."""
    return [point_grid(int(n_per_side / (downscale**i))) for i in range(n_layers + 1)]


@dataclass(frozen=True)
class CropBox:
    """A crop of the image: ``(x0, y0, x1, y1)`` pixel bounds, exclusive ends, and its crop layer."""

    x0: int
    y0: int
    x1: int
    y1: int
    layer: int

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the cropped image."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def crop_boxes(image_shape: tuple[int, int], n_layers: int, overlap_ratio: float) -> list[CropBox]:
    """The whole image, then ``2**i × 2**i`` overlapping crops for each layer ``i = 1 … n_layers``.

    Parameters
    ----------
    image_shape
        ``(rows, cols)`` of the image.
    n_layers
        Crop layers beyond the whole image.
    overlap_ratio
        Overlap of neighbouring crops as a fraction of the image's shorter side (scaled down with
        the number of crops per side, as in the official generator).

    Returns
    -------
    list of CropBox
        The first is the whole image (layer 0).
    """
    rows, cols = image_shape
    boxes = [CropBox(0, 0, cols, rows, 0)]
    short_side = min(rows, cols)

    def crop_len(length: int, n_crops: int, overlap: int) -> int:
        return math.ceil((overlap * (n_crops - 1) + length) / n_crops)

    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        width = crop_len(cols, per_side, overlap)
        height = crop_len(rows, per_side, overlap)
        x_starts = [int((width - overlap) * i) for i in range(per_side)]
        y_starts = [int((height - overlap) * i) for i in range(per_side)]
        for x0 in x_starts:  # the official order: x outer, y inner
            for y0 in y_starts:
                boxes.append(CropBox(x0, y0, min(x0 + width, cols), min(y0 + height, rows), layer))
    return boxes

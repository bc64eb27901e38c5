"""Large images in overlapping tiles: choosing the tiling and laying out the tile grid.

A slice larger than the tiling threshold is cut into square tiles of ``tile_size`` pixels that overlap
by ``2 * halo`` pixels (the last tile of a row / column is shifted back so every tile has the same
size). Each tile is embedded like a small image. Every pixel belongs to the *core* of exactly one tile
(the cores split each overlap in the middle); cores are used to pick tiles, not to cut masks.

An object (a box, or the bounding box of its foreground points) is decoded on the tile whose window
contains it with the widest margin. An object that no tile contains (it spans a tile boundary by more
than the halo) is decoded on a window centred on it, embedded on demand when the image is at hand
(:attr:`TiledEmbeddings.encode_window`), otherwise on the tile that overlaps it most, with its
prompts clipped to that tile. Masks are pasted back into image coordinates.

Choose ``tile_size`` close to the model's input size (1024 for nano and the official models, the
default): a smaller tile is enlarged to the model input, so objects look bigger than the model was
trained on and masks get worse (nano on 400-pixel tiles, 2.6× enlarged: box IoU ≈ 0.5 instead of 0.97).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from ..types import DEFAULT_TILE_THRESHOLD, TileSpec, Window, check_tile_threshold, tiling_option

__all__ = ["resolve_tiling", "tile_windows"]


def resolve_tiling(
    tile: Any, image_shape: Sequence[int], threshold: int = DEFAULT_TILE_THRESHOLD
) -> TileSpec | None:
    """The tiling to use for a ``(rows, cols)`` slice, or None.

    Parameters
    ----------
    tile
        None: tile with the default :class:`TileSpec` when the longest side exceeds ``threshold``.
        False: never tile. True: the default spec. An int ``tile_size``, a ``(tile_size, halo)`` pair
        or a :class:`TileSpec`: tile when the longest side exceeds ``tile_size`` (see
        :func:`~napari_sam.engine.types.tiling_option`).
    threshold
        Longest side above which ``tile=None`` tiles.

    Raises
    ------
    ValueError
        A ``tile`` or ``threshold`` of none of those forms.
    """
    threshold = check_tile_threshold(threshold)
    spec = tiling_option(tile)
    longest = max(int(image_shape[0]), int(image_shape[1]))
    if spec is False:
        return None
    if spec is None:
        return TileSpec() if longest > threshold else None
    assert isinstance(spec, TileSpec)
    return spec if longest > spec.tile_size else None


def _axis_tiles(length: int, size: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, core_start, core_stop)`` along one axis."""
    if length <= size:
        return [(0, length, 0, length)]
    stride = size - 2 * halo
    starts = list(range(0, length - size, stride))
    if not starts or starts[-1] != length - size:
        starts.append(length - size)
    bounds = [0]
    for left, right in itertools.pairwise(starts):
        bounds.append((right + left + size) // 2)  # middle of the overlap
    bounds.append(length)
    return [(s, s + size, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


def tile_windows(image_shape: Sequence[int], spec: TileSpec) -> tuple[Window, ...]:
    """The tiles of a ``(rows, cols)`` image, row-major."""
    rows = _axis_tiles(int(image_shape[0]), spec.tile_size, spec.halo)
    cols = _axis_tiles(int(image_shape[1]), spec.tile_size, spec.halo)
    return tuple(
        Window(bounds=(r0, c0, r1, c1), core=(cr0, cc0, cr1, cc1))
        for r0, r1, cr0, cr1 in rows
        for c0, c1, cc0, cc1 in cols
    )

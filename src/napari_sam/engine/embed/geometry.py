"""The geometry of one embedding run: the canvas scale and the tiling, from ``object_size=``.

Without ``object_size`` the model's fixed rule holds (the image's longer side to the canvas, nano
enlarging at most 2×; tiles only past ``tile_threshold``). With it, the scale is
``sam.object_scale.scale(object_size)`` (:mod:`napari_sam.engine.object_scale`), the same for every
slice of a stack, and the tiles follow from the scale unless ``tile=`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ...model import Sam
from ..object_scale import (
    canvas_scale,
    central_window,
    effective_object_size,
    estimate_object_size,
    scaled_tiling,
)
from ..preprocess import Preprocessor
from ..types import EmbedOptions, ImageLayout, TileSpec
from .layout import read_window
from .tiling import resolve_tiling

__all__ = ["Geometry", "resolve_geometry"]


@dataclass(frozen=True)
class Geometry:
    """How a run maps its image onto the canvas.

    Attributes
    ----------
    preprocessor
        The preprocessing, with :attr:`Preprocessor.scale` set when the objects' size chose it.
    tiling
        The tiles of each slice, or None (one embedding per slice).
    object_size
        The objects' diameter in image pixels the scale was chosen from (given or estimated); None
        when the model's fixed rule applies (``object_size=None``, or ``"auto"`` on an image without
        objects to measure).
    """

    preprocessor: Preprocessor
    tiling: TileSpec | None
    object_size: float | None


def resolve_geometry(
    image: Any, layout: ImageLayout, sam: Sam, options: EmbedOptions, preprocessor: Preprocessor
) -> Geometry:
    """The :class:`Geometry` of embedding ``image`` with ``options`` (``object_size``, ``tile``).

    ``object_size="auto"`` is estimated once, on the middle slice of a stack (a central window of at
    most 768 px a side, normalised as the run normalises it).
    """
    size = effective_object_size(options.object_size, sam)
    if size == "fixed":
        size = None
    elif size == "auto":
        size = _estimate(image, layout, preprocessor)
    if size is None:
        tiling = resolve_tiling(options.tile, layout.plane_shape, options.tile_threshold)
        return Geometry(preprocessor, tiling, None)
    scale = canvas_scale(float(size), sam.object_scale)
    if options.tile is None:
        scale, tiling = scaled_tiling(layout.plane_shape, scale, sam.image_size, object_size=float(size))
    else:
        tiling = resolve_tiling(options.tile, layout.plane_shape, options.tile_threshold)
    return Geometry(replace(preprocessor, scale=scale), tiling, float(size))


def _estimate(image: Any, layout: ImageLayout, preprocessor: Preprocessor) -> float | None:
    """The objects' size on a central window of the middle slice, at full resolution (a strided view
    would lose small objects of a big image); memory stays that of one window."""
    view = read_window(image, layout, layout.n_slices // 2, *central_window(layout.plane_shape))
    plane, _ = preprocessor.normalized(view)
    return estimate_object_size(plane)

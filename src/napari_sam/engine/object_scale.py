"""Object-scale geometry: how much an image is enlarged onto the model's canvas, from its objects' size.

A model segments objects well in a band of sizes on its 1024-pixel canvas (nano: roughly 40–60 px,
the sizes it was trained on; ``../shared/notes/object-scale.md``). The image's own size says nothing
about that: a 60 px plane of 14 px nuclei and a 2048 px field of 150 px cells need opposite
treatment. With ``object_size`` (the objects' typical diameter in image pixels, as Cellpose's
``diameter``), the image is scaled by the model's rule (:class:`~napari_sam.model.sam.ObjectScale`;
nano: ``3 * sqrt(14 / object_size)``, at most 3) — enlarged or shrunk — and,
when the scaled image is larger than the canvas, cut into tiles that each fill the canvas at that
scale (:func:`scaled_tiling`). ``object_size="auto"`` estimates it from the image
(:func:`estimate_object_size`); boxes give it directly (:func:`object_size_of_boxes`).

The one conversion is here; :class:`~napari_sam.engine.preprocess.Preprocessor` applies the scale
and the embedding pipeline the tiling, so prompts, masks, caches, propagation and the annotator all
see the same geometry (the embeddings' ``input_size`` / ``original_size`` carry it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .types import TileSpec

if TYPE_CHECKING:
    from ..model.sam import ObjectScale

__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "SCALE_TOLERANCE",
    "canvas_scale",
    "central_window",
    "effective_object_size",
    "estimate_object_size",
    "object_size_of_boxes",
    "scaled_tiling",
]

#: The most any rule may enlarge an image (beyond it tiles get tiny).
MAX_SCALE = 8.0
#: The most an image is shrunk.
MIN_SCALE = 1.0 / 8.0
#: A plane is embedded whole (not tiled) when that keeps its scale at least this fraction of the best
#: one. nano on 512² images: objects of 15.4 px and more stay whole at 2×; at 15 px that costs 0.05 box
#: IoU (0.857 against 0.907 in 4 tiles) and saves ~3/4 of the time (AIS ~1.5 s instead of ~5.5 s on 2
#: shared cores, bench_object_scale.py) — speed first for the common case, object_size= for the rest.
SCALE_TOLERANCE = 0.7
#: Estimates run on a view of at most this many pixels along the longer side (block means).
_ESTIMATE_SIDE = 1024
#: The background is a blur of sigma (longer side / this) of the view, made on a copy reduced to
#: about this many pixels a side (a wide blur of the full view cost ~1 s at 1024²).
_BACKGROUND_FRACTION = 8
_BACKGROUND_SIDE = 64
#: Connected components smaller than this (pixels of the view) are noise, not objects.
_MIN_COMPONENT = 12
#: Inscribed circle of a component → the object's equivalent diameter (ellipses, rough outlines).
_INSCRIBED_TO_DIAMETER = 1.12


def canvas_scale(object_size: float, rule: ObjectScale) -> float:
    """How much to scale an image whose objects are ``object_size`` px across, by the model's ``rule``
    (:attr:`napari_sam.model.Sam.object_scale`), clipped to ``[MIN_SCALE, MAX_SCALE]``.

    Examples
    --------
    >>> from napari_sam.model.sam import NANO_OBJECT_SCALE
    >>> canvas_scale(10.0, NANO_OBJECT_SCALE), canvas_scale(56.0, NANO_OBJECT_SCALE)
    (3.0, 1.5)
    """
    if isinstance(object_size, bool) or not object_size > 0:
        raise ValueError(f"object_size must be a positive number of pixels, got {object_size!r}")
    return float(min(MAX_SCALE, max(MIN_SCALE, rule.scale(float(object_size)))))


def scaled_tiling(
    plane_shape: Sequence[int],
    scale: float,
    image_size: int,
    *,
    object_size: float | None = None,
    tolerance: float = SCALE_TOLERANCE,
) -> tuple[float, TileSpec | None]:
    """The scale to use and the tiles, for a ``(rows, cols)`` plane whose objects want ``scale``.

    - The plane fits the canvas at ``scale``: ``(scale, None)`` (one embedding).
    - It fits at a scale no less than ``tolerance * scale`` (objects at least that fraction of their
      best size): ``(that scale, None)`` — one embedding instead of several tiles.
    - Otherwise: square tiles of ``image_size / scale`` pixels (each fills the canvas at ``scale``). The
      halo on each side is 1.5 objects (``object_size``; at least a sixteenth of a tile, at most just
      under half) — enough for every object to lie whole inside some tile, with fewer tiles than a
      fixed eighth (a 1024² image of 17 px nuclei: 9 tiles instead of 16). Without ``object_size``: an
      eighth of a tile, as the default 1024 / 128.

    Examples
    --------
    >>> scaled_tiling((256, 256), 2.0, 1024)
    (2.0, None)
    >>> scaled_tiling((512, 512), 2.8, 1024)  # 2.0 fills the canvas: close enough
    (2.0, None)
    >>> scaled_tiling((1024, 1024), 2.4, 1024)
    (2.4, TileSpec(tile_size=426, halo=53))
    >>> scaled_tiling((1024, 1024), 2.4, 1024, object_size=17.0)
    (2.4, TileSpec(tile_size=426, halo=26))
    """
    longest = max(int(plane_shape[0]), int(plane_shape[1]))
    fit = image_size / longest
    if fit >= scale:
        return float(scale), None
    if fit >= tolerance * scale:
        return float(fit), None
    tile = max(int(image_size / scale), 16)
    halo = tile // 8 if object_size is None else max(tile // 16, math.ceil(1.5 * object_size))
    return float(scale), TileSpec(tile, max(0, min(halo, (tile - 1) // 2)))


#: ``object_size="auto"`` measures a central window of at most this many pixels a side of a plane, at
#: full resolution (a reduced view of a big image would lose its small objects; memory stays bounded).
ESTIMATE_WINDOW = 768


def central_window(plane_shape: Sequence[int], side: int = ESTIMATE_WINDOW) -> tuple[slice, slice]:
    """Row and column slices of the central ``side × side`` window of a ``(rows, cols)`` plane (the whole
    plane along a shorter side).

    Examples
    --------
    >>> central_window((1000, 300), 768)
    (slice(116, 884, None), slice(0, 768, None))
    """
    rows, cols = int(plane_shape[0]), int(plane_shape[1])
    r0, c0 = max(0, (rows - side) // 2), max(0, (cols - side) // 2)
    return slice(r0, r0 + side), slice(c0, c0 + side)


def effective_object_size(object_size: float | str | None, sam: Any) -> float | str | None:
    """What ``object_size`` means for model ``sam``: itself, or None → the model's
    ``default_object_size`` (nano ``"auto"``; the official models None, the fixed rule)."""
    return object_size if object_size is not None else sam.default_object_size


def object_size_of_boxes(boxes: Any) -> float | None:
    """The median diameter of ``(N, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` boxes:
    ``sqrt(rows * cols)`` of each (the side of a square of the same area); None without boxes.

    Examples
    --------
    >>> object_size_of_boxes([[0, 0, 10, 40], [5, 5, 25, 25]])
    20.0
    """
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(arr) == 0:
        return None
    sides = np.sqrt(np.clip(arr[:, 2] - arr[:, 0], 1, None) * np.clip(arr[:, 3] - arr[:, 1], 1, None))
    return float(np.median(sides))


def estimate_object_size(plane: Any) -> float | None:
    """The typical diameter in pixels of the bright objects of a 2D image, or None when it has none.

    How: the image (channels averaged; large images as block means of at most 1024 px a side) is
    smoothed (Gaussian, sigma 1 px) and thresholded (Otsu); each connected component's largest
    inscribed circle (the maximum of its distance transform) measures one object — a cluster of
    touching round objects still measures one of them. Components under 12 px, thinner than 4 px or
    covering more than a quarter of the image (background above the threshold) are left out; the
    estimate is the median of the rest, weighted by the square root of their areas, times 1.12
    (inscribed circle → equivalent diameter of an ellipse).

    Measured on the synthetic ``nuclei`` preset (objects 5–100 px): within ~15 % of the labels' median
    equivalent diameter; on ``wide`` (faint, hazy, very noisy images) it can miss by 2× or more, where
    ``object_size=`` should be given. ~0.01 s on 256², ~0.3 s on 1024².

    Parameters
    ----------
    plane
        ``(H, W)`` or ``(H, W, C)`` real values (any scale; a normalised image is fine).

    Returns
    -------
    float or None
        Diameter in the image's pixels; None when no component qualifies (a blank image).

    Examples
    --------
    >>> from napari_sam.data.synthetic import preset
    >>> sample = preset("nuclei", shape=(256, 256), diameter=(20, 20)).sample(0)
    >>> round(estimate_object_size(sample.image) / 20, 1)
    1.0
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    arr = np.asarray(plane, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"plane must be (H, W) or (H, W, C), got shape {np.shape(plane)}")
    finite = np.isfinite(arr)
    if not finite.all():  # NaN / inf pixels count as the darkest finite value
        arr = np.where(finite, arr, arr[finite].min() if finite.any() else 0.0)
    factor = max(1, math.ceil(max(arr.shape) / _ESTIMATE_SIDE))
    if factor > 1:
        rows, cols = (arr.shape[0] // factor) * factor, (arr.shape[1] // factor) * factor
        arr = arr[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    # uneven illumination: take away the slowly varying background (a blur much wider than objects)
    arr = ndimage.gaussian_filter(arr, 1.0) - _background(arr)
    if not np.ptp(arr) > 0:
        return None
    foreground = arr > threshold_otsu(arr)
    components, count = ndimage.label(foreground)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    radius = np.asarray(ndimage.maximum(ndimage.distance_transform_edt(foreground), components, index))
    area = np.asarray(ndimage.sum_labels(foreground, components, index))
    keep = (area >= _MIN_COMPONENT) & (radius >= 2.0) & (area <= 0.25 * foreground.size)
    if not keep.any():
        return None
    diameters, weights = 2.0 * radius[keep], np.sqrt(area[keep])
    order = np.argsort(diameters)
    cumulative = np.cumsum(weights[order])
    median = diameters[order][int(np.searchsorted(cumulative, cumulative[-1] / 2))]
    return float(_INSCRIBED_TO_DIAMETER * median * factor)


def _background(arr: np.ndarray) -> np.ndarray:
    """The slowly varying background of a ``(H, W)`` float32 view: a Gaussian blur of sigma
    (longer side / 8), computed on a block-mean copy of about 64 px a side and enlarged back."""
    from scipy import ndimage

    step = max(1, max(arr.shape) // _BACKGROUND_SIDE)
    rows, cols = -(-arr.shape[0] // step) * step, -(-arr.shape[1] // step) * step
    padded = np.pad(arr, ((0, rows - arr.shape[0]), (0, cols - arr.shape[1])), mode="edge")
    small = padded.reshape(rows // step, step, cols // step, step).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, max(arr.shape) / _BACKGROUND_FRACTION / step)
    zoom = (rows / small.shape[0], cols / small.shape[1])
    return np.asarray(ndimage.zoom(small, zoom, order=1, grid_mode=True, mode="nearest"))[
        : arr.shape[0], : arr.shape[1]
    ]

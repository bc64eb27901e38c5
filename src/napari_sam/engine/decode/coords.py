"""The one place where napari coordinates become Segment Anything coordinates.

napari (and numpy, scikit-image) index images by ``(row, col)``; pixel ``i`` is centred on ``i``.
SAM takes points as ``(x, y) = (col, row)`` pixel indices and boxes as ``(x0, y0, x1, y1)`` with
inclusive corner pixels. Boxes in this library are ``(min_row, min_col, max_row, max_col)``,
half-open like ``skimage.measure.regionprops(...).bbox``.
"""

from __future__ import annotations

import math

import numpy as np

#: Words that name a point's kind, to its label (1: on the object, 0: background); read in any case,
#: surrounding spaces aside. napari's Points layers, their CSV exports and the prompt tables share them.
POINT_KIND_WORDS: dict[str, int] = {
    **dict.fromkeys(("positive", "pos", "foreground", "fg", "1", "true"), 1),
    **dict.fromkeys(("negative", "neg", "background", "bg", "0", "false"), 0),
}


def point_kind(word: str) -> int | None:
    """1 or 0 for a word of :data:`POINT_KIND_WORDS` (any case, spaces around ignored), else None."""
    return POINT_KIND_WORDS.get(word.strip().lower())


def points_rc_to_xy(points: np.ndarray) -> np.ndarray:
    """``(..., 2)`` ``(row, col)`` → ``(..., 2)`` ``(x, y)`` float64."""
    points = np.asarray(points, dtype=np.float64)
    return points[..., ::-1].copy()


def points_xy_to_rc(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`points_rc_to_xy`."""
    return points_rc_to_xy(points)


def boxes_rc_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(..., 4)`` half-open ``(min_row, min_col, max_row, max_col)`` → inclusive ``(x0, y0, x1, y1)``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    r0, c0, r1, c1 = (boxes[..., i] for i in range(4))
    return np.stack([c0, r0, c1 - 1.0, r1 - 1.0], axis=-1)


def boxes_xyxy_to_rc(boxes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`boxes_rc_to_xyxy`."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
    return np.stack([y0, x0, y1 + 1.0, x1 + 1.0], axis=-1)


def scale_xy(
    coords_xy: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Scale ``(..., 2)`` ``(x, y)`` from the original image to the resized model input frame."""
    coords = np.array(coords_xy, dtype=np.float64, copy=True)
    coords[..., 0] *= input_size[1] / original_size[1]
    coords[..., 1] *= input_size[0] / original_size[0]
    return coords


def vertices_to_box(vertices: np.ndarray) -> np.ndarray:
    """The half-open box of the pixels whose centres lie in the bounding rectangle of a shape's vertices.

    Parameters
    ----------
    vertices
        ``(V, 2)`` ``(row, col)`` or ``(V, 3)`` ``(z, row, col)`` vertices (a napari Shapes layer's
        rectangle: its 4 corners), numeric and finite.

    Returns
    -------
    numpy.ndarray
        float64 ``(4,)`` ``(min_row, min_col, max_row, max_col)``, or ``(6,)`` ``(z, min_row, min_col,
        z + 1, max_row, max_col)`` for 3D vertices, ``z`` the vertices' mean slice rounded. A side
        within ``1e-6`` of a pixel centre includes that pixel.

    Examples
    --------
    >>> vertices_to_box(np.array([[10, 20], [10, 60], [40, 60], [40, 20]]))
    array([10., 20., 41., 61.])
    """
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    r0, c0 = math.ceil(lo[-2] - 1e-6), math.ceil(lo[-1] - 1e-6)
    r1, c1 = math.floor(hi[-2] + 1e-6) + 1, math.floor(hi[-1] + 1e-6) + 1
    if v.shape[1] == 3:
        z = round(float(v[:, 0].mean()))
        return np.array([z, r0, c0, z + 1, r1, c1], dtype=np.float64)
    return np.array([r0, c0, r1, c1], dtype=np.float64)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """The half-open bounding box of a 2D mask, in this library's box convention.

    Parameters
    ----------
    mask
        ``(Y, X)`` array; its nonzero (True) pixels are the object.

    Returns
    -------
    numpy.ndarray
        ``(4,)`` int64 ``(min_row, min_col, max_row, max_col)``, half-open (the last row and column of
        the object are ``max_row - 1`` and ``max_col - 1``), as ``skimage.measure.regionprops(...).bbox``;
        :func:`boxes_rc_to_xyxy` turns it into SAM's inclusive ``(x0, y0, x1, y1)``.

    Raises
    ------
    ValueError
        When ``mask`` is not 2D or has no pixel set (an empty mask has no box).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask_to_box needs a (Y, X) mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise ValueError("mask_to_box needs a non-empty mask (an empty mask has no box)")
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], dtype=np.int64)

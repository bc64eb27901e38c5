"""Small-region clean-up of automatic masks: fill small holes, drop small islands.

Each mask is handled inside its bounding box plus a one-pixel ring (clipped to the image), never at
the full image size. With 8-connectivity every path from inside the box to the rest of the image
crosses that ring, so a background region that does not reach the ring is a hole of exactly the size
measured here. A background region reaching the ring is treated as the outside and never filled
(the official generator would fill it too only if the *whole* outside were smaller than the area
threshold, i.e. a mask covering nearly the entire image).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["clean_mask", "window_of"]

_EIGHT = np.ones((3, 3), dtype=bool)


def window_of(
    box_xyxy: np.ndarray, image_shape: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Where a mask's window lies: slices of box + ring in the image, and of the box in the window.

    ``box_xyxy`` is an inclusive ``(x0, y0, x1, y1)`` box; ``image_shape`` is ``(rows, cols)``.
    """
    x0, y0, x1, y1 = (int(v) for v in box_xyxy)
    rows, cols = image_shape
    r0, c0 = max(y0 - 1, 0), max(x0 - 1, 0)
    r1, c1 = min(y1 + 2, rows), min(x1 + 2, cols)
    outer = (slice(r0, r1), slice(c0, c1))
    inner = (slice(y0 - r0, y1 + 1 - r0), slice(x0 - c0, x1 + 1 - c0))
    return outer, inner


def clean_mask(
    window: np.ndarray, box_in_window: tuple[slice, slice], min_area: int
) -> tuple[np.ndarray, bool]:
    """Fill holes and remove islands smaller than ``min_area`` pixels in one mask window.

    Parameters
    ----------
    window
        ``(h, w)`` bool: the mask inside its bounding box plus the ring (see module notes).
    box_in_window
        Where the bounding box lies in ``window``; pixels outside it are ring pixels.
    min_area
        Regions with fewer pixels are filled (holes) or removed (islands); when every island is
        smaller, the largest one is kept.

    Returns
    -------
    mask, changed
        The cleaned ``(h, w)`` bool window, and whether anything changed.
    """
    ring = np.ones(window.shape, dtype=bool)
    ring[box_in_window] = False
    changed = False

    background, n_bg = ndimage.label(~window, structure=_EIGHT)
    if n_bg:
        sizes = np.bincount(background.ravel(), minlength=n_bg + 1)
        outside = np.unique(background[ring & (background > 0)])
        small = sizes < min_area
        small[0] = False
        small[outside] = False
        if small.any():
            window = window | small[background]
            changed = True

    islands, n_fg = ndimage.label(window, structure=_EIGHT)
    if n_fg:
        sizes = np.bincount(islands.ravel(), minlength=n_fg + 1)[1:]
        small = sizes < min_area
        if small.any():
            keep = ~small if not small.all() else np.arange(n_fg) == int(np.argmax(sizes))
            window = np.concatenate([[False], keep])[islands]
            changed = True
    return window, changed

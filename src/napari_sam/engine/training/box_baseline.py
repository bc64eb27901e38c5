"""A trivial baseline for box prompts: Otsu's threshold inside the box, largest bright component.

What a box alone gives without any model: the image values inside the box are split in two by one
global Otsu threshold (of those values only), the pixels above it (the brighter class) are grouped into
4-connected components, and the largest one, its holes filled, is the mask. Quality figures report it
beside the model's (``benchmarks/eval_quality.py``) so that a reader sees what the model adds.

Boxes are half-open ``(min_row, min_col, max_row, max_col)`` in image pixels, as everywhere in this
library (:func:`napari_sam.engine.decode.coords.mask_to_box`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def otsu_in_box(image: Any, box: Any) -> np.ndarray:
    """The Otsu-in-box baseline mask of one object.

    Parameters
    ----------
    image
        ``(H, W)`` image, or ``(H, W, C)`` with channels last (their mean is thresholded); any real
        dtype, finite values inside the box.
    box
        ``(4,)`` integer ``(min_row, min_col, max_row, max_col)``, half-open, with
        ``0 <= min_row <= max_row <= H`` and ``0 <= min_col <= max_col <= W``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool: the largest 4-connected component of the box's pixels above its Otsu threshold,
        holes filled; nothing outside the box. All False for a box without pixels (``min == max`` on an
        axis) or without contrast (every value inside the same).

    Raises
    ------
    ValueError
        A box of the wrong shape, not integral, inverted or outside the image; an image that is not
        2D (or 3D with channels last); non-finite values inside the box.
    TypeError
        A non-real image (complex, strings, objects).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((32, 32))
    >>> image[10:20, 12:18] = 5.0
    >>> mask = otsu_in_box(image, (6, 8, 24, 22))
    >>> int(mask.sum()), bool(mask[10:20, 12:18].all())
    (60, True)
    """
    plane = _plane(image)
    return _mask_in_box(plane, _check_boxes(box, plane.shape, single=True)[0])


def otsu_in_boxes(image: Any, boxes: Any) -> np.ndarray:
    """:func:`otsu_in_box` for many boxes on one image (the channel mean is taken once).

    Parameters
    ----------
    image
        ``(H, W)`` or ``(H, W, C)`` image, as for :func:`otsu_in_box`.
    boxes
        ``(N, 4)`` integer half-open ``(min_row, min_col, max_row, max_col)`` boxes (``N`` may be 0).

    Returns
    -------
    numpy.ndarray
        ``(N, H, W)`` bool, one baseline mask per box.

    Raises
    ------
    ValueError, TypeError
        As :func:`otsu_in_box`; a bad box is named by its index.
    """
    plane = _plane(image)
    checked = _check_boxes(boxes, plane.shape, single=False)
    masks = np.zeros((len(checked), *plane.shape), dtype=bool)
    for i, b in enumerate(checked):
        masks[i] = _mask_in_box(plane, b)
    return masks


def _plane(image: Any) -> np.ndarray:
    """``(H, W)`` float64 values to threshold: the image, or its channel mean."""
    array = np.asarray(image)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"image must have a real (integer, float or bool) dtype, got {array.dtype}")
    if array.ndim == 3:
        return array.astype(np.float64).mean(axis=2)
    if array.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, C) with channels last, got shape {array.shape}")
    return array.astype(np.float64)


def _check_boxes(boxes: Any, shape: tuple[int, ...], *, single: bool) -> np.ndarray:
    """``(N, 4)`` int64 boxes, checked against the image ``shape``."""
    name = "box" if single else "boxes"
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        message = f"{name} must be numbers (min_row, min_col, max_row, max_col), got {boxes!r}"
        raise ValueError(message) from None
    if array.ndim != (1 if single else 2) or array.shape[-1] != 4:
        raise ValueError(f"{name} must have shape {'(4,)' if single else '(N, 4)'}, got {array.shape}")
    array = array.reshape(-1, 4)
    if not np.isfinite(array).all() or (array != np.round(array)).any():
        raise ValueError(f"{name} must hold integer pixel coordinates, got {boxes!r}")
    height, width = shape
    for i, (r0, c0, r1, c1) in enumerate(array.astype(np.int64).tolist()):
        if not (0 <= r0 <= r1 <= height and 0 <= c0 <= c1 <= width):
            which = name if single else f"boxes[{i}]"
            raise ValueError(
                f"{which} must be half-open (min_row, min_col, max_row, max_col) with "
                f"0 <= min <= max <= the image's ({height}, {width}), got {(r0, c0, r1, c1)}"
            )
    return array.astype(np.int64)


def _mask_in_box(plane: np.ndarray, box: np.ndarray) -> np.ndarray:
    r0, c0, r1, c1 = (int(v) for v in box)
    mask = np.zeros(plane.shape, dtype=bool)
    values = plane[r0:r1, c0:c1]
    if values.size == 0:
        return mask
    if not np.isfinite(values).all():
        raise ValueError(f"image must be finite inside the box {(r0, c0, r1, c1)}")
    if values.min() == values.max():
        return mask
    above = values > threshold_otsu(values)
    components, count = ndimage.label(above)
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    largest = components == int(np.argmax(sizes)) + 1
    mask[r0:r1, c0:c1] = ndimage.binary_fill_holes(largest)
    return mask

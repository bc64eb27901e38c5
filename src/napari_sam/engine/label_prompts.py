"""Labels as prompts: each label's box and pixel count, and the label each correction point is for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .decode.coords import mask_to_box

__all__ = ["assign_points", "label_boxes"]


def label_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels of a 2D array with their half-open boxes and pixel counts.

    Parameters
    ----------
    labels
        ``(Y, X)`` integer labels, 0 background.

    Returns
    -------
    tuple of numpy.ndarray
        ``(K,)`` int64 label ids (ascending, 0 left out), ``(K, 4)`` int64 boxes ``(min_row, min_col,
        max_row, max_col)`` and ``(K,)`` int64 pixel counts.
    """
    ids, compact = np.unique(np.asarray(labels), return_inverse=True)
    compact = compact.reshape(np.shape(labels))
    counts = np.bincount(compact.ravel(), minlength=len(ids))
    found = ndi.find_objects(compact)
    keep = ids != 0
    boxes = np.zeros((len(ids), 4), dtype=np.int64)
    for j, sl in enumerate(found, start=1):  # compact label j is ids[j] (ids[0] is 0 when present)
        if sl is not None:
            boxes[j] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    if ids.size and ids[0] != 0:  # no background: compact 0 is a real label, not seen by find_objects
        boxes[0] = mask_to_box(compact == 0)
    return ids[keep].astype(np.int64), boxes[keep], counts[keep].astype(np.int64)


def assign_points(
    labels: np.ndarray, points: np.ndarray, point_objects: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """The label each correction point belongs to.

    Parameters
    ----------
    labels
        ``(Y, X)`` integer labels the points are on.
    points
        ``(N, 2)`` ``(row, col)`` points, checked (on the image).
    point_objects
        ``(N,)`` label ids given by the user (returned as they are), or None: each point belongs to
        the label under it, or, on background, to the label with the nearest pixel.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64 label ids; 0 only when ``labels`` holds no label at all.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if point_objects is not None:
        return np.asarray(point_objects, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels)
    rc = np.clip(np.round(points).astype(np.int64), 0, np.array(labels.shape) - 1)
    owner = labels[rc[:, 0], rc[:, 1]].astype(np.int64)
    if (owner == 0).any() and labels.any():
        _, (rows, cols) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        off = owner == 0
        owner[off] = labels[rows[rc[off, 0], rc[off, 1]], cols[rc[off, 0], rc[off, 1]]]
    return owner

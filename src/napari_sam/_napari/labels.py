"""Writing masks into a napari Labels layer: next free IDs, undoable, never over painted labels.

Every write goes through :meth:`napari.layers.Labels.data_setitem`, which records the edit in the
layer's history: one call of :func:`write_masks` is one undo step (``layer.undo()`` / ``layer.redo()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import AnnotatorError


def next_free_label(data: Any) -> int:
    """The smallest label above every label in ``data`` (1 for an empty layer).

    Parameters
    ----------
    data
        Integer labels array (numpy, dask or zarr) of any shape.
    """
    arr = np.asarray(data)
    return int(arr.max()) + 1 if arr.size else 1


def combine_masks(masks: np.ndarray, scores: Sequence[float] | None = None) -> np.ndarray:
    """Stack of masks → one index image: ``k + 1`` where mask ``k`` wins, 0 elsewhere.

    Parameters
    ----------
    masks
        ``(N, H, W)`` bool.
    scores
        ``(N,)`` predicted IoU; where masks overlap the higher score wins (default: the later mask).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32 object index + 1.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    index = np.zeros(masks.shape[1:], dtype=np.int32)
    best = np.full(masks.shape[1:], -np.inf, dtype=np.float32)
    values = np.arange(masks.shape[0], dtype=np.float32) if scores is None else np.asarray(scores)
    for k, mask in enumerate(masks):
        win = mask & (values[k] >= best)
        index[win] = k + 1
        best[win] = values[k]
    return index


def write_masks(
    layer: Any,
    masks: np.ndarray,
    *,
    plane: int | None = None,
    scores: Sequence[float] | None = None,
    overwrite: bool = False,
) -> list[int]:
    """Write each mask into ``layer`` as a new object with the next free label.

    Parameters
    ----------
    layer
        A ``napari.layers.Labels`` of shape ``(H, W)``, or ``(Z, H, W)`` with ``plane``.
    masks
        ``(N, H, W)`` bool, one per object, in napari ``(row, col)`` order.
    plane
        For a 3D layer: the ``z`` index the masks belong to.
    scores
        ``(N,)`` predicted IoU deciding overlaps between the new masks.
    overwrite
        False (default): pixels that already hold a label keep it. True: new objects replace them.

    Returns
    -------
    list[int]
        The labels given to the objects that kept at least one pixel, in mask order. Masks that end
        up empty (all their pixels were already labelled) get no label.

    Raises
    ------
    AnnotatorError
        Shapes do not fit, or the layer's dtype cannot hold the new labels.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[None]
    return write_index(layer, combine_masks(masks, scores), masks.shape[0], plane=plane, overwrite=overwrite)


def write_index(
    layer: Any, index: np.ndarray, n_objects: int, *, plane: int | None = None, overwrite: bool = False
) -> list[int]:
    """Like :func:`write_masks`, for objects given as one index image.

    Parameters
    ----------
    index
        ``(H, W)`` integer: ``k + 1`` where object ``k`` is, 0 elsewhere (see :func:`combine_masks`).
    n_objects
        The number of objects ``index`` can hold (``k < n_objects``).
    """
    data = layer.data
    spatial = tuple(data.shape) if plane is None else tuple(data.shape[1:])
    if plane is None and len(data.shape) != 2:
        raise AnnotatorError(f"labels layer '{layer.name}' is {len(data.shape)}D; give the slice to write to")
    if plane is not None and not 0 <= plane < data.shape[0]:
        raise AnnotatorError(f"slice {plane} is outside labels layer '{layer.name}' ({data.shape[0]} slices)")
    if tuple(index.shape) != spatial:
        raise AnnotatorError(
            f"labels layer '{layer.name}' has shape {tuple(data.shape)}; masks of shape {tuple(index.shape)} "
            "do not fit it — pick a labels layer with the image's shape or a new one"
        )
    index = np.array(index, dtype=np.int64, copy=True)
    if not overwrite:
        existing = np.asarray(data if plane is None else data[plane])
        index[existing != 0] = 0
    present = np.bincount(index.ravel(), minlength=n_objects + 1)[1:] > 0
    kept = np.flatnonzero(present).tolist()
    if not kept:
        return []
    first = next_free_label(data)
    last = first + len(kept) - 1
    if np.issubdtype(data.dtype, np.integer) and last > np.iinfo(data.dtype).max:
        raise AnnotatorError(
            f"labels layer '{layer.name}' ({data.dtype}) cannot hold label {last}; use a uint32 labels layer"
        )
    lookup = np.zeros(len(present) + 1, dtype=np.int64)
    lookup[np.array(kept) + 1] = np.arange(first, last + 1)
    rows, cols = np.nonzero(index)
    values = lookup[index[rows, cols]].astype(data.dtype)
    indices = (rows, cols) if plane is None else (np.full(rows.shape, plane, dtype=np.intp), rows, cols)
    layer.data_setitem(indices, values)
    return list(range(first, last + 1))

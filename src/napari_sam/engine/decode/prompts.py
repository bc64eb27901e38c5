"""``normalize_prompts``: points, labels, boxes and masks as given → one checked :class:`Prompts`.

Every entry point that takes prompts from a user (:func:`napari_sam.segment`, :func:`napari_sam.predict`,
the pipeline nodes, propagation) calls :func:`normalize_prompts` once and passes the :class:`Prompts`
value on; the decoders below trust it. Coordinates are napari's, rows first (see
:mod:`napari_sam.engine.decode.coords`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import Prompts

__all__ = ["Prompts", "as_float_array", "normalize_prompts", "object_prompts", "whole_indices"]


def normalize_prompts(
    *,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    masks: Any = None,
    spatial_shape: Sequence[int],
    per_object: bool = False,
) -> Prompts:
    """Check prompts once against an image or a stack; every error names the argument and what was wanted.

    Parameters
    ----------
    points
        ``(N, 2)`` ``(row, col)`` on an image, ``(N, 3)`` ``(z, row, col)`` on a stack; with
        ``per_object``: ``(P, 2)`` for one object or ``(N, P, 2)`` for N objects. A point must lie on
        the image (its pixel centre within half a pixel of it); ``z`` must be a whole slice number of
        the stack. None (or no rows, except with ``per_object``) for none.
    point_labels
        One per point (``(N,)``; ``(P,)`` / ``(N, P)`` with ``per_object``): 1 foreground, 0 background.
        Default: all 1.
    boxes
        ``(M, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` on an image, ``(M, 6)``
        ``(min_z, min_row, min_col, max_z, max_row, max_col)`` with ``max_z = min_z + 1`` on a stack;
        with ``per_object`` ``(4,)`` or ``(N, 4)``, one per object, named ``box`` in errors. ``min <
        max`` on each axis; a box reaching past the image border is clipped to it, one entirely
        outside is an error.
    masks
        Mask prompts (``predict``'s ``mask_input``), kept as an array; the decoder checks them.
    spatial_shape
        ``(Y, X)`` of the image or ``(Z, Y, X)`` of the stack the prompts are for.
    per_object
        :func:`napari_sam.predict`'s grouping: points and boxes per object (2D only). With both,
        points and boxes describe the same number of objects, or one set of points serves every box.

    Returns
    -------
    Prompts
        float64 coordinates, int64 labels, boxes clipped to the image, ``z`` rounded to its slice.

    Raises
    ------
    ValueError
        Non-numeric or non-finite values, wrong shapes, points outside the image, labels other than 0
        and 1 or not one per point, labels without points, boxes with ``min >= max`` or entirely
        outside, ``z`` not a slice of the stack, a 3D box spanning slices, or points and boxes for
        different numbers of objects.
    """
    shape = tuple(int(s) for s in spatial_shape)
    masks = None if masks is None else np.asarray(masks)
    if per_object:
        pts, labels, bxs = _per_object(points, point_labels, boxes, shape)
    elif len(shape) == 3:
        pts, labels, bxs = _on_stack(points, point_labels, boxes, shape)
    else:
        pts, labels, bxs = _on_image(points, point_labels, boxes, shape)
    return Prompts(points=pts, point_labels=labels, boxes=bxs, masks=masks)


def as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array; a ValueError naming ``name`` if it is not numeric or not finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _on_image(
    points: Any, point_labels: Any, boxes: Any, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat prompts on a ``(Y, X)`` image: ``(N, 2)`` points, ``(N,)`` labels, ``(M, 4)`` boxes."""
    pts, labels = np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    if points is not None:
        arr = as_float_array(points, "points")
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"points must have shape (N, 2) rows (row, col) for a 2D image, got {arr.shape}")
        if len(arr):
            grouped, grouped_labels = _checked_points(arr, point_labels, shape)
            pts, labels = grouped[0], grouped_labels[0]
    elif point_labels is not None:
        raise ValueError("point_labels given without points")
    bxs = np.zeros((0, 4))
    if boxes is not None:
        arr = as_float_array(boxes, "boxes")
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(
                f"boxes must have shape (M, 4) rows (min_row, min_col, max_row, max_col) for a 2D "
                f"image, got {arr.shape}"
            )
        if len(arr):
            bxs = _checked_boxes(arr, shape, "boxes")
    return pts, labels, bxs


def _on_stack(
    points: Any, point_labels: Any, boxes: Any, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat prompts on a ``(Z, Y, X)`` stack: ``(N, 3)`` points, ``(N,)`` labels, ``(M, 6)`` boxes."""
    n_slices, plane = shape[0], shape[1:]
    pts, labels = np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    if points is not None:
        pts = as_float_array(points, "points")
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(
                f"points must have shape (N, 3) rows (z, row, col) for a 3D stack, got {pts.shape}"
            )
        if len(pts):
            labels = _checked_points(pts[:, 1:], point_labels, plane)[1][0]
    elif point_labels is not None:
        raise ValueError("point_labels given without points")
    bxs = np.zeros((0, 6))
    if boxes is not None:
        bxs = as_float_array(boxes, "boxes")
        if bxs.ndim != 2 or bxs.shape[1] != 6:
            raise ValueError(
                "boxes must have shape (M, 6) rows (min_z, min_row, min_col, max_z, max_row, max_col) for "
                f"a 3D stack, got {bxs.shape}"
            )
        if len(bxs) and not np.allclose(bxs[:, 3], bxs[:, 0] + 1):
            bad = bxs[~np.isclose(bxs[:, 3], bxs[:, 0] + 1)][0]
            raise ValueError(
                f"every 3D box must lie on one slice (max_z == min_z + 1), got {bad.tolist()}; objects "
                "are followed through the stack by propagation (segment(..., propagate=True), "
                "napari_sam.propagate), not by boxes spanning slices"
            )
    pts = pts.copy()
    pts[:, 0] = whole_indices(pts[:, 0], n_slices, "points z")
    box_z = whole_indices(bxs[:, 0], n_slices, "boxes min_z")
    out = np.zeros((len(bxs), 6))
    if len(bxs):
        out[:, [1, 2, 4, 5]] = _checked_boxes(bxs[:, [1, 2, 4, 5]], plane, "boxes")
        out[:, 0], out[:, 3] = box_z, box_z + 1
    return pts, labels, out


def _per_object(
    points: Any, point_labels: Any, boxes: Any, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`napari_sam.predict`'s prompts: ``(K, P, 2)`` points, ``(K, P)`` labels, ``(K, 4)`` boxes."""
    if points is None and point_labels is not None:
        raise ValueError("point_labels given without points")
    pts, labels, bxs = np.zeros((0, 0, 2)), np.zeros((0, 0), dtype=np.int64), np.zeros((0, 4))
    if points is not None:
        pts, labels = _checked_points(points, point_labels, shape)
    if boxes is not None:
        bxs = _checked_boxes(boxes, shape, "box")
    if len(pts) and len(bxs) and len(pts) != len(bxs) and len(pts) != 1:
        raise ValueError(
            f"points describe {pts.shape[0]} objects but box describes {bxs.shape[0]}; "
            "give the same number, or one set of points for all boxes"
        )
    return pts, labels, bxs


def whole_indices(
    values: np.ndarray, length: int, what: str, *, unit: str = "slice numbers", span: str | None = None
) -> np.ndarray:
    """Whole indices (float64) of an axis of ``length`` from ``values``; clear errors, naming ``what``,
    for fractions and indices off the axis (``span`` says what the axis is: "a stack of N slices" by
    default, ``unit`` what its indices are)."""
    rounded = np.round(values)
    if not np.allclose(values, rounded, atol=1e-6):
        raise ValueError(
            f"{what} must name whole {unit}, got {values[~np.isclose(values, rounded)][:3].tolist()}"
        )
    bad = (rounded < 0) | (rounded >= length)
    if bad.any():
        raise ValueError(
            f"{what} {rounded[bad][:3].astype(np.int64).tolist()} out of range for "
            f"{span or f'a stack of {length} slices'}"
        )
    return rounded


def _checked_points(
    points: Any, point_labels: Any, image_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(P, 2)`` or ``(N, P, 2)`` ``(row, col)`` points and their labels, checked against the image.

    Returns points as ``(N, P, 2)`` float64 and labels as ``(N, P)`` int64 (default all 1).
    """
    pts = as_float_array(points, "points")
    if pts.ndim == 2 and pts.shape[1] == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
        raise ValueError(
            f"points must have shape (P, 2) rows (row, col), or (N, P, 2) for N objects; got "
            f"{np.shape(points)}"
        )
    h, w = image_shape
    outside = (pts[..., 0] < -0.5) | (pts[..., 0] > h - 0.5) | (pts[..., 1] < -0.5) | (pts[..., 1] > w - 0.5)
    if outside.any():
        first = pts[outside][0]
        raise ValueError(
            f"points outside the image: {first.tolist()} (row, col) is not within an image of "
            f"shape {tuple(image_shape)}; {int(outside.sum())} point(s) outside"
        )
    if point_labels is None:
        return pts, np.ones(pts.shape[:2], dtype=np.int64)
    labels = np.asarray(point_labels)
    if labels.ndim == 1 and pts.shape[0] == 1:
        labels = labels[None]
    if labels.shape != pts.shape[:2]:
        wanted = pts.shape[1:2] if pts.shape[0] == 1 else pts.shape[:2]
        raise ValueError(
            f"point_labels must have one label per point, shape {wanted}; got shape {np.shape(point_labels)}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"point_labels must be 1 (foreground) or 0 (background), got values "
            f"{sorted(set(np.unique(labels).tolist()) - {0, 1})}"
        )
    return pts, labels.astype(np.int64)


def _checked_boxes(boxes: Any, image_shape: tuple[int, ...], name: str) -> np.ndarray:
    """``(4,)`` or ``(N, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` boxes as ``(N, 4)``
    float64, clipped to the image; a box entirely outside is an error."""
    arr = as_float_array(boxes, name)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape (4,) or (N, 4) rows (min_row, min_col, max_row, max_col); "
            f"got {np.shape(boxes)}"
        )
    bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if bad.any():
        raise ValueError(
            f"{name} must have min < max on both axes (min_row, min_col, max_row, max_col); got "
            f"{arr[bad][0].tolist()}"
        )
    h, w = image_shape
    outside = (arr[:, 2] <= 0) | (arr[:, 3] <= 0) | (arr[:, 0] >= h) | (arr[:, 1] >= w)
    if outside.any():
        raise ValueError(
            f"{name} {arr[outside][0].tolist()} lies entirely outside the image of shape {tuple(image_shape)}"
        )
    arr = arr.copy()
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, h)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, w)
    return arr


def object_prompts(
    boxes: np.ndarray | None,
    points: np.ndarray | None,
    point_labels: np.ndarray | None,
    masks: np.ndarray | None = None,
) -> Prompts:
    """Prompts grouped by object from parts already checked (one object's share of a tile, a batch of
    planned objects): ``(K, 4)`` boxes, ``(K, P, 2)`` points, ``(K, P)`` labels; None for none."""
    return Prompts(
        points=np.zeros((0, 0, 2)) if points is None else np.asarray(points, dtype=np.float64),
        point_labels=np.zeros((0, 0), np.int64)
        if point_labels is None
        else np.asarray(point_labels, np.int64),
        boxes=np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64),
        masks=masks,
    )

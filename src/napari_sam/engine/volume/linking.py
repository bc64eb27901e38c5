"""Link 2D instances of neighbouring slices into 3D objects (automatic 3D segmentation).

Each slice of a stack is segmented on its own (e.g. by :func:`napari_sam.automatic`); objects of
slices ``z`` and ``z + 1`` that overlap enough are matched one to one (largest overlap first) and
given one label. Chains of matches make the 3D objects.
"""

from __future__ import annotations

import numpy as np

from ..types import check_int

__all__ = ["link_slices", "slice_overlaps"]


def slice_overlaps(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of overlapping labels of two ``(Y, X)`` slices and their IoU.

    Returns
    -------
    lower_ids, upper_ids, iou
        ``(P,)`` each: label in ``lower``, label in ``upper``, IoU of the two 2D regions.
    """
    both = (lower > 0) & (upper > 0)
    if not both.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    pairs, inter = np.unique(
        np.stack([lower[both].astype(np.int64), upper[both].astype(np.int64)]), axis=1, return_counts=True
    )
    lo_ids, lo_area = np.unique(lower[lower > 0], return_counts=True)
    up_ids, up_area = np.unique(upper[upper > 0], return_counts=True)
    a = lo_area[np.searchsorted(lo_ids, pairs[0])]
    b = up_area[np.searchsorted(up_ids, pairs[1])]
    return pairs[0], pairs[1], inter / (a + b - inter)


def link_slices(labels: np.ndarray, *, min_iou: float = 0.25, min_slices: int = 2) -> np.ndarray:
    """Merge per-slice labels of a ``(Z, Y, X)`` stack into 3D objects by overlap between slices.

    Parameters
    ----------
    labels
        ``(Z, Y, X)`` integer labels in which no label is shared between slices (as made by
        :func:`napari_sam.engine.automatic.amg.automatic_labels` for a stack); labels shared between
        slices are first split per slice.
    min_iou
        Two objects on neighbouring slices are linked when the IoU of their 2D regions is at least
        this, in (0, 1]; each object links to at most one on either side (best IoU first).
    min_slices
        Drop 3D objects spanning fewer slices than this (>= 1). The default 2 drops objects found on
        one slice only — mostly fragments and false detections in z-stacks (see the benchmarks page);
        use 1 for stacks sampled so coarsely that objects span a single slice.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` uint32: 0 background, 3D objects ``1..N`` ordered by their first slice and first
        pixel.
    """
    arr = np.asarray(labels)
    _check_arguments(arr, min_iou, min_slices)
    per_slice, count = _ids_per_slice(arr)
    merged = _linked_roots(per_slice, count, min_iou)[per_slice]
    if min_slices > 1:
        _drop_short(merged, min_slices)
    return _renumbered(merged)


def _check_arguments(arr: np.ndarray, min_iou: float, min_slices: int) -> None:
    if arr.ndim != 3:
        raise ValueError(f"labels must be a (Z, Y, X) stack, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TypeError(f"labels must be integer, got dtype {arr.dtype}")
    if isinstance(min_iou, bool) or not isinstance(min_iou, (int, float)) or not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be a number in (0, 1], got {min_iou!r}")
    check_int(min_slices, "min_slices", 1)


def _ids_per_slice(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """``(Z, Y, X)`` int64 with one id per (slice, label), ``1..count`` (offsets keep slices apart), and
    ``count``."""
    per_slice = np.zeros(arr.shape, dtype=np.int64)
    offset = 0
    for z in range(arr.shape[0]):
        ids, inverse = np.unique(arr[z], return_inverse=True)
        local = inverse.reshape(arr.shape[1:]).astype(np.int64)
        if ids[0] != 0:
            local += 1
        per_slice[z] = np.where(local > 0, local + offset, 0)
        offset += int(local.max(initial=0))
    return per_slice, offset


def _linked_roots(per_slice: np.ndarray, count: int, min_iou: float) -> np.ndarray:
    """``(count + 1,)``: for every per-slice id, the id of the 3D object it is linked into (union-find
    over one-to-one matches of neighbouring slices, best IoU first)."""
    parent = np.arange(count + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for z in range(per_slice.shape[0] - 1):
        lo_ids, up_ids, iou = slice_overlaps(per_slice[z], per_slice[z + 1])
        used_lo: set[int] = set()
        used_up: set[int] = set()
        for k in np.argsort(-iou, kind="stable"):
            if iou[k] < min_iou:
                break
            a, b = int(lo_ids[k]), int(up_ids[k])
            if a in used_lo or b in used_up:
                continue
            used_lo.add(a)
            used_up.add(b)
            parent[root(b)] = root(a)
    return np.array([root(i) for i in range(count + 1)])


def _drop_short(merged: np.ndarray, min_slices: int) -> None:
    """Set to 0, in place, the objects of ``merged`` ``(Z, Y, X)`` on fewer than ``min_slices`` slices."""
    flat = merged.reshape(merged.shape[0], -1)
    for r in np.unique(merged[merged > 0]):
        if int((flat == r).any(axis=1).sum()) < min_slices:
            merged[merged == r] = 0


def _renumbered(merged: np.ndarray) -> np.ndarray:
    """``merged`` as uint32 labels ``1..N`` by first occurrence in raster order ``(z, row, col)``."""
    order, first = np.unique(merged.ravel(), return_index=True)
    ranked = order[np.argsort(first)]
    ranked = ranked[ranked > 0]
    lut = np.zeros(int(merged.max(initial=0)) + 1, dtype=np.uint32)
    lut[ranked] = np.arange(1, ranked.size + 1, dtype=np.uint32)
    return lut[merged]

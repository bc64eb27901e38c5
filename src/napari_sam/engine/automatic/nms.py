"""Greedy non-maximum suppression of boxes, in torch on any device (no torchvision).

Boxes here are Segment Anything's ``(x0, y0, x1, y1)``; areas and overlaps use torchvision's formulae
(``(x1 - x0) * (y1 - y0)``, no ``+ 1``) so that suppression decisions equal the official generator's.
"""

from __future__ import annotations

import torch

__all__ = ["box_area", "box_iou", "nms", "nms_overlaps"]

#: Rows of the pairwise-overlap matrix computed at once (bounds the float memory to rows × N).
_IOU_ROWS = 2048
#: Up to this many boxes the fixed-point step is a float matrix-vector product.
_MATMUL_MAX = 4096


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` ``(x0, y0, x1, y1)`` → ``(N,)`` areas ``(x1 - x0) * (y1 - y0)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of ``(N, 4)`` and ``(M, 4)`` boxes → ``(N, M)`` float.

    Pairs whose union is zero (two empty boxes at the same place) get ``nan``, as in torchvision, and
    therefore never suppress each other.
    """
    a, b = a.float(), b.float()
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: lower index first); a box is kept unless a kept,
    higher-ranked box overlaps it with IoU ``> iou_threshold``.

    The greedy decision of each box depends only on the boxes ranked above it, so it is the unique
    fixed point of ``keep[i] = not any(keep[j] and suppresses[j, i] for j < i)``. Iterating that
    update from "keep everything" settles at least one more rank per step and usually converges in a
    handful of whole-matrix steps — no per-box Python loop, no host round trip per box.

    Parameters
    ----------
    boxes
        ``(N, 4)`` ``(x0, y0, x1, y1)``, any real dtype.
    scores
        ``(N,)`` scores (higher is better).
    iou_threshold
        Overlap above which the lower-ranked box is dropped.

    Returns
    -------
    torch.Tensor
        ``(K,)`` int64 indices of the kept boxes, by decreasing score.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = boxes[order].float()
    suppresses = torch.empty((n, n), dtype=torch.bool, device=boxes.device)
    for start in range(0, n, _IOU_ROWS):
        stop = min(start + _IOU_ROWS, n)
        suppresses[start:stop] = box_iou(ranked[start:stop], ranked) > iou_threshold
    return order[_greedy(suppresses)]


def nms_overlaps(overlaps: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy suppression with a precomputed ``(N, N)`` symmetric overlap matrix (e.g. mask IoU).

    Same visiting order and rule as :func:`nms`; returns kept indices by decreasing score.
    """
    n = overlaps.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=overlaps.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[_greedy(overlaps[order][:, order] > threshold)]


def _greedy(suppresses: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` bool "row would suppress column" in rank order → ``(N,)`` bool kept (greedy)."""
    n = suppresses.shape[0]
    # only a higher-ranked box (row) can suppress a lower-ranked one (column)
    suppresses = torch.triu(suppresses, diagonal=1)
    keep = torch.ones(n, dtype=torch.bool, device=suppresses.device)
    # a matrix-vector product is the fastest "any kept suppressor" on every device; above a few
    # thousand boxes the float copy of the matrix costs too much memory and a boolean reduction is used
    weights = suppresses.to(torch.float32) if n <= _MATMUL_MAX else None
    for _ in range(n + 1):
        if weights is not None:
            hit = (keep.to(torch.float32) @ weights) > 0
        else:
            hit = (suppresses & keep[:, None]).any(dim=0)
        new_keep = ~hit
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep

"""Batched mask arithmetic of the automatic mask generator (torch, any device).

Masks are ``(N, H, W)`` tensors indexed ``[mask, row, col]``. Boxes are Segment Anything's
``(x0, y0, x1, y1)`` with *inclusive* corner pixels, as the official generator computes them
(``x`` counts columns, ``y`` rows); :mod:`napari_sam.engine.decode.coords` converts them for the
outside world.
"""

from __future__ import annotations

import torch

__all__ = ["mask_statistics", "masks_to_boxes", "near_crop_edge", "paint_first_hit"]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` bool → ``(N, 4)`` int64 inclusive ``(x0, y0, x1, y1)``; empty masks → zeros.

    The batched, on-device form of :func:`napari_sam.engine.decode.coords.mask_to_box` in the official
    generator's convention: for a non-empty mask, ``boxes_rc_to_xyxy(mask_to_box(mask))`` (half-open
    ``(min_row, min_col, max_row, max_col)`` → inclusive ``(x0, y0, x1, y1)``: ``x1 = max_col - 1``,
    ``y1 = max_row - 1``); an empty mask, which has no box there, gets zeros here, as in the official
    generator.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    row_idx = torch.arange(h, device=masks.device)
    col_idx = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, row_idx, -1).amax(dim=1)
    y0 = torch.where(rows, row_idx, h).amin(dim=1)
    x1 = torch.where(cols, col_idx, -1).amax(dim=1)
    x0 = torch.where(cols, col_idx, w).amin(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~rows.any(dim=1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def mask_statistics(
    logits: torch.Tensor, mask_threshold: float, offset: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stability score, box and area of ``(N, H, W)`` mask logits.

    The stability score is the IoU between the masks thresholded at ``mask_threshold + offset`` and
    at ``mask_threshold - offset`` (the first lies inside the second, so it is a ratio of counts).

    Returns
    -------
    stability
        ``(N,)`` float32 (``nan`` for a mask empty at both levels).
    boxes
        ``(N, 4)`` int64 inclusive ``(x0, y0, x1, y1)`` of ``logits > mask_threshold``.
    areas
        ``(N,)`` int64 pixel counts of ``logits > mask_threshold``.
    """
    inner = (logits > mask_threshold + offset).flatten(1).sum(dim=1, dtype=torch.int32)
    outer = (logits > mask_threshold - offset).flatten(1).sum(dim=1, dtype=torch.int32)
    masks = logits > mask_threshold
    areas = masks.flatten(1).sum(dim=1, dtype=torch.int64)
    return inner / outer, masks_to_boxes(masks), areas


def near_crop_edge(
    boxes: torch.Tensor,
    crop_xyxy: tuple[int, int, int, int],
    image_xyxy: tuple[int, int, int, int],
    atol: float = 20.0,
) -> torch.Tensor:
    """``(N,)`` bool: boxes (image frame) touching an inner edge of their crop, within ``atol`` pixels.

    An edge of the crop that is also an edge of the image does not count: objects cut by the image
    border are real, objects cut by a crop border are fragments.
    """
    b = boxes.float()
    crop = torch.as_tensor(crop_xyxy, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(image_xyxy, dtype=torch.float32, device=boxes.device)
    at_crop = torch.isclose(b, crop[None], atol=atol, rtol=0)
    at_image = torch.isclose(b, image[None], atol=atol, rtol=0)
    return (at_crop & ~at_image).any(dim=1)


def paint_first_hit(labels: torch.Tensor, masks: torch.Tensor, ids: torch.Tensor) -> None:
    """Give every still-unlabelled pixel the id of the first mask (in ``masks`` order) covering it.

    Call it with chunks of masks in decreasing priority: a pixel keeps the label of the
    highest-priority mask that covers it. Work is one pass over the chunk, no per-mask loop.

    Parameters
    ----------
    labels
        ``(H, W)`` integer tensor, 0 = unlabelled; updated in place.
    masks
        ``(C, H, W)`` bool, highest priority first.
    ids
        ``(C,)`` labels to write, same dtype as ``labels``.
    """
    if masks.shape[0] == 0:
        return
    covered = masks.any(dim=0)
    first = masks.to(torch.uint8).argmax(dim=0)  # index of the first True along the chunk
    free = covered & (labels == 0)
    labels[free] = ids[first[free]]

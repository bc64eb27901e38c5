"""Decoding on tiled embeddings: each object is routed to the tile (or a window) that holds it.

See :mod:`napari_sam.engine.embed.tiling` for how tiles are laid out and routed. Each object's share of
the prompts, in the window's coordinates, is decoded by :func:`~napari_sam.engine.decode.plain.predict_plain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..types import OUTSIDE_LOGIT, Embeddings, Prompts, TiledEmbeddings
from .plain import DecodeOptions, Prediction, predict_plain, zeros_and_ones
from .prompts import object_prompts

if TYPE_CHECKING:
    from ...model import Sam


@dataclass
class LocalPrompt:
    """One object's prompts in the coordinates of the window it is decoded on."""

    bounds: tuple[int, int, int, int]
    embeddings: Embeddings
    box: np.ndarray | None  # (4,)
    points: np.ndarray | None  # (P, 2)
    labels: np.ndarray | None  # (P,)


def object_bbox(box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
    """Half-open ``(min_row, min_col, max_row, max_col)`` of an object's box, else of its positive points."""
    if box is not None:
        return np.asarray(box, dtype=np.float64)
    assert points is not None
    fg = points if labels is None or not (labels == 1).any() else points[labels == 1]
    lo = np.floor(fg.min(axis=0))
    hi = np.floor(fg.max(axis=0)) + 1
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)


def localize(
    tiled: TiledEmbeddings, box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None
) -> LocalPrompt | None:
    """Route one object (prompts in image coordinates) to a window; None when nothing of it is left."""
    bounds, emb, _exact = tiled.embeddings_for(object_bbox(box, points, labels))
    r0, c0, r1, c1 = bounds
    offset = np.array([r0, c0], dtype=np.float64)
    local_box = None
    if box is not None:
        b = np.asarray(box, dtype=np.float64) - np.tile(offset, 2)
        b[[0, 2]] = np.clip(b[[0, 2]], 0, r1 - r0)
        b[[1, 3]] = np.clip(b[[1, 3]], 0, c1 - c0)
        if b[2] <= b[0] or b[3] <= b[1]:
            return None
        local_box = b
    local_pts = local_labels = None
    if points is not None:
        p = np.asarray(points, dtype=np.float64) - offset
        inside = (
            (p[:, 0] >= -0.5) & (p[:, 0] <= r1 - r0 - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= c1 - c0 - 0.5)
        )
        lab = np.ones(len(p), dtype=np.int64) if labels is None else np.asarray(labels)
        if inside.any() and (local_box is not None or (lab[inside] == 1).any()):
            local_pts, local_labels = p[inside], lab[inside]
        elif local_box is None:
            return None
    return LocalPrompt(bounds, emb, local_box, local_pts, local_labels)


def predict_tiled(
    tiled: TiledEmbeddings, prompts: Prompts, options: DecodeOptions, model: Sam | None = None
) -> Prediction:
    """:func:`napari_sam.predict` on :class:`TiledEmbeddings`, for prompts grouped by object.

    Each object is decoded on its own window (see the module docstring); masks are pasted into
    image-sized arrays (False / :data:`OUTSIDE_LOGIT` outside that window). ``low_res_logits`` refer
    to the window an object was decoded on; ``prompts.masks`` must be a binary mask of the image's shape.
    """
    if not (prompts.has_points or prompts.has_boxes):
        raise ValueError(
            "predict on tiled embeddings needs points or a box (mask_input alone cannot be routed)"
        )
    shape, n = tuple(tiled.original_size), prompts.n_objects
    masks_in = None if prompts.masks is None else _binary_masks(prompts.masks, shape, n)
    k = options.candidates
    fill = OUTSIDE_LOGIT if options.return_logits else False
    out_masks = np.full((n, k, *shape), fill, dtype=np.float32 if options.return_logits else bool)
    out_iou = np.zeros((n, k), dtype=np.float32)
    low_res: list[np.ndarray] = []
    for i in range(n):
        local = localize(tiled, *_object_share(prompts, i))
        if local is None:
            raise ValueError(f"object {i} has no prompt inside the image")
        (r0, c0, r1, c1) = local.bounds
        mask = None
        if masks_in is not None:
            mask = masks_in[min(i, masks_in.shape[0] - 1), r0:r1, c0:c1].astype(bool)
        pred = predict_plain(
            local.embeddings,
            object_prompts(
                None if local.box is None else local.box[None],
                None if local.points is None else local.points[None],
                None if local.labels is None else local.labels[None],
                mask,
            ),
            options,
            model=model or tiled.model,
        )
        out_masks[i, :, r0:r1, c0:c1] = pred.masks[0]
        out_iou[i] = pred.iou_scores[0]
        low_res.append(pred.low_res_logits[0])
    return Prediction(masks=out_masks, iou_scores=out_iou, low_res_logits=np.stack(low_res))


def _object_share(prompts: Prompts, i: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Object ``i``'s ``(box, points, labels)`` in image coordinates (one set of points serves all)."""
    box = prompts.boxes[i] if prompts.has_boxes else None
    if not prompts.has_points:
        return box, None, None
    j = min(i, len(prompts.points) - 1)
    return box, prompts.points[j], prompts.point_labels[j]


def _binary_masks(masks: np.ndarray, shape: tuple[int, ...], n: int) -> np.ndarray:
    """``(1 or n, H, W)`` mask prompts for the whole image (bool, integer, or float of 0 and 1, as on
    one embedding); a ValueError for any other form."""
    binary = masks.dtype == bool or np.issubdtype(masks.dtype, np.integer)
    binary = binary or (np.issubdtype(masks.dtype, np.floating) and zeros_and_ones(masks))
    if masks.shape[-2:] != shape or not binary:
        raise ValueError(
            f"mask_input on tiled embeddings must be a binary mask of the image's shape {shape} (bool, "
            f"integer, or float of 0 and 1); got shape {masks.shape}, dtype {masks.dtype}"
        )
    masks = masks.reshape(-1, *shape) > 0
    if masks.shape[0] not in (1, n):
        raise ValueError(
            f"mask_input holds {masks.shape[0]} masks for {n} objects; give one or one per object"
        )
    return masks

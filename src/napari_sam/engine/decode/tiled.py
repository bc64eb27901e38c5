"""Decoding on tiled embeddings: each object is routed to the tile (or a window) that holds it.

See :mod:`napari_sam.engine.embed.tiling` for how tiles are laid out and routed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..types import OUTSIDE_LOGIT, Embeddings, TiledEmbeddings
from .predict import Prediction, _object_count, predict, validate_boxes, validate_points

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

    @property
    def key(self) -> tuple[Any, ...]:
        """Objects with equal keys can be decoded in one batch."""
        return (self.bounds, self.box is not None, 0 if self.points is None else len(self.points))


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
    tiled: TiledEmbeddings,
    *,
    points: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    multimask: bool = True,
    best_only: bool = False,
    return_logits: bool = False,
    model: Sam | None = None,
) -> Prediction:
    """:func:`napari_sam.predict` on :class:`TiledEmbeddings` (same arguments and result).

    Each object is decoded on its own window (see the module docstring); masks are pasted into
    image-sized arrays (False / :data:`OUTSIDE_LOGIT` outside that window). ``low_res_logits`` refer
    to the window an object was decoded on; ``mask_input`` must be a binary mask of the image's shape.
    """
    if points is None and point_labels is not None:
        raise ValueError("point_labels given without points")
    if points is None and box is None:
        raise ValueError(
            "predict on tiled embeddings needs points or a box (mask_input alone cannot be routed)"
        )
    shape = tuple(tiled.original_size)
    pts = labels = bxs = None
    if points is not None:
        pts, labels = validate_points(points, point_labels, shape)
    if box is not None:
        bxs = validate_boxes(box, shape)
    n = _object_count(pts, bxs) or 1
    masks_in = None
    if mask_input is not None:
        masks_in = np.asarray(mask_input)
        if masks_in.shape[-2:] != shape or not (
            masks_in.dtype == bool or np.issubdtype(masks_in.dtype, np.integer)
        ):
            raise ValueError(
                f"mask_input on tiled embeddings must be a binary mask of the image's shape {shape}; "
                f"got shape {masks_in.shape}, dtype {masks_in.dtype}"
            )
        masks_in = masks_in.reshape(-1, *shape)
        if masks_in.shape[0] not in (1, n):
            raise ValueError(
                f"mask_input holds {masks_in.shape[0]} masks for {n} objects; give one or one per object"
            )

    k = 3 if multimask and not best_only else 1
    fill = OUTSIDE_LOGIT if return_logits else False
    out_masks = np.full((n, k, *shape), fill, dtype=np.float32 if return_logits else bool)
    out_iou = np.zeros((n, k), dtype=np.float32)
    low_res: list[np.ndarray | None] = [None] * n
    for i in range(n):
        obj_pts = None if pts is None else pts[min(i, pts.shape[0] - 1)]
        obj_labels = None if labels is None else labels[min(i, labels.shape[0] - 1)]
        obj_box = None if bxs is None else bxs[i]
        local = localize(tiled, obj_box, obj_pts, obj_labels)
        if local is None:
            raise ValueError(f"object {i} has no prompt inside the image")
        (r0, c0, r1, c1), kwargs = local.bounds, {}
        if local.box is not None:
            kwargs["box"] = local.box
        if local.points is not None:
            kwargs["points"], kwargs["point_labels"] = local.points, local.labels
        if masks_in is not None:
            kwargs["mask_input"] = masks_in[min(i, masks_in.shape[0] - 1), r0:r1, c0:c1].astype(bool)
        pred = predict(
            local.embeddings,
            multimask=multimask,
            best_only=best_only,
            return_logits=return_logits,
            model=model or tiled.model,
            **kwargs,
        )
        out_masks[i, :, r0:r1, c0:c1] = pred.masks[0]
        out_iou[i] = pred.iou_scores[0]
        low_res[i] = pred.low_res_logits[0]
    return Prediction(masks=out_masks, iou_scores=out_iou, low_res_logits=np.stack(low_res))  # type: ignore[arg-type]

"""What automatic mask generation returns, and how kept masks become it (step 5: painting).

Masks are painted by decreasing predicted IoU (or increasing area, ``overlap="area"``); each pixel keeps
the first mask covering it; labels are renumbered ``1..N`` in that order, and a per-object table goes
with them (keys as ``skimage.measure.regionprops_table``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..decode.coords import boxes_xyxy_to_rc, points_xy_to_rc
from .candidates import MaskCandidates
from .masks import paint_first_hit

__all__ = ["AutomaticResult", "empty_result", "label_boxes", "paint"]


@dataclass(frozen=True)
class AutomaticResult:
    """What :func:`~napari_sam.automatic` produced.

    Attributes
    ----------
    labels
        ``(H, W)`` uint32: 0 background, objects ``1..N`` in overlap order (by default decreasing
        predicted IoU).
    properties
        One row per label (row ``i`` ↔ label ``i + 1``), numpy arrays keyed like
        ``skimage.measure.regionprops_table``: ``label``, ``score`` (predicted IoU),
        ``stability_score``, ``area`` (pixels in ``labels``), ``bbox-0 … bbox-3`` (half-open
        ``(min_row, min_col, max_row, max_col)`` of the label), ``point-0``, ``point-1`` (the
        ``(row, col)`` prompt that found it). ``pandas.DataFrame(result.properties)`` makes a table.
    mask_properties
        The same keys for every kept mask before overlaps were resolved (official output order;
        ``area`` and ``bbox`` of the whole mask, ``label`` the label it became or 0 if it was hidden).
    masks
        ``(M, H, W)`` bool, those masks (only with ``return_masks=True``; else None).

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> result = ns.automatic(image, points_per_side=2, return_masks=True)
    >>> sorted(result.properties)[-5:]  # also area, bbox-0 … bbox-3 (half-open), label
    ['label', 'point-0', 'point-1', 'score', 'stability_score']
    >>> result.masks.shape[1:], result.masks.dtype
    ((128, 128), dtype('bool'))
    """

    labels: np.ndarray
    properties: dict[str, np.ndarray]
    mask_properties: dict[str, np.ndarray]
    masks: np.ndarray | None = None

    @property
    def n_objects(self) -> int:
        """Objects in :attr:`labels`."""
        return int(self.properties["label"].shape[0])


def _table(
    masks: MaskCandidates, labels_of_masks: np.ndarray, areas: np.ndarray, bboxes_rc: np.ndarray
) -> dict[str, np.ndarray]:
    """The per-mask table: ``(N,)`` labels, areas, ``(N, 4)`` half-open ``(row, col)`` boxes."""
    points_rc = points_xy_to_rc(masks.points.cpu().numpy())
    return {
        "label": labels_of_masks.astype(np.uint32),
        "score": masks.iou.cpu().numpy().astype(np.float32),
        "stability_score": masks.stability.cpu().numpy().astype(np.float32),
        "area": areas.astype(np.int64),
        **{f"bbox-{i}": bboxes_rc[:, i].astype(np.int64) for i in range(4)},
        "point-0": points_rc[:, 0],
        "point-1": points_rc[:, 1],
    }


def label_boxes(labels: np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 half-open ``(min_row, min_col, max_row, max_col)`` of labels ``1..N`` of a 2D
    labels image (``N`` its largest label; zeros for a label it does not hold)."""
    from scipy import ndimage

    slices = ndimage.find_objects(labels)
    boxes = np.zeros((len(slices), 4), dtype=np.int64)
    for index, where in enumerate(slices):
        if where is not None:
            boxes[index] = (where[0].start, where[1].start, where[0].stop, where[1].stop)
    return boxes


def _painting_order(masks: MaskCandidates, overlap: str) -> torch.Tensor:
    """``(N,)`` mask indices, first painted first: by decreasing predicted IoU, or increasing area."""
    if overlap == "area":
        return torch.sort(masks.areas, stable=True).indices
    return torch.sort(masks.iou, descending=True, stable=True).indices


def paint(masks: MaskCandidates, return_masks: bool, overlap: str) -> AutomaticResult:
    """Resolve overlaps (``overlap``: by predicted IoU or smaller area first) into one labels image."""

    n = len(masks)
    device = masks.iou.device
    h, w = masks.image_shape
    order = _painting_order(masks, overlap)
    canvas = torch.zeros((h, w), dtype=torch.int64, device=device)
    for positions, dense in masks.iter_dense(order):
        paint_first_hit(canvas, dense, positions + 1)  # provisional label = rank + 1
    canvas_np = canvas.cpu().numpy()
    counts = np.bincount(canvas_np.ravel(), minlength=n + 1)[1:]  # per rank
    visible = counts > 0
    lut = np.zeros(n + 1, dtype=np.uint32)
    lut[1:][visible] = np.arange(1, int(visible.sum()) + 1, dtype=np.uint32)
    labels = lut[canvas_np]

    ranked = masks.take(order[torch.from_numpy(visible).to(device)])
    bboxes = label_boxes(labels)  # labels 1..N, each present
    properties = _table(ranked, lut[1:][visible], counts[visible], bboxes)

    label_of_mask = np.zeros(n, dtype=np.uint32)
    label_of_mask[order.cpu().numpy()] = lut[1:]
    mask_boxes = boxes_xyxy_to_rc(masks.boxes.cpu().numpy().astype(np.float64)).astype(np.int64)
    mask_boxes[masks.areas.cpu().numpy() == 0] = 0
    mask_properties = _table(masks, label_of_mask, masks.areas.cpu().numpy(), mask_boxes)
    return AutomaticResult(
        labels=labels,
        properties=properties,
        mask_properties=mask_properties,
        masks=_dense_masks(masks) if return_masks else None,
    )


def _dense_masks(masks: MaskCandidates) -> np.ndarray:
    """``(N, H, W)`` bool: every mask at the image size, on the CPU."""
    out = np.zeros((len(masks), *masks.image_shape), dtype=bool)
    for positions, dense in masks.iter_dense(torch.arange(len(masks), device=masks.iou.device)):
        out[positions.cpu().numpy()] = dense.cpu().numpy()
    return out


def empty_result(image_shape: tuple[int, int], return_masks: bool) -> AutomaticResult:
    """The result for an image without objects: zero labels and empty tables (``(0, H, W)`` masks)."""
    masks = MaskCandidates.empty(image_shape, [], torch.device("cpu"), 0.0)
    bboxes = np.zeros((0, 4), dtype=np.int64)
    table = _table(masks, np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64), bboxes)
    return AutomaticResult(
        labels=np.zeros(image_shape, dtype=np.uint32),
        properties=table,
        mask_properties=dict(table),
        masks=np.zeros((0, *image_shape), dtype=bool) if return_masks else None,
    )

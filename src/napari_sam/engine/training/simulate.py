"""A simulated user for interactive training: which objects to segment, and the prompts a person would give.

Objects are drawn from a crop's labels; each gets a jittered box or a point inside it, then correction
clicks on its error region. Masks here are ``(S, S)`` bool crops of the training canvas; prompts are SAM's
``(x, y)`` pixel coordinates of that crop (:mod:`napari_sam.engine.decode.coords` converts boxes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..decode.coords import boxes_rc_to_xyxy, mask_to_box

__all__ = ["ObjectPrompts", "correction_points", "jittered_boxes", "random_points", "sample_objects"]


@dataclass
class ObjectPrompts:
    """Prompts for ``N`` objects of one crop, in canvas ``(x, y)`` pixel coordinates.

    Attributes
    ----------
    boxes
        ``(N, 4)`` float32 inclusive ``(x0, y0, x1, y1)``, or None.
    points
        ``(N, P, 2)`` float32 ``(x, y)``, or None.
    labels
        ``(N, P)`` int64 point labels (1 object, 0 background), or None.
    """

    boxes: torch.Tensor | None
    points: torch.Tensor | None
    labels: torch.Tensor | None

    def with_points(self, points: torch.Tensor, labels: torch.Tensor) -> ObjectPrompts:
        """These prompts plus ``(N, 1, 2)`` more points with ``(N, 1)`` labels."""
        if self.points is None or self.labels is None:
            return ObjectPrompts(self.boxes, points, labels)
        return ObjectPrompts(
            self.boxes, torch.cat([self.points, points], 1), torch.cat([self.labels, labels], 1)
        )


def sample_objects(
    labels: np.ndarray, count: int, min_pixels: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Up to ``count`` distinct objects of the ``(S, S)`` ``labels`` with at least ``min_pixels`` pixels,
    drawn at random, as ``(S, S)`` bool masks."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    keep = ids[counts >= min_pixels]
    if keep.size == 0:
        return []
    chosen = rng.choice(keep, size=min(count, keep.size), replace=False)
    return [labels == i for i in chosen]


def jittered_boxes(masks: list[np.ndarray], jitter: float, rng: np.random.Generator) -> np.ndarray:
    """``(N, 4)`` float64 inclusive ``(x0, y0, x1, y1)`` boxes of the masks, each corner moved by normal
    noise of ``jitter`` times the box side (at most 20 pixels), clipped to the crop."""
    boxes = np.stack([boxes_rc_to_xyxy(mask_to_box(m)) for m in masks])
    sides = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
    noise = rng.normal(0.0, jitter, size=boxes.shape) * np.concatenate([sides, sides], axis=1)
    noise = np.clip(noise, -20, 20)
    side = masks[0].shape[0] - 1
    return np.clip(boxes + noise, 0, side)


def random_points(masks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One random pixel of each mask: ``(N, 1, 2)`` float64 ``(x, y)``."""
    points = []
    for m in masks:
        rows, cols = np.nonzero(m)
        k = rng.integers(0, rows.size)
        points.append([cols[k], rows[k]])
    return np.asarray(points, dtype=np.float64)[:, None, :]


def correction_points(
    pred: torch.Tensor, truth: torch.Tensor, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One click per object on its error region (``(N, H, W)`` bool prediction and truth): ``(N, 1, 2)``
    float64 ``(x, y)`` crop coordinates and ``(N, 1)`` int64 labels (1 where the object was missed)."""
    points, labels = [], []
    errors = (pred != truth).cpu().numpy()
    truth_np = truth.cpu().numpy() > 0.5
    for err, gt in zip(errors, truth_np, strict=True):
        rows, cols = np.nonzero(err)
        if rows.size == 0:  # already perfect: click inside the object
            rows, cols = np.nonzero(gt)
        k = rng.integers(0, rows.size)
        points.append([cols[k], rows[k]])
        labels.append(1 if gt[rows[k], cols[k]] else 0)
    return np.asarray(points, np.float64)[:, None, :], np.asarray(labels, np.int64)[:, None]

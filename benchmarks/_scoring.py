"""Scores and classical baselines shared by the automatic-segmentation benchmarks.

F1 of two label images at an IoU threshold: a predicted object and a true object match when their IoU
exceeds the threshold (for thresholds >= 0.5 such matches are one-to-one), F1 = 2 · matches /
(predicted + true). Works for 2D images and 3D stacks alike (IoU over all pixels / voxels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: IoU thresholds of the "mean F1" (0.5, 0.55, ..., 0.95), as in the usual instance-segmentation mAP.
IOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.5, 0.96, 0.05), 2))


def iou_matrix(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(n_pred, n_true)`` float64 IoU of every predicted object with every true object.

    Labels need not be consecutive (they are renumbered first); 0 is background in both.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    pred = np.unique(pred, return_inverse=True)[1].reshape(pred.shape)  # 0 stays 0 (the smallest)
    truth = np.unique(truth, return_inverse=True)[1].reshape(truth.shape)
    n_pred, n_true = int(pred.max(initial=0)), int(truth.max(initial=0))
    joint = np.bincount(pred.ravel() * (n_true + 1) + truth.ravel(), minlength=(n_pred + 1) * (n_true + 1))
    inter = joint.reshape(n_pred + 1, n_true + 1)[1:, 1:].astype(np.float64)
    area_p = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:, None]
    area_t = np.bincount(truth.ravel(), minlength=n_true + 1)[None, 1:]
    return inter / np.maximum(area_p + area_t - inter, 1)


def f1_scores(
    pred: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> list[float]:
    """F1 at each IoU threshold (a match: IoU above the threshold); 1.0 when both are empty."""
    iou = iou_matrix(pred, truth)
    n_pred, n_true = iou.shape
    if n_pred == 0 or n_true == 0:
        return [1.0 if n_pred == n_true else 0.0 for _ in thresholds]
    return [2 * int((iou > t).sum()) / (n_pred + n_true) for t in thresholds]


def f1_at_iou(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> tuple[float, int, int, int]:
    """F1 of two label images at an IoU threshold; returns (f1, matches, n_pred, n_true)."""
    iou = iou_matrix(pred, truth)
    n_pred, n_true = iou.shape
    if n_pred == 0 or n_true == 0:
        return (1.0 if n_pred == n_true else 0.0), 0, n_pred, n_true
    matches = int((iou > threshold).sum())
    return 2 * matches / (n_pred + n_true), matches, n_pred, n_true


def watershed_baseline(image: np.ndarray, sigma: float = 1.0, min_distance: int = 4) -> np.ndarray:
    """Otsu + distance-transform watershed (scikit-image), the classical nuclei recipe."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), sigma=sigma)
    mask = smooth > threshold_otsu(smooth)
    mask = remove_small_objects(ndimage.binary_fill_holes(mask), max_size=15)
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=ndimage.label(mask)[0], exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask).astype(np.uint32)
